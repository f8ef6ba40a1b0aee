import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { VCNET_VERSION } from '../../src/version.js';

describe('VCNET_VERSION', () => {
  it("is package.json's version", () => {
    const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    expect(VCNET_VERSION).toBe(manifest.version);
  });
});
