/**
 * Flow tracking for the IP edge: the flow table (signature → flow, decisions memoized,
 * limits, idle eviction, start/end events from one place), the NAT slot pools, and IP
 * fragment reassembly per scope.
 */
export { Flow, FlowScope } from './flow.js';
export { FlowTable, type FlowHooks, type FlowLimits, type FlowTimeouts, type FlowTableOptions, type FlowTableStats } from './table.js';
export { Reassembler, MAX_DATAGRAM, FRAGMENT_OVERHEAD_BYTES, type ReassemblyLimits, type ReassemblyDrop, type ReassemblerOptions } from './reassembly.js';
export { NatPool, type NatPoolOptions } from './nat.js';
export type { IpContext, FlowDecision, FlowVerdict, FlowEndReason, FlowRefusal } from './types.js';
