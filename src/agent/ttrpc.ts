/**
 * ttrpc (containerd's small RPC protocol, which the Kata agent speaks) over any Duplex byte stream.
 * The pieces live in ./ttrpc/: framing, the client, the server, status codes.
 *
 * Request/Response/Status are generated from proto/ttrpc.proto and proto/status.proto rather than
 * written by hand with BinaryWriter: the same generator and wire tests as the agent messages, and
 * protoc can decode what we send when something goes wrong.
 */
export { type CallOptions, TtrpcClient } from './ttrpc/client.js';
export {
  type DecodedFrame,
  encodeFrame,
  FRAME_HEADER_LENGTH,
  FrameDecoder,
  type FrameHeader,
  FrameType,
  MAX_FRAME_LENGTH,
} from './ttrpc/frame.js';
export { methodPath, type UnaryMethod, unaryMethod } from './ttrpc/method.js';
export {
  type CallContext,
  defaultStatusOf,
  type Status,
  TtrpcConnection,
  TtrpcServer,
  type TtrpcServerOptions,
  type UnaryHandler,
} from './ttrpc/server.js';
export { StatusCode, type StatusCodeName, statusCodeName } from './ttrpc/status-code.js';
