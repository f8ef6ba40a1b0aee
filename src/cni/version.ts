/**
 * The CNI spec versions vcnet-cni speaks and how a result moves between them. Results of 0.3.0,
 * 0.3.1 and 0.4.0 mark each IP with `version` ("4" or "6"); 1.0.0 dropped that field and 1.1.0
 * added optional fields (interface mtu/socketPath/pciID, route mtu/advmss/priority/table/scope)
 * that older readers ignore. So a result is kept in one internal shape (1.x, without `version`)
 * and written in the version the runtime asked for.
 */

/** Oldest first. 0.3.0 is the first with the interfaces/ips/routes result; 0.1.0 and 0.2.0 are not spoken. */
export const SUPPORTED_CNI_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type SupportedCniVersion = (typeof SUPPORTED_CNI_VERSIONS)[number];
/** What vcnet-cni answers in when the runtime names no version it speaks. */
export const PREFERRED_CNI_VERSION: SupportedCniVersion = '1.0.0';

export function isSupportedCniVersion(version: unknown): version is SupportedCniVersion {
  return typeof version === 'string' && (SUPPORTED_CNI_VERSIONS as readonly string[]).includes(version);
}

/** Which commands a config of each version may ask for: CHECK came with 0.4.0, STATUS and GC with 1.1.0. */
export function commandAllowed(command: string, version: SupportedCniVersion): boolean {
  if (command === 'CHECK') return atLeast(version, '0.4.0');
  if (command === 'STATUS' || command === 'GC') return atLeast(version, '1.1.0');
  return true;
}

export function atLeast(version: SupportedCniVersion, minimum: SupportedCniVersion): boolean {
  return SUPPORTED_CNI_VERSIONS.indexOf(version) >= SUPPORTED_CNI_VERSIONS.indexOf(minimum);
}

interface ResultIp extends Record<string, unknown> {
  address: string;
  version?: string;
}

/** A CNI result in any supported version (the fields vcnet-cni reads; everything else passes through). */
export interface VersionedResult extends Record<string, unknown> {
  cniVersion?: string;
  ips?: ResultIp[];
}

/** "4" or "6" for a CIDR string, as 0.3.x/0.4.0 results spell it. */
function ipFamilyOf(address: string): '4' | '6' {
  return address.includes(':') ? '6' : '4';
}

/** The result in the internal (1.x) shape: IPs without `version`. */
export function normalizeResult<T extends VersionedResult>(result: T): T {
  if (!result.ips) return result;
  return {
    ...result,
    ips: result.ips.map(({ version: _version, ...ip }) => ip),
  };
}

/** The result written in `version`: 0.x marks each IP with its family, 1.x does not. */
export function resultInVersion<T extends VersionedResult>(result: T, version: SupportedCniVersion): T {
  const normalized = normalizeResult(result);
  const ips = atLeast(version, '1.0.0')
    ? normalized.ips
    : normalized.ips?.map((ip) => ({ ...ip, version: ipFamilyOf(ip.address) }));
  return { ...normalized, cniVersion: version, ...(ips ? { ips } : {}) };
}

export interface VersionReply {
  cniVersion: string;
  supportedVersions: string[];
}

/** VERSION: answers in the version asked for when vcnet-cni speaks it. */
export function versionReply(input: string): VersionReply {
  let asked: unknown;
  try {
    asked = (JSON.parse(input) as { cniVersion?: unknown }).cniVersion;
  } catch {
    asked = undefined;
  }
  return {
    cniVersion: isSupportedCniVersion(asked) ? asked : PREFERRED_CNI_VERSION,
    supportedVersions: [...SUPPORTED_CNI_VERSIONS],
  };
}
