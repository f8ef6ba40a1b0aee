import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Integration tests share one kernel: namespaces are unique per test, but run files one at a time
    // so timing-sensitive kernel work (RCU waits, VM boots) does not pile up on two cores.
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default', './test/helpers/summary-reporter.ts'],
    globalSetup: ['./test/global-setup.ts'],
    setupFiles: ['./test/helpers/yield-between-tests.ts'],
  },
});
