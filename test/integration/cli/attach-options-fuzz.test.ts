/**
 * `vcnet attach` as a process with generated option values (numbers, names, paths, modes) and a
 * generated Kata configuration.toml for --config (the keys of the tables vcnet reads, in another case
 * too, with values of every TOML type: arrays, inline tables, dates, huge and non-finite numbers).
 * The answer is an exit the docs list, with a `vcnet: ` line in vcnet's words when it refuses; a
 * refusal makes no state and leaves the pod namespace as it was; a success is detached again.
 * Replay or widen a search with VCNET_FUZZ_SEED and VCNET_FUZZ_RUNS (the failure message gives the seed).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CLI, stateDirectoryPerTest } from '../../helpers/cli.js';
import { directoryListing, fuzzParameters, LEAKED, runProgram } from '../../helpers/entry-point-fuzz.js';
import { fingerprint, makePod } from '../../helpers/pod.js';

const skipReason = process.getuid?.() !== 0 ? 'needs root (namespaces, taps, tc)' : undefined;
if (skipReason) console.log(`skipping the attach option fuzz tests: ${skipReason}`);

// Also deletes each test's namespaces after it.
const workDirectory = stateDirectoryPerTest('vcnet-attach-options-fuzz-');

/** The keys vcnet reads, by table (docs/compatibility.md). */
const KEYS: Record<string, string[]> = {
  runtime: ['internetworking_model', 'disable_new_netns', 'dan_conf', 'name'],
  'hypervisor.qemu': [
    'rx_rate_limiter_max_rate',
    'tx_rate_limiter_max_rate',
    'default_vcpus',
    'disable_vhost_net',
    'network_queues',
    'machine_type',
    'cold_plug_vfio',
    'hot_plug_vfio',
    'enable_iommu',
  ],
  'hypervisor.clh': [
    'net_rate_limiter_bw_max_rate',
    'net_rate_limiter_bw_one_time_burst',
    'net_rate_limiter_ops_max_rate',
    'enable_iommu',
    'default_vcpus',
  ],
  'hypervisor.firecracker': ['default_vcpus', 'rx_rate_limiter_max_rate'],
};
const tomlValue = fc.oneof(
  fc.constantFrom('"tcfilter"', '"macvtap"', '"none"', '"x"', '""', 'true', 'false', '0', '-1', '256', '257'),
  fc.constantFrom('9223372036854775807', '18446744073709551616', '1.5', 'nan', 'inf', '-inf', '[]', '[1, "a"]'),
  fc.constantFrom('{}', '{ a = 1 }', '1979-05-27T07:32:00Z', '0x10', '"\\u0000"', '"no-port"', '"q35"', '[[1]]'),
  fc.integer().map(String),
  fc.string({ maxLength: 6 }).map((text) => JSON.stringify(text)),
);
const configuration = fc
  .array(
    fc.record({ table: fc.constantFrom(...Object.keys(KEYS)), key: fc.nat(), value: tomlValue, upper: fc.boolean() }),
    { maxLength: 5 },
  )
  .map((entries) => {
    const tables = new Map<string, string[]>();
    for (const entry of entries) {
      const names = KEYS[entry.table]!;
      const name = names[entry.key % names.length]!;
      const lines = tables.get(entry.table) ?? [];
      lines.push(`${entry.upper ? name.toUpperCase() : name} = ${entry.value}`);
      tables.set(entry.table, lines);
    }
    return [...tables].map(([table, lines]) => `[${table}]\n${lines.join('\n')}\n`).join('\n');
  });
const optionValue = fc.oneof(
  fc.constantFrom('', ' ', '0', '-1', '1', '1.5', '1e3', '0x10', '256', '257', '4294967296', '99999999999999999999'),
  fc.constantFrom('NaN', 'Infinity', '-0', '+1', ' 1', 'abc', '/', '/nonexistent', '.', '..', 'é', 'a'.repeat(5000)),
  fc.constantFrom('--json', '-', 'root', 'nobody', '2147483648'),
  fc.string({ maxLength: 8 }).map((text) => text.replaceAll('\u0000', '')),
);
const OPTIONS = [
  '--queues',
  '--vhost-net',
  '--tap-owner',
  '--tap-group',
  '--lock-timeout',
  '--model',
  '--hypervisor',
  '--vhost-user-store',
  '--interface',
  '--qmp',
  '--api-socket',
  '--agent',
  '--log-level',
  '--log-format',
];

describe.skipIf(skipReason)('attach with generated options and configuration.toml', () => {
  it('answers with a documented exit in its own words; a refusal makes nothing', () => {
    const { pod } = makePod();
    const state = join(workDirectory(), 'state');
    const asMade = JSON.stringify(fingerprint(pod));
    const generated = fc.record({
      options: fc.array(fc.tuple(fc.constantFrom(...OPTIONS), optionValue), { maxLength: 2 }),
      configuration: fc.option(configuration, { nil: undefined }),
      dryRun: fc.boolean(),
    });
    fc.assert(
      fc.property(generated, (given) => {
        const args = ['attach', '--sandbox', 'o1', '--netns', pod.path, '--state-dir', state];
        for (const [option, value] of given.options) args.push(option, value);
        if (given.configuration !== undefined) {
          const file = join(workDirectory(), 'configuration.toml');
          writeFileSync(file, given.configuration);
          args.push('--config', file);
        }
        if (given.dryRun) args.push('--dry-run');
        const run = runProgram(CLI, args, '', {});
        const problems: string[] = [];
        if (![0, 2, 3, 5].includes(run.status ?? -1)) problems.push(`exit ${run.status} (${run.signal})`);
        // A value given is quoted as given ("NaN" is the user's word, not a leak).
        const ownWords = given.options.reduce(
          (text, [, value]) => text.replaceAll(JSON.stringify(value), '<value>'),
          run.stderr,
        );
        if (LEAKED.test(ownWords)) problems.push(`words that are not vcnet's: ${run.stderr.slice(0, 600)}`);
        if (run.status !== 0) {
          if (!run.stderr.split('\n').some((line) => line.startsWith('vcnet: ') && !line.startsWith('vcnet: warning')))
            problems.push(`no "vcnet: " error line: ${run.stderr.slice(0, 300)}`);
          if (directoryListing(state).some((entry) => entry.includes('state.json'))) problems.push('a record was made');
        } else if (!given.dryRun) {
          const detached = runProgram(CLI, ['detach', '--sandbox', 'o1', '--state-dir', state], '', {});
          if (detached.status !== 0) problems.push(`the detach after it failed: ${detached.stderr.slice(0, 300)}`);
        }
        if (JSON.stringify(fingerprint(pod)) !== asMade) problems.push('the pod namespace is not as it was');
        expect({ args: args.slice(7), problems }).toEqual({ args: args.slice(7), problems: [] });
      }),
      fuzzParameters(36, 30),
    );
  });
});
