/**
 * Hooks: typed extension points at every layer of the edge (see types.ts for the API,
 * order.ts for the documented firing order, docs/hooks.md for the reference).
 *
 *   // my-app.js, loaded with `oxyctl edge run --hooks ./my-app.js`
 *   export async function start(settings, parentState) {
 *     return {
 *       newCtx: () => ({ mayReachPrivate: false }),
 *       http: { handleProxyConnectRequest(head, ctx) { … } },
 *       egress: { handleConnection(target, ctx) { return { action: 'direct' }; } },
 *     };
 *   }
 */
export * from './types.js';
export { HookRunner, HookConnection, HookError, HookTrace, type TraceEntry, type HookRunnerOptions } from './runner.js';
export { HOOK_ORDER, orderViolations, expectedOrder, type TracedOnramp } from './order.js';
export { loadHooks, saveHooksState, validateHooks, hooksStatePath, HOOK_FAMILIES, type LoadHooksOptions } from './load.js';
