import { afterEach, describe, expect, it, vi } from 'vitest';
import { noticesAbout, warnOnStandardError, writingNotices } from '../../../src/cni/notices.js';
import { channels, type NoticeEvent } from '../../../src/diagnostics.js';

const publish = (notice: NoticeEvent) => channels.notice.publish(notice);
const tick = () => new Promise((resolve) => setImmediate(resolve));

afterEach(() => {
  vi.restoreAllMocks();
});

describe('writingNotices', () => {
  it("writes each notice of the command's work as one line, and unsubscribes when it ends", async () => {
    const lines: string[] = [];
    expect(channels.notice.hasSubscribers).toBe(false);
    const result = await writingNotices(
      'ADD of c1/eth0',
      'eth0',
      (line) => lines.push(line),
      async () => {
        expect(channels.notice.hasSubscribers).toBe(true);
        await tick();
        publish({ operation: 'attach', endpoint: 'eth0', message: 'the guest does not get 1 route of the pod' });
        // About another link than the interface: that link is named.
        publish({ operation: 'detach', endpoint: 'tap0_kata', message: 'tap0_kata was renamed' });
        // With an error: its message follows.
        publish({ operation: 'attach', endpoint: '', message: 'could not set the VF MAC', error: new Error('EPERM') });
        // The caller's own handler reported it already.
        publish({ operation: 'push', endpoint: 'eth0', message: 'said elsewhere', handled: true });
        return 'done';
      },
    );
    expect(result).toBe('done');
    expect(lines).toEqual([
      'vcnet-cni ADD of c1/eth0: the guest does not get 1 route of the pod',
      'vcnet-cni ADD of c1/eth0 (tap0_kata): tap0_kata was renamed',
      'vcnet-cni ADD of c1/eth0: could not set the VF MAC: EPERM',
    ]);
    expect(channels.notice.hasSubscribers).toBe(false);
    // A failed command unsubscribes too.
    await expect(
      writingNotices(
        'DEL of c1/eth0',
        'eth0',
        () => undefined,
        async () => Promise.reject(new Error('refused')),
      ),
    ).rejects.toThrow('refused');
    expect(channels.notice.hasSubscribers).toBe(false);
  });

  it('writes only the notices published by its own work, not those of another command running beside it', async () => {
    const first: string[] = [];
    const second: string[] = [];
    const outside = vi.fn();
    let release!: () => void;
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const running = writingNotices(
      'ADD of a/eth0',
      'eth0',
      (line) => first.push(line),
      async () => {
        await released;
        publish({ operation: 'attach', endpoint: 'eth0', message: 'of a' });
      },
    );
    await writingNotices(
      'ADD of b/net1',
      'net1',
      (line) => second.push(line),
      async () => {
        publish({ operation: 'attach', endpoint: 'net1', message: 'of b' });
      },
    );
    // Published outside every command (a library caller in the same process): no command writes it.
    channels.notice.subscribe(outside);
    publish({ operation: 'attach', endpoint: 'eth9', message: 'of nobody' });
    channels.notice.unsubscribe(outside);
    release();
    await running;
    expect(first).toEqual(['vcnet-cni ADD of a/eth0: of a']);
    expect(second).toEqual(['vcnet-cni ADD of b/net1: of b']);
    expect(outside).toHaveBeenCalledOnce();
  });

  it('noticesAbout names another subject for part of the command (GC names the container it undoes)', async () => {
    const lines: string[] = [];
    await writingNotices(
      'GC of network n',
      undefined,
      (line) => lines.push(line),
      async () => {
        await noticesAbout('GC of network n, DEL of c2/net1', 'net1', async () => {
          publish({ operation: 'detach', endpoint: 'net1', message: 'put back as found' });
        });
        publish({ operation: 'detach', endpoint: 'eth0', message: 'after it' });
      },
    );
    expect(lines).toEqual([
      'vcnet-cni GC of network n, DEL of c2/net1: put back as found',
      'vcnet-cni GC of network n (eth0): after it',
    ]);
    // Outside a command it only runs the work.
    expect(await noticesAbout('x', undefined, async () => 42)).toBe(42);
  });
});

describe('warnOnStandardError', () => {
  it('writes one line, its control characters escaped', () => {
    const write = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    warnOnStandardError('vcnet-cni DEL of c/eth0: a name with\na newline and \x1b[31m');
    expect(write).toHaveBeenCalledWith('vcnet-cni DEL of c/eth0: a name with\\na newline and \\x1b[31m\n');
  });
});
