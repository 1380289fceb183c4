/**
 * The documented order in which hooks fire, per on-ramp. Only implemented hooks fire, so
 * a connection's trace is this list with the hooks it skipped (not implemented, or not
 * reached) left out. Per-packet hooks (`ipFlow.handlePacket`) are recorded once, at their
 * first firing. Tests compare recorded traces against these lists: an engine change that
 * reorders hooks fails them.
 */
import type { Onramp } from './types.js';

export type TracedOnramp = Onramp | 'http-proxy';

export const HOOK_ORDER: Readonly<Record<TracedOnramp, readonly string[]>> = {
  'connect-proxy': [
    'newCtx',
    'proxyProtocol.handleConnection',
    'ingress.handleConnection',
    'http.handleProxyConnectRequest',
    'egress.dnsResolveOverride',
    'egress.handleUpstreamIps',
    'egress.handleConnection',
    'egress.tcpConnectOverride',
    'egress.handleConnectionEstablished',
    'http.handleProxyConnectResponse',
    'tunnel.shouldInterceptHttps',
    'tunnel.appTunnelPipeline',
    'ingress.handleConnectionClose',
  ],
  /** Absolute-form requests on the forward proxy; on a kept-alive connection the request part repeats. */
  'http-proxy': [
    'newCtx',
    'proxyProtocol.handleConnection',
    'ingress.handleConnection',
    'http.handleRequest',
    'egress.dnsResolveOverride',
    'egress.handleUpstreamIps',
    'egress.handleConnection',
    'egress.tcpConnectOverride',
    'egress.handleConnectionEstablished',
    'http.handleResponse',
    'ingress.handleConnectionClose',
  ],
  /**
   * Requests to public hostnames (`--http-listen`), routed by Host into a tunnel: no egress
   * hooks (the hostname's tunnel is the destination). On a kept-alive connection the request
   * part repeats.
   */
  'public-hostname': [
    'newCtx',
    'proxyProtocol.handleConnection',
    'ingress.handleConnection',
    'http.handleRequest',
    'http.handleResponse',
    'ingress.handleConnectionClose',
  ],
  'ip-flow': [
    'newCtx',
    'ipFlow.handleFlow',
    'ipFlow.handlePacket',
    'ingress.handleConnection',
    'egress.handleUpstreamIps',
    'egress.handleConnection',
    'egress.tcpConnectOverride',
    'egress.udpConnectOverride',
    'egress.handleConnectionEstablished',
    'tunnel.shouldInterceptHttps',
    'tunnel.appTunnelPipeline',
    'ingress.handleConnectionClose',
  ],
};

/**
 * On-ramps that carry several requests per connection: the hooks from this one up to (not
 * including) `ingress.handleConnectionClose` repeat per request, so any of them may start a
 * request again (an app may implement only `handleResponse`).
 */
const REQUEST_START: Partial<Record<TracedOnramp, string>> = { 'http-proxy': 'http.handleRequest', 'public-hostname': 'http.handleRequest' };

/**
 * Where a recorded trace departs from the documented order: a list of messages, empty when
 * the trace is in order. Unknown hook names are violations too.
 */
export function orderViolations(onramp: TracedOnramp, trace: readonly string[]): string[] {
  const order = HOOK_ORDER[onramp];
  const problems: string[] = [];
  const start = REQUEST_START[onramp];
  const repeatFrom = start ? order.indexOf(start) : Infinity;
  const repeatTo = order.indexOf('ingress.handleConnectionClose');
  let last = -1;
  for (const [i, name] of trace.entries()) {
    const at = order.indexOf(name);
    if (at < 0) {
      problems.push(`#${i} ${name} is not a ${onramp} hook`);
      continue;
    }
    const nextRequest = at >= repeatFrom && at < repeatTo && last < repeatTo;
    if (at <= last && !nextRequest) {
      problems.push(`#${i} ${name} fired after ${order[last]}, but the documented order puts it before`);
    }
    last = at;
  }
  return problems;
}

/** The documented order restricted to `fired`: what a trace of exactly those hooks must be. */
export function expectedOrder(onramp: TracedOnramp, fired: Iterable<string>): string[] {
  const set = new Set(fired);
  return HOOK_ORDER[onramp].filter((n) => set.has(n));
}
