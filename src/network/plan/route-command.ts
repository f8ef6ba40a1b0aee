/**
 * A route as the arguments of `ip route add|del` (commands.ts): metrics with their locks, realms,
 * gateways of the other family, IPv6 preference and lifetime, and multipath next hops in iproute2's
 * syntax, so that the command makes the route the plan would.
 */

import { familyOf } from '../../netlink/codec/address-format.js';
import { AddressFamily } from '../../netlink/codec/constants.js';
import { RouteFlag, RoutePreference } from '../../netlink/codec/route.js';
import { RouteFeature, RouteMetric } from '../../netlink/codec/route-attributes.js';
import { shellWord } from '../../shell-word.js';
import type { LinkRef, NextHopRecord, RouteRecord } from './types.js';

/** iproute2's keyword for each metric, and whether it takes `lock`. */
const METRIC_KEYWORDS: ReadonlyMap<number, { keyword: string; lockable: boolean }> = new Map([
  [RouteMetric.WINDOW, { keyword: 'window', lockable: true }],
  [RouteMetric.RTT, { keyword: 'rtt', lockable: true }],
  [RouteMetric.RTTVAR, { keyword: 'rttvar', lockable: true }],
  [RouteMetric.SSTHRESH, { keyword: 'ssthresh', lockable: true }],
  [RouteMetric.CWND, { keyword: 'cwnd', lockable: true }],
  [RouteMetric.ADVMSS, { keyword: 'advmss', lockable: true }],
  [RouteMetric.REORDERING, { keyword: 'reordering', lockable: true }],
  [RouteMetric.HOPLIMIT, { keyword: 'hoplimit', lockable: true }],
  [RouteMetric.INITCWND, { keyword: 'initcwnd', lockable: true }],
  // iproute2 always locks rto_min, and takes no `lock` for it.
  [RouteMetric.RTO_MIN, { keyword: 'rto_min', lockable: false }],
  [RouteMetric.INITRWND, { keyword: 'initrwnd', lockable: true }],
  [RouteMetric.QUICKACK, { keyword: 'quickack', lockable: false }],
  [RouteMetric.CC_ALGO, { keyword: 'congctl', lockable: true }],
  [RouteMetric.FASTOPEN_NO_COOKIE, { keyword: 'fastopen_no_cookie', lockable: false }],
]);

/**
 * The metrics as iproute2 arguments. Times (rtt, rttvar, rto_min) are written without a unit, which
 * iproute2 sends as they are: the kernel's own values. Metrics iproute2 has no keyword for, and
 * feature bits other than ecn, cannot be written and are left out.
 */
function metricArguments(route: RouteRecord): string[] {
  const metrics = route.metrics ?? {};
  const lockBits = Number(metrics[RouteMetric.LOCK] ?? 0);
  const locked = (type: number) => ((lockBits >>> type) & 1) === 1;
  const parts: string[] = [];
  if (route.mtu !== undefined) parts.push(`mtu ${locked(RouteMetric.MTU) ? 'lock ' : ''}${route.mtu}`);
  const ordered = Object.keys(metrics)
    .map(Number)
    .sort((a, b) => a - b);
  for (const type of ordered) {
    const value = metrics[type]!;
    if (type === RouteMetric.FEATURES) {
      if (Number(value) & RouteFeature.ECN) parts.push('features ecn');
      continue;
    }
    const known = METRIC_KEYWORDS.get(type);
    if (!known) continue;
    parts.push(`${known.keyword} ${known.lockable && locked(type) ? 'lock ' : ''}${shellWord(String(value))}`);
  }
  return parts;
}

/** RTA_FLOW as iproute2 reads it: `realm TO`, `realms FROM/TO`, or the raw number when a part exceeds 255. */
function realmArgument(keyword: 'realm' | 'realms', realm: number): string {
  const from = realm >>> 16;
  const to = realm & 0xffff;
  if (from > 255 || to > 255) return `realms ${realm >>> 0}`;
  return from === 0 ? `${keyword} ${to}` : `realms ${from}/${to}`;
}

/** `via GATEWAY`, or `via inet6 GATEWAY` / `via inet GATEWAY` for one of the other family (RTA_VIA). */
function viaArgument(gateway: string, routeFamily: number | undefined): string {
  const family = familyOf(gateway);
  if (routeFamily === undefined || family === routeFamily) return `via ${gateway}`;
  return `via ${family === AddressFamily.INET6 ? 'inet6' : 'inet'} ${gateway}`;
}

const PREFERENCE_KEYWORDS: Record<number, string> = {
  [RoutePreference.LOW]: 'low',
  [RoutePreference.MEDIUM]: 'medium',
  [RoutePreference.HIGH]: 'high',
};

function nextHopArguments(hop: NextHopRecord, link: LinkRef, routeFamily: number | undefined): string {
  const parts = ['nexthop'];
  if (hop.gateway) parts.push(viaArgument(hop.gateway, routeFamily));
  parts.push(`dev ${shellWord(hop.link ? hop.link.name : link.name)}`);
  parts.push(`weight ${hop.weight ?? 1}`);
  if ((hop.flags ?? 0) & RouteFlag.ONLINK) parts.push('onlink');
  // Per hop, iproute2 takes only `realms`.
  if (hop.realm !== undefined) parts.push(realmArgument('realms', hop.realm));
  return parts.join(' ');
}

/** `DESTINATION [via GATEWAY dev LINK] [options...] [nexthop ...]`: next hops last, as iproute2 wants. */
export function routeArguments(route: RouteRecord, link: LinkRef): string {
  const parts = [route.destination ? `${route.destination}/${route.destinationLength ?? 0}` : 'default'];
  if (route.tos) parts.push(`tos 0x${route.tos.toString(16).padStart(2, '0')}`);
  const nextHops = route.nextHops ?? [];
  if (nextHops.length === 0) {
    if (route.gateway) parts.push(viaArgument(route.gateway, route.family));
    parts.push(`dev ${shellWord(link.name)}`);
  }
  if (route.preferredSource) parts.push(`src ${route.preferredSource}`);
  if (route.table !== undefined) parts.push(`table ${route.table}`);
  if (route.protocol !== undefined) parts.push(`proto ${route.protocol}`);
  if (route.scope !== undefined) parts.push(`scope ${route.scope}`);
  if (route.priority !== undefined) parts.push(`metric ${route.priority}`);
  parts.push(...metricArguments(route));
  if (route.realm !== undefined) parts.push(realmArgument('realm', route.realm));
  if (route.flags && route.flags & RouteFlag.ONLINK) parts.push('onlink');
  if (route.preference !== undefined) {
    parts.push(`pref ${PREFERENCE_KEYWORDS[route.preference] ?? route.preference}`);
  }
  if (route.expires !== undefined) parts.push(`expires ${route.expires}`);
  parts.push(...nextHops.map((hop) => nextHopArguments(hop, link, route.family)));
  return parts.join(' ');
}
