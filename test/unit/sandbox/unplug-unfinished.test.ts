/**
 * endpointsToPush's note for an endpoint whose failed add-iface's undo did not finish: said with each
 * push, but once per `said` memory (a watch, which pushes for the pod's life) while it stays left
 * out, and again once it was finished and is left out anew.
 */
import { describe, expect, it } from 'vitest';
import type { Endpoint } from '../../../src/network/endpoint/endpoint.js';
import type { SandboxState } from '../../../src/network/state/records.js';
import { endpointsToPush } from '../../../src/sandbox/unplug-unfinished.js';

const endpoint = (name: string, link = name) =>
  ({ name, properties: { link: { name: link } }, plumbing: { model: 'tcfilter' } }) as unknown as Endpoint;

const unplugged = (...names: [string, string][]) =>
  ({
    unplugUnfinished: names.map(([name, podLink]) => ({ name, podLink, deviceId: `${name}-id`, since: '' })),
  }) as unknown as SandboxState;

/** The notes of the pushes `push` makes, as the watch's warn hears them. */
function notesOf(push: (warn: (message: string) => void) => void): string[] {
  const notes: string[] = [];
  push((message) => notes.push(message));
  return notes;
}

describe('endpointsToPush', () => {
  const eth0 = endpoint('eth0');
  const net9 = endpoint('net9', 'eth9');
  const net8 = endpoint('net8', 'eth8');
  const note = (warn: (message: string) => void, said?: Set<string>) => ({
    sandbox: 'uu',
    operation: 'watch',
    stateDirectory: '/run/vcnet/sandboxes',
    warn,
    ...(said ? { said } : {}),
  });

  it('leaves out an endpoint whose undo did not finish, saying so with each push when nothing remembers it', () => {
    const state = unplugged(['net9', 'eth9']);
    const notes = notesOf((warn) => {
      expect(endpointsToPush([eth0, net9], state, note(warn))).toEqual([eth0]);
      expect(endpointsToPush([eth0, net9], state, note(warn))).toEqual([eth0]);
    });
    expect(notes).toHaveLength(2);
    expect(notes[0]).toContain('sandbox uu: net9 is left out of what the guest is told');
  });

  it('says it once per memory while it stays left out, a second endpoint once too, and again once left out anew', () => {
    const said = new Set<string>();
    const first = notesOf((warn) => {
      for (let push = 0; push < 3; push += 1)
        expect(endpointsToPush([eth0, net9], unplugged(['net9', 'eth9']), note(warn, said))).toEqual([eth0]);
    });
    expect(first).toHaveLength(1);
    expect(first[0]).toContain('net9 is left out');

    // net8 left out too: said alone, net9 not again.
    const both = unplugged(['net9', 'eth9'], ['net8', 'eth8']);
    const second = notesOf((warn) => {
      expect(endpointsToPush([eth0, net9, net8], both, note(warn, said))).toEqual([eth0]);
      expect(endpointsToPush([eth0, net9, net8], both, note(warn, said))).toEqual([eth0]);
    });
    expect(second).toHaveLength(1);
    expect(second[0]).toContain('sandbox uu: net8 is left out');
    expect(second[0]).not.toContain('net9');

    // del-iface finished net9; an add-iface of it failed the same way later: said again.
    const third = notesOf((warn) => {
      expect(endpointsToPush([eth0, net8], unplugged(['net8', 'eth8']), note(warn, said))).toEqual([eth0]);
      expect(endpointsToPush([eth0, net9, net8], both, note(warn, said))).toEqual([eth0]);
    });
    expect(third).toHaveLength(1);
    expect(third[0]).toContain('sandbox uu: net9 is left out');
  });

  it("leaves out, without an unplugUnfinished entry, an unfinished attach's endpoint that an undo (the watch's at start, gc's) kept because the VM kept its NIC", () => {
    // The undo keeps such an endpoint as it was, model 'pending' (unfinished-hotplug-undo and
    // unfinished-qmp-busy check the record): that alone leaves it out, as an entry would.
    const kept = { ...endpoint('net9', 'eth9'), plumbing: { model: 'pending' } } as unknown as Endpoint;
    const notes = notesOf((warn) => {
      expect(endpointsToPush([eth0, kept], {} as SandboxState, note(warn))).toEqual([eth0]);
    });
    expect(notes).toHaveLength(1);
    expect(notes[0]).toContain('sandbox uu: net9 is left out of what the guest is told');
  });

  it('says nothing and leaves nothing out when no endpoint is unfinished', () => {
    const said = new Set<string>();
    const notes = notesOf((warn) => {
      expect(endpointsToPush([eth0, net9], {} as SandboxState, note(warn, said))).toEqual([eth0, net9]);
    });
    expect(notes).toEqual([]);
    expect(said.size).toBe(0);
  });
});
