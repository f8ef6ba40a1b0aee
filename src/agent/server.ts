/**
 * The agent's network service over ttrpc: decodes AgentService calls, validates them completely, hands
 * them to a NetworkApplier, and maps what it throws to the status the Kata runtime expects
 * (INVALID_ARGUMENT naming the field, NOT_FOUND for a missing link, INTERNAL for the rest): the
 * shared classifier (classifyError, src/errors.ts) decides, as it does for CLI exit codes and CNI codes.
 */
import { functionOption, numberOption, optionsArgument } from '../arguments.js';
import { classifyError, InvalidInputError } from '../errors.js';
import { AgentMethods } from './agent-service.js';
import { AgentStatusError } from './errors.js';
import type { IpTablesApplier, NetworkApplier } from './network-applier.js';
import { interfaceUpdateOf, neighbourAdditionsOf, routeUpdatesOf } from './network-request.js';
import { type Status, TtrpcServer, type TtrpcServerOptions } from './ttrpc/server.js';
import { StatusCode } from './ttrpc/status-code.js';

/** The status an error becomes on the wire. */
export function agentStatusOf(error: unknown): Status {
  // A status relayed from another agent call passes through unchanged.
  if (error instanceof AgentStatusError) return { code: error.status, message: error.statusMessage };
  return {
    code: StatusCode[classifyError(error).agent],
    message: error instanceof Error ? error.message : String(error),
  };
}

/** `createAgentServer`'s options: the ttrpc server's, and the iptables calls' handler. */
export interface AgentServerOptions extends TtrpcServerOptions {
  /**
   * Serves GetIPTables and SetIPTables (vcnet's guest agent: GuestIpTables, which runs iptables-save and
   * iptables-restore). Without it both answer UNIMPLEMENTED, as for any method a server does not have.
   */
  ipTables?: IpTablesApplier;
}

/** Adds GetIPTables and SetIPTables, served by `ipTables`, to a ttrpc server. */
function registerIpTables(server: TtrpcServer, ipTables: IpTablesApplier): TtrpcServer {
  return server
    .register(AgentMethods.getIpTables, async (request) => ({
      data: await ipTables.getIpTables(request.isIpv6 ? 6 : 4),
    }))
    .register(AgentMethods.setIpTables, async (request) => ({
      data: await ipTables.setIpTables(request.isIpv6 ? 6 : 4, request.data),
    }));
}

/** Adds the AgentService network methods, served by `applier`, to a ttrpc server. */
function registerAgentService(server: TtrpcServer, applier: NetworkApplier): TtrpcServer {
  return server
    .register(AgentMethods.updateInterface, async (request) =>
      applier.updateInterface(interfaceUpdateOf(request.interface)),
    )
    .register(AgentMethods.updateRoutes, async (request) => ({
      Routes: await applier.updateRoutes(routeUpdatesOf(request.routes?.Routes ?? [])),
    }))
    .register(AgentMethods.addArpNeighbors, async (request) => {
      await applier.addArpNeighbors(neighbourAdditionsOf(request.neighbors?.ARPNeighbors ?? []));
      return {};
    })
    .register(AgentMethods.listInterfaces, async () => ({ Interfaces: await applier.listInterfaces() }))
    .register(AgentMethods.listRoutes, async () => ({ Routes: await applier.listRoutes() }));
}

/** A ttrpc server with the AgentService network methods; `serve(stream)` it on each connection. */
export function createAgentServer(applier: NetworkApplier, options: AgentServerOptions = {}): TtrpcServer {
  if (typeof applier !== 'object' || applier === null) {
    throw new InvalidInputError('applier', applier, 'a NetworkApplier (an object with the AgentService methods)');
  }
  const { ipTables, ...serverOptions } = optionsArgument(options, 'options', [
    'statusOf',
    'maxFrameLength',
    'onCallFailed',
    'ipTables',
  ]);
  functionOption(serverOptions.statusOf, 'statusOf');
  functionOption(serverOptions.onCallFailed, 'onCallFailed');
  numberOption(serverOptions.maxFrameLength, 'maxFrameLength', { min: 1, max: 0x7fff_ffff, unit: 'bytes' });
  if (
    ipTables !== undefined &&
    (typeof ipTables?.getIpTables !== 'function' || typeof ipTables.setIpTables !== 'function')
  ) {
    throw new InvalidInputError('ipTables', ipTables, 'an IpTablesApplier (getIpTables and setIpTables methods)');
  }
  const server = registerAgentService(new TtrpcServer({ statusOf: agentStatusOf, ...serverOptions }), applier);
  return ipTables ? registerIpTables(server, ipTables) : server;
}
