/**
 * The pipeline that runs the application's hooks (../../hooks/ is the API they implement):
 * admission of accepted connections, HTTP request/response hooks, the tunnel phase
 * (intercept), the IP-flow wrapper, and egress (where a connection leaves the edge).
 */
export { Egress, EgressError, type EgressOptions, type EgressResult, type ProxyErrorType } from './egress.js';
export { withIpHooks, attachPacketHook, hasIpHooks, type FlowContexts } from './ip.js';
