/**
 * Agent requests as Kata writes them (test/fixtures/kata/json, recorded from Kata: genpolicy's test
 * cases, the serde JSON the agent's policy log writes), read by add-iface's and update-routes' readers:
 * every request is read whole, no key ignored, each field as the JSON gives it. Whether the policy
 * allows it (`allowed`) is the agent's business, not the reader's.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  interfaceRequestFromJson,
  parseKataJsonText,
  routesRequestFromJson,
} from '../../../src/agent/kata-network-json.js';

interface TestCase {
  description: string;
  kind: string;
  request: Record<string, unknown>;
}

function testCases(name: string): TestCase[] {
  return JSON.parse(readFileSync(new URL(`../../fixtures/kata/json/${name}`, import.meta.url), 'utf8')) as TestCase[];
}

describe("genpolicy's UpdateInterfaceRequest test cases", () => {
  for (const { description, kind, request } of testCases('genpolicy-updateinterface-testcases.json')) {
    it(`${description}: read whole`, () => {
      expect(kind).toBe('UpdateInterfaceRequest');
      const given = request.interface as Record<string, unknown>;
      const ignoredKeys: string[] = [];
      const message = interfaceRequestFromJson(parseKataJsonText(JSON.stringify(request), 'interface'), {
        ignoredKeys,
      });
      expect(ignoredKeys).toEqual([]);
      expect({
        device: message.device,
        name: message.name,
        mtu: Number(message.mtu),
        hwAddr: message.hwAddr,
        devicePath: message.devicePath,
        type: message.type,
        rawFlags: message.rawFlags,
        addresses: message.IPAddresses.map(({ family, address, mask }) => ({ family, address, mask })),
      }).toEqual({
        device: given.device,
        name: given.name,
        mtu: given.mtu,
        hwAddr: given.hwAddr,
        devicePath: given.pciPath,
        type: given.type_,
        rawFlags: given.raw_flags,
        addresses: given.IPAddresses,
      });
    });
  }
});

describe("genpolicy's UpdateRoutesRequest test cases", () => {
  for (const { description, kind, request } of testCases('genpolicy-updateroutes-testcases.json')) {
    it(`${description}: read whole`, () => {
      expect(kind).toBe('UpdateRoutesRequest');
      const given = (request.routes as { Routes: Array<Record<string, unknown>> }).Routes;
      const ignoredKeys: string[] = [];
      const routes = routesRequestFromJson(parseKataJsonText(JSON.stringify(request), 'routes'), { ignoredKeys });
      expect(ignoredKeys).toEqual([]);
      expect(
        routes?.map(({ dest, device, family, gateway, scope, source }) => ({
          dest,
          device,
          family,
          gateway,
          scope,
          source,
        })),
      ).toEqual(given);
    });
  }
});
