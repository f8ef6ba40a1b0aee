#!/usr/bin/env node
/**
 * Puts the shim prebuildify just made back in build/Release (run by `npm pack`'s prepack, after
 * prebuildify). prebuildify moves the built file into prebuilds/, which left a checkout where
 * `npm pack` had run without build/Release/vcnet_native.node: the guest image build and the tests
 * that read that path then failed until `npm run build:native`.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { arch, platform } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const built = join(root, 'build', 'Release', 'vcnet_native.node');
const prebuilds = join(root, 'prebuilds', `${platform()}-${arch()}`);
if (!existsSync(built)) {
  const prebuilt = existsSync(prebuilds) ? readdirSync(prebuilds).filter((name) => name.endsWith('.node')) : [];
  if (prebuilt.length !== 1) {
    console.error(
      `keep-native-build: expected one .node file in ${prebuilds}, found ${prebuilt.length}: run npm run build:native`,
    );
    process.exit(1);
  }
  mkdirSync(join(root, 'build', 'Release'), { recursive: true });
  copyFileSync(join(prebuilds, prebuilt[0]), built);
}
