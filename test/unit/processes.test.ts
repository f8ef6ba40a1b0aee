/** Whether /proc hides processes from vcnet (hidepid=), read from mountinfo and CapEff. */
import { describe, expect, it } from 'vitest';
import { hasSysPtrace, isKernelThreadStat, procHidesProcesses } from '../../src/netns/processes.js';
import { inInitialUserNamespace, refuseMacvtapInUserNamespace } from '../../src/network/user-namespace.js';

const WITHOUT_PTRACE = 'CapEff:\t0000000000201000\n'; // CAP_NET_ADMIN and CAP_SYS_ADMIN
const WITH_PTRACE = 'CapEff:\t0000000000281000\n';
const proc = (options: string, id = 65) => `${id} 1 0:21 / /proc rw,relatime - proc proc ${options}\n`;

describe('procHidesProcesses', () => {
  it('names hidepid= when it hides processes and CAP_SYS_PTRACE is not in effect', () => {
    expect(procHidesProcesses(proc('rw,hidepid=invisible'), WITHOUT_PTRACE)).toBe('invisible');
    expect(procHidesProcesses(proc('rw,hidepid=2'), WITHOUT_PTRACE)).toBe('2');
    expect(procHidesProcesses(proc('rw,nosuid,hidepid=ptraceable,gid=4'), WITHOUT_PTRACE)).toBe('ptraceable');
  });

  it('is undefined for hidepid off, another mount point, or with CAP_SYS_PTRACE', () => {
    expect(procHidesProcesses(proc('rw'), WITHOUT_PTRACE)).toBeUndefined();
    expect(procHidesProcesses(proc('rw,hidepid=off'), WITHOUT_PTRACE)).toBeUndefined();
    expect(procHidesProcesses(proc('rw,hidepid=invisible'), WITH_PTRACE)).toBeUndefined();
    const elsewhere = '70 1 0:30 / /srv/proc rw - proc proc rw,hidepid=invisible\n';
    expect(procHidesProcesses(elsewhere, WITHOUT_PTRACE)).toBeUndefined();
  });

  it('reads the last mount on /proc, the one a lookup finds', () => {
    expect(procHidesProcesses(proc('rw') + proc('rw,hidepid=invisible', 106), WITHOUT_PTRACE)).toBe('invisible');
    expect(procHidesProcesses(proc('rw,hidepid=invisible') + proc('rw', 106), WITHOUT_PTRACE)).toBeUndefined();
  });
});

describe('hasSysPtrace', () => {
  it('reads bit 19 of CapEff', () => {
    expect(hasSysPtrace(WITH_PTRACE)).toBe(true);
    expect(hasSysPtrace(WITHOUT_PTRACE)).toBe(false);
    expect(hasSysPtrace('Name:\tnode\n')).toBe(false);
  });
});

describe('isKernelThreadStat', () => {
  // Recorded from Linux 6.18: kthreadd, a kworker (ppid 2, flags with PF_KTHREAD 0x00200000), and
  // processes (flags without it).
  const kthreadd =
    '2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 1 1 0 0 20 0 1 0 15 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n';
  const kworker =
    '10 (kworker/0:0H-events_highpri) I 2 0 0 0 -1 69238880 0 0 0 0 0 0 0 0 0 -20 1 0 15 0 0 18446744073709551615 0 0 0 0 0 0 0 2147483647 0 1 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n';
  const init =
    '1 (systemd) S 0 1 1 0 -1 4194560 144228 1267979522 0 34447 1024 1565 5721819 1071394 20 0 1 0 15 42737664 3134 18446744073709551615 1 1 0 0 0 0 671173123 4096 1260 0 0 0 17 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n';
  const cat =
    '5700 (cat) R 5694 5694 24878 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0 6734235 3133440 362 18446744073709551615 94287497371648 94287497391529 140724684266096 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 94287497407536 94287497409152 94287844069376 140724684270306 140724684270326 140724684270326 140724684271595 0\n';

  it('reads PF_KTHREAD in the flags (field 9)', () => {
    expect(isKernelThreadStat(kthreadd)).toBe(true);
    expect(isKernelThreadStat(kworker)).toBe(true);
    expect(isKernelThreadStat(init)).toBe(false);
    expect(isKernelThreadStat(cat)).toBe(false);
  });

  it('a command name with spaces and parentheses does not move the fields; ppid 2 is no kernel thread', () => {
    // A process may name itself so (prctl PR_SET_NAME, 15 bytes at most): the fields start after the last ')'.
    expect(isKernelThreadStat('7 (a) S 2 (b) c) S 1 7 7 0 -1 4194304 0 0\n')).toBe(false);
    expect(isKernelThreadStat('8 (k) 1 2 3 (x) I 2 0 0 0 -1 69238880 0 0\n')).toBe(true);
    // A child of pid 2 in a pid namespace, where pid 2 is an ordinary process.
    expect(isKernelThreadStat('31 (sleep) S 2 1 1 0 -1 4194304 0 0 0 0\n')).toBe(false);
  });

  it('is undefined for what is no stat line', () => {
    expect(isKernelThreadStat('')).toBeUndefined();
    expect(isKernelThreadStat('2 (kthreadd) S 0 0')).toBeUndefined();
    expect(isKernelThreadStat('2 (kthreadd) S 0 0 0 0 -1 x 0')).toBeUndefined();
  });
});

describe('refuseMacvtapInUserNamespace', () => {
  it('refuses macvtap only outside the initial user namespace, naming the field', () => {
    const initial = '         0          0 4294967295\n';
    const rootless = '         0       1000          1\n         1     100000      65536\n';
    expect(inInitialUserNamespace(initial)).toBe(true);
    expect(inInitialUserNamespace(rootless)).toBe(false);
    expect(() => refuseMacvtapInUserNamespace('macvtap', 'model', initial)).not.toThrow();
    expect(() => refuseMacvtapInUserNamespace('tcfilter', 'model', rootless)).not.toThrow();
    expect(() => refuseMacvtapInUserNamespace('macvtap', '--model', rootless)).toThrow(
      expect.objectContaining({ code: 'VCNET_INVALID_INPUT', hint: expect.stringContaining('use model tcfilter') }),
    );
  });

  it("names the CLI's flags under a flag, the option (NetworkConfig's, the CNI config's) under an option", () => {
    const rootless = '         0       1000          1\n';
    const hintOf = (field: string): string => {
      try {
        refuseMacvtapInUserNamespace('macvtap', field, rootless);
      } catch (error) {
        return String((error as { hint?: string }).hint);
      }
      return 'not refused';
    };
    expect(hintOf('--model')).toContain('--model tcfilter');
    expect(hintOf('--model')).toContain('--tap-owner');
    expect(hintOf('model')).not.toMatch(/--[a-z]/);
    expect(hintOf('model')).toContain("model: 'tcfilter'");
    expect(hintOf('model')).toContain('tapOwner');
  });
});
