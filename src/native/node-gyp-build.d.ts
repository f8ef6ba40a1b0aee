/** node-gyp-build ships no types: its default export loads the addon built or prebuilt for this platform. */
declare module 'node-gyp-build' {
  /** Returns the addon under `directory` (build/Release, build/Debug, then prebuilds/<platform>-<arch>) or throws. */
  function loadAddon(directory: string): unknown;
  export default loadAddon;
}
