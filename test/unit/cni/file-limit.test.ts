import { describe, expect, it } from 'vitest';
import {
  MINIMUM_OPEN_FILES,
  openFileLimitHint,
  parseOpenFileLimit,
  readOpenFileLimit,
} from '../../../src/cni/file-limit.js';

/** /proc/self/limits as Linux 6.1 prints it (its rows around the one read). */
const LIMITS = `Limit                     Soft Limit           Hard Limit           Units     
Max processes             63432                63432                processes 
Max open files            1024                 524288               files     
Max locked memory         8388608              8388608              bytes     
`;

describe("vcnet-cni's open-file limit", () => {
  it('is read from the "Max open files" row of /proc/PID/limits', () => {
    expect(parseOpenFileLimit(LIMITS)).toEqual({ soft: 1024, hard: 524288 });
    expect(parseOpenFileLimit(LIMITS.replace('1024 ', 'unlimited'))).toBeUndefined();
    expect(parseOpenFileLimit('')).toBeUndefined();
    // This process's own: the numbers `ulimit -Sn` and `ulimit -Hn` give.
    const own = readOpenFileLimit();
    expect(own?.soft).toBeGreaterThan(0);
    expect(own!.hard).toBeGreaterThanOrEqual(own!.soft);
  });

  it('is named by the hint with what vcnet-cni needs and where a node sets it', () => {
    expect(openFileLimitHint({ soft: 20, hard: 4096 })).toBe(
      `the open-file limit of vcnet-cni is 20 (hard limit 4096); it needs ${MINIMUM_OPEN_FILES} besides the files its runtime leaves open in it: raise LimitNOFILE= of the container runtime's service (systemctl edit containerd, or crio), whose limits its CNI plugins inherit, then retry (node raises the soft limit to the hard one as it starts: the hard limit is the one that counts)`,
    );
    expect(openFileLimitHint(undefined)).toMatch(
      /^the hard open-file limit of vcnet-cni \(ulimit -Hn\) is too low; it needs 64 /,
    );
  });
});
