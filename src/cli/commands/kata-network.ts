/**
 * The `kata-runtime kata-network` commands: add-iface, del-iface, list-ifaces, update-routes,
 * list-routes. They read and print Kata's JSON (the agent's Interface and Route objects).
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { InvalidInputError } from '../../errors.js';
import { stateDirectory } from '../../network/state/store.js';
import {
  addInterface,
  listInterfaces,
  listRoutes,
  removeInterface,
  updateRoutes,
} from '../../sandbox/sandbox-interfaces.js';
import { print, printJson, table } from '../output.js';

/** A file path, or - for standard input. */
export function readInput(source: string): string {
  try {
    return readFileSync(source === '-' ? 0 : source, 'utf8');
  } catch (error) {
    throw new InvalidInputError(
      'FILE',
      source,
      'a readable JSON file, or - for standard input',
      (error as Error).message,
    );
  }
}

const stateOption = ['--state-dir <dir>', 'where sandbox state lives'] as const;

export function registerKataNetwork(program: Command): void {
  program
    .command('add-iface')
    .description('add an interface to a sandbox (hot-plugs it and configures the guest when the VM runs)')
    .argument('<sandbox>', 'sandbox id')
    .argument('<file>', 'Interface JSON (device, name, IPAddresses, mtu, hwAddr, type...), or - for stdin')
    .option(...stateOption)
    .action(async (sandbox: string, file: string, options: { stateDir?: string }) => {
      const result = await addInterface(sandbox, readInput(file), { stateDirectory: stateDirectory(options.stateDir) });
      if (result.inferredType)
        process.stderr.write(
          `vcnet: no type given: using "${result.inferredType}", the kind of device ${result.podDevice}\n`,
        );
      printJson(result.interface);
    });

  program
    .command('del-iface')
    .description('remove an interface from a sandbox (unplugs it from the VM when it runs)')
    .argument('<sandbox>', 'sandbox id')
    .argument('<file>', 'Interface JSON naming it by name, device or hwAddr, or - for stdin')
    .option(...stateOption)
    .action(async (sandbox: string, file: string, options: { stateDir?: string }) => {
      printJson(await removeInterface(sandbox, readInput(file), { stateDirectory: stateDirectory(options.stateDir) }));
    });

  program
    .command('list-ifaces')
    .description('the interfaces the guest has (from its agent) or will have')
    .argument('<sandbox>', 'sandbox id')
    .option(...stateOption)
    .option('--json', 'Kata JSON instead of a table')
    .action(async (sandbox: string, options: { stateDir?: string; json?: boolean }) => {
      const interfaces = await listInterfaces(sandbox, { stateDirectory: stateDirectory(options.stateDir) });
      if (options.json) return printJson(interfaces);
      print(
        table(
          ['NAME', 'DEVICE', 'TYPE', 'MAC', 'MTU', 'ADDRESSES', 'PCI'],
          interfaces.map((entry) => [
            entry.name,
            entry.device || '-',
            entry.type || '-',
            entry.hwAddr,
            String(entry.mtu),
            entry.IPAddresses.map((address) => `${address.address}/${address.mask}`).join(',') || '-',
            entry.devicePath || '-',
          ]),
        ),
      );
    });

  program
    .command('update-routes')
    .description("replace the guest's routes on the devices the routes name")
    .argument('<sandbox>', 'sandbox id')
    .argument('<file>', 'Route JSON array (dest, gateway, device, source, scope, family, flags, mtu), or - for stdin')
    .option(...stateOption)
    .action(async (sandbox: string, file: string, options: { stateDir?: string }) => {
      printJson(await updateRoutes(sandbox, readInput(file), { stateDirectory: stateDirectory(options.stateDir) }));
    });

  program
    .command('list-routes')
    .description('the routes the guest has (from its agent) or will have')
    .argument('<sandbox>', 'sandbox id')
    .option(...stateOption)
    .option('--json', 'Kata JSON instead of a table')
    .action(async (sandbox: string, options: { stateDir?: string; json?: boolean }) => {
      const routes = await listRoutes(sandbox, { stateDirectory: stateDirectory(options.stateDir) });
      if (options.json) return printJson(routes);
      print(
        table(
          ['DEST', 'GATEWAY', 'DEVICE', 'SOURCE', 'SCOPE', 'MTU'],
          routes.map((route) => [
            route.dest || 'default',
            route.gateway || '-',
            route.device,
            route.source || '-',
            String(route.scope),
            route.mtu ? String(route.mtu) : '-',
          ]),
        ),
      );
    });
}
