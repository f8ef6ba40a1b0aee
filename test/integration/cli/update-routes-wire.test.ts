/**
 * What `kata-network update-routes` and the later pushes of the saved route set put on the wire.
 * Kata's agent picks its address parser by the route's family (netlink.rs update_routes: v6 or else
 * v4) and parses dest as a network, so a route must leave with the family its addresses have and a
 * dest the parser takes. The guest agent here records each UpdateRoutes request as it arrives.
 */
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentMethods } from '../../../src/agent/agent-service.js';
import { IPFamily, type Route } from '../../../src/agent/generated/types_pb.js';
import { TtrpcServer } from '../../../src/agent/ttrpc/server.js';
import { stateDirectoryPerTest, vcnet, vcnetAsync } from '../../helpers/cli.js';
import { FakeCloudHypervisor } from '../../helpers/fake-cloud-hypervisor.js';
import { makePod } from '../../helpers/pod.js';

const stateDirectory = stateDirectoryPerTest('vcnet-routes-wire-');
const stops: Array<() => unknown> = [];
afterEach(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
});

/** An agent that accepts every network call and keeps the routes of each UpdateRoutes, decoded from the bytes received. */
async function recordingAgent(path: string) {
  const updates: Route[][] = [];
  const ttrpc = new TtrpcServer()
    .registerRaw(AgentMethods.updateRoutes.service, AgentMethods.updateRoutes.method, (payload) => {
      updates.push(fromBinary(AgentMethods.updateRoutes.input, payload).routes?.Routes ?? []);
      return toBinary(AgentMethods.updateRoutes.output, create(AgentMethods.updateRoutes.output, {}));
    })
    .register(AgentMethods.updateInterface, async (request) => request.interface ?? {})
    .register(AgentMethods.addArpNeighbors, async () => ({}));
  const server = createServer((socket) => ttrpc.serve(socket));
  await new Promise<void>((resolve) => server.listen(path, resolve));
  stops.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return updates;
}

describe('update-routes on the wire', () => {
  it('sends (and saves for later pushes) the family the addresses give, and "default" as the family default', async () => {
    const { pod } = makePod();
    const api = await FakeCloudHypervisor.start();
    stops.push(() => api.stop());
    const agentPath = join(stateDirectory(), 'agent.sock');
    const updates = await recordingAgent(agentPath);
    const attached = vcnet([
      ...['attach', '--sandbox', 'rw', '--netns', pod.path, '--state-dir', stateDirectory()],
      ...['--hypervisor', 'clh', '--api-socket', api.socketPath, '--agent', agentPath],
    ]);
    expect(attached.status, attached.stderr).toBe(0);
    stops.push(() => vcnet(['detach', '--sandbox', 'rw', '--state-dir', stateDirectory()]));

    // Kata 1.x routes carry no family.
    const file = join(stateDirectory(), 'routes.json');
    writeFileSync(
      file,
      JSON.stringify([
        { dest: '', gateway: 'fd00:77::1', device: 'eth0' },
        { dest: 'default', gateway: '10.200.0.1', device: 'eth0' },
        { dest: 'fd00:78::/64', device: 'eth0', scope: 253 },
      ]),
    );
    const updated = await vcnetAsync(['update-routes', 'rw', file, '--state-dir', stateDirectory()]).done;
    expect(updated.status, updated.stderr).toBe(0);
    // A null list sends nothing, as Kata's runtime (`if routes != nil`), and keeps the saved set.
    const nullFile = join(stateDirectory(), 'null.json');
    writeFileSync(nullFile, 'null');
    const kept = await vcnetAsync(['update-routes', 'rw', nullFile, '--state-dir', stateDirectory()]).done;
    expect([kept.status, kept.stdout], kept.stderr).toEqual([0, 'null\n']);
    // configure-guest pushes the saved set again, as add-iface and watch do.
    const configured = await vcnetAsync([
      ...['configure-guest', '--sandbox', 'rw', '--state-dir', stateDirectory(), '--timeout', '20000'],
    ]).done;
    expect(configured.status, configured.stderr).toBe(0);

    // Two requests: update-routes and configure-guest's push, the null between them sent none.
    // proto3 leaves a zero family (v4) off the wire: a decoded v6 was sent as field 6 = 1.
    const sent = updates.map((routes) => routes.map((route) => [route.dest, route.gateway, route.family]));
    const expected = [
      ['', 'fd00:77::1', IPFamily.v6],
      ['0.0.0.0/0', '10.200.0.1', IPFamily.v4],
      ['fd00:78::/64', '', IPFamily.v6],
    ];
    expect(sent).toEqual([expected, expected]);
  }, 90_000);
});
