/**
 * google.rpc.Code: the status codes ttrpc carries in Response.status.code. The Kata runtime switches on
 * these (it is a gRPC status underneath), so vcnet uses the same numbers and names.
 */
export const StatusCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

export type StatusCodeName = keyof typeof StatusCode;

const namesByValue = new Map<number, StatusCodeName>(
  Object.entries(StatusCode).map(([name, value]) => [value, name as StatusCodeName]),
);

/** "INVALID_ARGUMENT" for 3; "CODE_42" for a number google.rpc does not define (a newer peer). */
export function statusCodeName(code: number): string {
  return namesByValue.get(code) ?? `CODE_${code}`;
}
