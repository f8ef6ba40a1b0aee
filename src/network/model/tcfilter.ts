/**
 * tcfilter (Kata's default): a tap beside the pod interface, an ingress qdisc on both, and a u32
 * match-all filter on each that redirects (mirred egress, STOLEN) every frame to the other side.
 * The pod interface keeps its MAC and addresses; the guest NIC takes the pod interface's MAC.
 * The steps are planned in plan/plan-attach.ts.
 */
import type { Link } from '../../netlink/codec/link.js';
import { type AttachedPlumbing, attachByPlan, type PlumbingContext } from './plumbing-context.js';

export function attachTcFilter(context: PlumbingContext, source: Link, tapName: string): Promise<AttachedPlumbing> {
  return attachByPlan(context, { model: 'tcfilter', source, tapName });
}
