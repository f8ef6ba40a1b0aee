/**
 * A registry of state directories whose bytes are not UTF-8 is damage (vcnet writes it in UTF-8
 * only), said as a damaged record is said: the file and the offset of the first bad byte, and
 * nothing changed. It was read with U+FFFD in place of the byte, so the line named a directory that
 * is not there: `vcnet list` passed over it without a word, and gc forgot the line, rewriting the
 * registry without it (that directory's records then protected nothing from the next gc).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { stateDirectoryPerTest, vcnet } from '../../helpers/cli.js';
import { makeNamespace } from '../../helpers/namespace.js';

const scratch = stateDirectoryPerTest('vcnet-registry-utf8-');

describe('a state directory registry that is not UTF-8', () => {
  it('is refused by list and gc, naming the file and the offset of the bad byte, and left as it was', () => {
    const kept = join(scratch(), 'kept');
    mkdirSync(kept);
    const registry = join(scratch(), 'registry');
    // A line with one byte flipped: 0xff starts no UTF-8 character.
    const damaged = Buffer.concat([
      Buffer.from(`${kept}\n${scratch()}/stat`),
      Buffer.from([0xff]),
      Buffer.from('-dir\n'),
    ]);
    const offset = damaged.indexOf(0xff);
    writeFileSync(registry, damaged, { mode: 0o644 });
    const env = { VCNET_STATE_REGISTRY: registry, VCNET_STATE_DIR: kept };
    const said = `state file ${registry}: is not UTF-8 text: the byte at offset ${offset} (0xff) is no part of a UTF-8 character`;

    const list = vcnet(['list', '--json'], env);
    expect(list.stderr).toContain(said);
    expect(list.stderr).toContain('mend or delete the line with the bad byte');
    expect(list.status, list.stderr).toBe(1);

    const namespace = makeNamespace('registry-utf8');
    const gc = vcnet(['gc', '--netns', namespace.path, '--json'], env);
    expect(gc.stderr).toContain(said);
    expect(gc.status, gc.stderr).toBe(1);
    expect(readFileSync(registry)).toEqual(damaged);
  });
});
