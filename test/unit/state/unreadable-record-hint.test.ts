/**
 * The hint of a record vcnet will not act on points at `vcnet gc --dry-run`, with the `--state-dir`
 * of the directory the record is in when gc would not read it by default.
 */
import { describe, expect, it } from 'vitest';
import { StateInvalidError } from '../../../src/network/state/record-envelope.js';

const hintOf = (file: string) => new StateInvalidError(file, 'id', 'is "b", not a').hint;

describe('the unreadable-record hint', () => {
  it("names a sandbox record's state directory", () => {
    expect(hintOf('/tmp/my state/sb1/state.json')).toContain(
      "`vcnet gc --dry-run --state-dir '/tmp/my state'` lists unreadable records",
    );
  });

  it("names a vcnet-cni interface record's state directory", () => {
    expect(hintOf('/var/lib/cni-state/c0ffee/interfaces/eth0/state.json')).toContain(
      '`vcnet gc --dry-run --state-dir /var/lib/cni-state` lists unreadable records',
    );
  });

  it('says nothing of --state-dir for the default directories, which gc reads anyway', () => {
    expect(hintOf('/run/vcnet/sandboxes/sb1/state.json')).toContain('`vcnet gc --dry-run` lists unreadable records');
    expect(hintOf('/run/vcnet/cni/c0ffee/interfaces/eth0/state.json')).toContain(
      '`vcnet gc --dry-run` lists unreadable records',
    );
  });
});
