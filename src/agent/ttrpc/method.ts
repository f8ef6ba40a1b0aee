/** What the ttrpc client and server need to know about a unary method: its names and message schemas. */
import type { DescMessage, DescMethod } from '@bufbuild/protobuf';

/**
 * A unary ttrpc method: the service and method names sent on the wire and the protobuf schemas of its request
 * and answer. Give it to `TtrpcServer.register`.
 */
export interface UnaryMethod<Input extends DescMessage = DescMessage, Output extends DescMessage = DescMessage> {
  /** Fully qualified service name, as sent in Request.service: "grpc.AgentService". */
  service: string;
  /** Method name as declared in the .proto file, as sent in Request.method: "UpdateInterface". */
  method: string;
  input: Input;
  output: Output;
}

/** The UnaryMethod of a generated service method (protoc-gen-es `Service.method.name`). */
export function unaryMethod<Input extends DescMessage, Output extends DescMessage>(
  descriptor: DescMethod & { input: Input; output: Output },
): UnaryMethod<Input, Output> {
  return {
    service: descriptor.parent.typeName,
    method: descriptor.name,
    input: descriptor.input,
    output: descriptor.output,
  };
}

export function methodPath(method: { service: string; method: string }): string {
  return `${method.service}/${method.method}`;
}
