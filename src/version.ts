/**
 * vcnet's version, for `vcnet --version` and the tracer's instrumentation version. A constant rather
 * than a read of package.json: the bundled programs do not sit where the package's root is.
 * test/unit/version.test.ts keeps it equal to package.json's.
 */
export const VCNET_VERSION = '0.1.0';
