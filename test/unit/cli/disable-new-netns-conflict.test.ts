/**
 * --disable-new-netns with a model other than none: the error says how to fix it in the terms the
 * values came from (flags, or the configuration file's keys), not in TOML keys for flags.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { networkConfigFromFlags } from '../../../src/cli/options.js';
import { ConfigurationConflictError } from '../../../src/network/config.js';

let directory: string | undefined;
afterEach(() => {
  if (directory) rmSync(directory, { recursive: true, force: true });
  directory = undefined;
});

function conflictOf(flags: Parameters<typeof networkConfigFromFlags>[0]): ConfigurationConflictError {
  try {
    networkConfigFromFlags(flags);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigurationConflictError);
    return error as ConfigurationConflictError;
  }
  throw new Error('no conflict');
}

function configFile(text: string): string {
  directory = mkdtempSync(join(tmpdir(), 'vcnet-conflict-'));
  const path = join(directory, 'configuration.toml');
  writeFileSync(path, text);
  return path;
}

describe('--disable-new-netns with a model other than none', () => {
  it('both from flags: names the flags', () => {
    const error = conflictOf({ disableNewNetns: true, model: 'tcfilter' });
    expect(error.code).toBe('VCNET_CONFIG_CONFLICT');
    expect(error.message).toBe('--disable-new-netns works only with the model none (got --model tcfilter)');
    expect(error.hint).toBe('give `--model none`, or drop `--disable-new-netns`');
  });

  it('the flag with the default model: names --model none', () => {
    const error = conflictOf({ disableNewNetns: true });
    expect(error.message).toContain('(got the default model (tcfilter))');
    expect(error.hint).toBe('give `--model none`, or drop `--disable-new-netns`');
  });

  it('both from the configuration file: names its keys and the file', () => {
    const path = configFile('[runtime]\ninternetworking_model = "macvtap"\ndisable_new_netns = true\n');
    const error = conflictOf({ config: path });
    expect(error.message).toBe(
      `disable_new_netns = true (${path}) works only with the model none (got internetworking_model = "macvtap" (${path}))`,
    );
    expect(error.hint).toBe(
      `set internetworking_model = "none" in ${path}, or set disable_new_netns = false in ${path}`,
    );
  });

  it('the file says disable_new_netns, the model is a flag', () => {
    const path = configFile('[runtime]\ndisable_new_netns = true\n');
    const error = conflictOf({ config: path, model: 'macvtap' });
    expect(error.hint).toBe(`give \`--model none\`, or set disable_new_netns = false in ${path}`);
  });
});
