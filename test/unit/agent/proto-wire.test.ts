/**
 * Wire compatibility of vcnet's generated messages with the .proto files as protoc reads them: what vcnet
 * encodes, protoc decodes to the expected text; what protoc encodes from text, vcnet decodes to the same
 * values. The .proto files carry Kata's field numbers, so this is what makes vcnet's bytes Kata's bytes.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { AgentMethods } from '../../../src/agent/agent-service.js';
import {
  AddARPNeighborsRequestSchema,
  AgentService,
  GetIPTablesRequestSchema,
  GetIPTablesResponseSchema,
  SetIPTablesRequestSchema,
  SetIPTablesResponseSchema,
  UpdateInterfaceRequestSchema,
  UpdateRoutesRequestSchema,
} from '../../../src/agent/generated/agent_pb.js';
import { RequestSchema, ResponseSchema } from '../../../src/agent/generated/ttrpc_pb.js';
import { IPFamily } from '../../../src/agent/generated/types_pb.js';

const protocMissing = spawnSync('protoc', ['--version']).error !== undefined;
if (protocMissing)
  console.log('proto-wire: skipped: protoc is not installed (Debian: apt-get install protobuf-compiler)');

const root = new URL('../../../', import.meta.url).pathname;

function protocDecode(type: string, file: string, bytes: Uint8Array): string {
  return execFileSync('protoc', [`--decode=${type}`, '-I', 'proto', `proto/${file}`], {
    cwd: root,
    input: bytes,
    encoding: 'utf8',
  });
}

function protocEncode(type: string, file: string, text: string): Uint8Array {
  // A plain Uint8Array: bytes fields decoded from a Buffer would be Buffers and compare unequal.
  return new Uint8Array(
    execFileSync('protoc', [`--encode=${type}`, '-I', 'proto', `proto/${file}`], { cwd: root, input: text }),
  );
}

const interfaceRequest = create(UpdateInterfaceRequestSchema, {
  interface: {
    device: 'eth0',
    name: 'eth0',
    IPAddresses: [
      { family: IPFamily.v4, address: '10.0.0.2', mask: '24' },
      { family: IPFamily.v6, address: 'fd00::2', mask: '64' },
    ],
    mtu: 1500n,
    hwAddr: '02:00:ca:fe:00:01',
    devicePath: '02/00',
    type: 'veth',
    rawFlags: 128,
  },
});

// protoc prints fields in number order and leaves zero values (family v4) out, as proto3 encodes them.
const interfaceRequestText = `interface {
  device: "eth0"
  name: "eth0"
  IPAddresses {
    address: "10.0.0.2"
    mask: "24"
  }
  IPAddresses {
    family: v6
    address: "fd00::2"
    mask: "64"
  }
  mtu: 1500
  hwAddr: "02:00:ca:fe:00:01"
  devicePath: "02/00"
  type: "veth"
  raw_flags: 128
}
`;

describe.skipIf(protocMissing)('agent.proto wire compatibility with protoc', () => {
  it('UpdateInterfaceRequest encoded by vcnet decodes in protoc to the expected text', () => {
    expect(
      protocDecode(
        'grpc.UpdateInterfaceRequest',
        'agent.proto',
        toBinary(UpdateInterfaceRequestSchema, interfaceRequest),
      ),
    ).toBe(interfaceRequestText);
  });

  it('UpdateInterfaceRequest encoded by protoc decodes in vcnet to the same values', () => {
    const decoded = fromBinary(
      UpdateInterfaceRequestSchema,
      protocEncode('grpc.UpdateInterfaceRequest', 'agent.proto', interfaceRequestText),
    );
    expect(decoded).toEqual(interfaceRequest);
  });

  it('both encoders make the same bytes for the same request', () => {
    expect(Buffer.from(protocEncode('grpc.UpdateInterfaceRequest', 'agent.proto', interfaceRequestText))).toEqual(
      Buffer.from(toBinary(UpdateInterfaceRequestSchema, interfaceRequest)),
    );
  });

  it('UpdateRoutesRequest carries route flags and MTU (fields 7 and 8) both ways', () => {
    const text = `routes {
  Routes {
    dest: "10.1.0.0/16"
    device: "eth0"
    scope: 253
  }
  Routes {
    gateway: "fd00::1"
    device: "eth0"
    source: "fd00::2"
    family: v6
    flags: 4
    mtu: 1400
  }
}
`;
    const request = create(UpdateRoutesRequestSchema, {
      routes: {
        Routes: [
          { dest: '10.1.0.0/16', device: 'eth0', scope: 253 },
          { gateway: 'fd00::1', device: 'eth0', source: 'fd00::2', family: IPFamily.v6, flags: 4, mtu: 1400 },
        ],
      },
    });
    expect(protocDecode('grpc.UpdateRoutesRequest', 'agent.proto', toBinary(UpdateRoutesRequestSchema, request))).toBe(
      text,
    );
    expect(
      fromBinary(UpdateRoutesRequestSchema, protocEncode('grpc.UpdateRoutesRequest', 'agent.proto', text)),
    ).toEqual(request);
  });

  it('AddARPNeighborsRequest round-trips through protoc, negative int32 included', () => {
    const text = `neighbors {
  ARPNeighbors {
    toIPAddress {
      address: "10.0.0.1"
      mask: "32"
    }
    device: "eth0"
    lladdr: "02:00:00:00:00:01"
    state: 128
    flags: -1
  }
}
`;
    const request = create(AddARPNeighborsRequestSchema, {
      neighbors: {
        ARPNeighbors: [
          {
            toIPAddress: { family: IPFamily.v4, address: '10.0.0.1', mask: '32' },
            device: 'eth0',
            lladdr: '02:00:00:00:00:01',
            state: 128,
            flags: -1,
          },
        ],
      },
    });
    expect(
      protocDecode('grpc.AddARPNeighborsRequest', 'agent.proto', toBinary(AddARPNeighborsRequestSchema, request)),
    ).toBe(text);
    expect(
      fromBinary(AddARPNeighborsRequestSchema, protocEncode('grpc.AddARPNeighborsRequest', 'agent.proto', text)),
    ).toEqual(request);
  });

  it("GetIPTables and SetIPTables carry Kata's field numbers (is_ipv6 = 1, data = 2 in the request, data = 1 in answers)", () => {
    // The bytes Kata's agent reads, written out: field 1 varint (tag 0x08), field 2 bytes (tag 0x12).
    const rules = new TextEncoder().encode('*filter\nCOMMIT\n');
    const set = toBinary(SetIPTablesRequestSchema, create(SetIPTablesRequestSchema, { isIpv6: true, data: rules }));
    expect([...set]).toEqual([0x08, 0x01, 0x12, rules.length, ...rules]);
    expect([...toBinary(GetIPTablesRequestSchema, create(GetIPTablesRequestSchema, { isIpv6: true }))]).toEqual([
      0x08, 0x01,
    ]);
    for (const schema of [GetIPTablesResponseSchema, SetIPTablesResponseSchema]) {
      expect([...toBinary(schema, create(schema, { data: new Uint8Array([0x41]) }))]).toEqual([0x0a, 0x01, 0x41]);
    }
    expect(protocDecode('grpc.SetIPTablesRequest', 'agent.proto', set)).toBe(
      'is_ipv6: true\ndata: "*filter\\nCOMMIT\\n"\n',
    );
    // Kata's method names on Kata's service: the ttrpc paths its agent serves.
    expect(AgentService.typeName).toBe('grpc.AgentService');
    expect([AgentMethods.getIpTables, AgentMethods.setIpTables].map((method) => method.method)).toEqual([
      'GetIPTables',
      'SetIPTables',
    ]);
  });

  it("ttrpc's Request and Response (with google.rpc.Status) match protoc both ways", () => {
    const request = create(RequestSchema, {
      service: 'grpc.AgentService',
      method: 'ListRoutes',
      payload: new Uint8Array([8, 1]),
      timeoutNano: 5_000_000_000n,
      metadata: [{ key: 'trace', value: 'x' }],
    });
    const requestText = `service: "grpc.AgentService"
method: "ListRoutes"
payload: "\\010\\001"
timeout_nano: 5000000000
metadata {
  key: "trace"
  value: "x"
}
`;
    expect(protocDecode('ttrpc.Request', 'ttrpc.proto', toBinary(RequestSchema, request))).toBe(requestText);
    expect(fromBinary(RequestSchema, protocEncode('ttrpc.Request', 'ttrpc.proto', requestText))).toEqual(request);

    const responseText = `status {
  code: 3
  message: "interface.hwAddr: bad"
}
`;
    const response = create(ResponseSchema, { status: { code: 3, message: 'interface.hwAddr: bad' } });
    expect(protocDecode('ttrpc.Response', 'ttrpc.proto', toBinary(ResponseSchema, response))).toBe(responseText);
    expect(fromBinary(ResponseSchema, protocEncode('ttrpc.Response', 'ttrpc.proto', responseText))).toEqual(response);
  });
});

describe.skipIf(protocMissing)('generated code', () => {
  it('src/agent/generated matches what scripts/generate-proto makes from proto/ now', () => {
    const result = spawnSync('scripts/generate-proto', ['--check'], { cwd: root, encoding: 'utf8' });
    expect(result.stderr + result.stdout).toContain('up to date');
    expect(result.status).toBe(0);
  });
});
