/** node-gyp-build ships no types: its default export loads the addon built or prebuilt for this platform. */
declare module 'node-gyp-build' {
  /** Returns the addon under `directory` (build/Release, build/Debug, then prebuilds/<platform>-<arch>) or throws. */
  function loadAddon(directory: string): unknown;
  namespace loadAddon {
    /** The path of the addon loadAddon would load, or throws ("No native build was found ..."). */
    function resolve(directory: string): string;
  }
  export default loadAddon;
}
