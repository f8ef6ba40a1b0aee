/** Whether /proc hides processes from vcnet (hidepid=), read from mountinfo and CapEff. */
import { describe, expect, it } from 'vitest';
import { hasSysPtrace, procHidesProcesses } from '../../src/netns/processes.js';
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
});
