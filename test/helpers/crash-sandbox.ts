/**
 * The sandbox the crash tests (attach-kill, kill-loop) kill vcnet on: a pod with two interfaces and a
 * tx limit, so taps or macvtaps, ifbs, qdiscs and filters are all in flight at some point.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fingerprint, makePod, type PodOptions } from './pod.js';

export function crashTestSandbox(
  directory: string,
  model: 'tcfilter' | 'macvtap',
  podOptions: Omit<PodOptions, 'interfaces'> = {},
) {
  const { pod } = makePod({ interfaces: 2, ...podOptions });
  const before = fingerprint(pod);
  const config = join(directory, 'configuration.toml');
  writeFileSync(
    config,
    `[runtime]\ninternetworking_model = "${model}"\n[hypervisor.qemu]\ntx_rate_limiter_max_rate = 20000000\n`,
  );
  const state = join(directory, 'state');
  return {
    pod,
    before,
    state,
    recordFile: join(state, 'k', 'state.json'),
    attachArgs: ['attach', '--sandbox', 'k', '--netns', pod.path, '--config', config, '--state-dir', state],
    detachArgs: ['detach', '--sandbox', 'k', '--state-dir', state],
  };
}
