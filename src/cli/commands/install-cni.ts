/** `vcnet install-cni`: puts the vcnet-cni launcher and a bridge + vcnet-cni conflist in place. */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import {
  conflistNotes,
  DEFAULT_CNI_BIN_DIRECTORY,
  DEFAULT_CNI_CONF_DIRECTORY,
  DEFAULT_CONFLIST_OPTIONS,
  installCni,
} from '../../cni/install.js';
import type { SupportedCniVersion } from '../../cni/version.js';
import type { InterworkingModel } from '../../network/interworking-model.js';
import { print, printJson, writeStderr } from '../output.js';

interface InstallCniOptions {
  binDir: string;
  confDir: string;
  confFile: string;
  conflist: boolean;
  networkName: string;
  bridge: string;
  subnet: string;
  model: string;
  stateDir: string;
  cniVersion: string;
  json?: boolean;
}

export function registerInstallCni(program: Command): void {
  program
    .command('install-cni')
    .summary('install the vcnet-cni plugin and a bridge + vcnet-cni conflist (idempotent)')
    .description(
      'put the vcnet-cni plugin (a launcher recording this node binary) and a bridge + vcnet-cni conflist in place; idempotent',
    )
    .option('--bin-dir <dir>', 'CNI plugin directory', DEFAULT_CNI_BIN_DIRECTORY)
    .option(
      '--conf-dir <dir>',
      'CNI network config directory (use one only VM runtime classes read)',
      DEFAULT_CNI_CONF_DIRECTORY,
    )
    .option(
      '--conf-file <name>',
      'file name of the conflist in --conf-dir (no directory part, ending in .conflist)',
      '99-vcnet.conflist',
    )
    .option('--no-conflist', 'install only the plugin')
    .option('--network-name <name>', "the conflist's network name", DEFAULT_CONFLIST_OPTIONS.networkName)
    .option('--bridge <name>', 'bridge the pods join', DEFAULT_CONFLIST_OPTIONS.bridge)
    .option(
      '--subnet <cidr>',
      'host-local range for the pods: a network address (no host bits set), prefix length at most 30 (IPv6: 126)',
      DEFAULT_CONFLIST_OPTIONS.subnet,
    )
    .option(
      '--model <model>',
      'internetworking model: tcfilter, macvtap, none, default (macvtap: the conflist gets "disableCheck": true, as the CHECK of its chain always fails)',
      DEFAULT_CONFLIST_OPTIONS.model,
    )
    .option('--state-dir <dir>', 'vcnet-cni stateDir', DEFAULT_CONFLIST_OPTIONS.stateDirectory)
    .option('--cni-version <version>', 'cniVersion of the conflist', DEFAULT_CONFLIST_OPTIONS.cniVersion)
    .option('--json', 'machine-readable output')
    .action((options: InstallCniOptions) => {
      // Checked by installCni (an unknown model or version is refused there, before anything is written).
      const model = options.model as InterworkingModel;
      const cniVersion = options.cniVersion as SupportedCniVersion;
      const installed = installCni({
        binDirectory: resolve(options.binDir),
        confDirectory: resolve(options.confDir),
        ...(options.conflist ? { conflistFile: options.confFile } : {}),
        conflist: {
          networkName: options.networkName,
          bridge: options.bridge,
          subnet: options.subnet,
          model,
          stateDirectory: options.stateDir,
          cniVersion,
        },
      });
      if (options.conflist) {
        for (const note of conflistNotes({ model, cniVersion })) writeStderr(`vcnet: ${note}\n`);
      }
      if (options.json) {
        printJson({ installed });
        return;
      }
      for (const file of installed) print(`${file.changed ? 'installed' : 'unchanged'} ${file.path}`);
    });
}
