/**
 * Loading a `--hooks` module: `import()` it, check its shape, call `start(settings,
 * parentState)`, and wrap what it returns in a {@link HookRunner}. The state the previous
 * process saved with `lifecycle.stateForRestart` is read from (and then removed from)
 * `$OXY_HOME/edge/hooks-state.json`.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { OxyError } from '../../core/errors.js';
import type { Logger } from '../observe/log.js';
import { HookRunner, type HookTrace } from './runner.js';
import type { HookContext, Hooks, HookSettings, IpOffRamp } from './types.js';

/** Hook names per family: anything else in a module's hooks is a mistake worth an error. */
export const HOOK_FAMILIES: Readonly<Record<string, readonly string[]>> = {
  ingress: ['handleConnection', 'handleConnectionClose'],
  ipFlow: ['handleFlow', 'handlePacket'],
  proxyProtocol: ['handleConnection'],
  tunnel: ['shouldInterceptHttps', 'appTunnelPipeline'],
  http: ['handleProxyConnectRequest', 'handleProxyConnectResponse', 'handleRequest', 'handleResponse'],
  egress: ['dnsResolveOverride', 'handleUpstreamIps', 'handleConnection', 'tcpConnectOverride', 'udpConnectOverride', 'handleConnectionEstablished'],
  lifecycle: ['stateForRestart'],
};

const moduleError = (path: string, message: string, cause?: unknown) => new OxyError('OXY_ERR_HOOKS_MODULE', `Hooks module ${path}: ${message}`, { cause });

/** Checks the object `start` returned; throws OXY_ERR_HOOKS_MODULE naming the first problem. */
export function validateHooks(path: string, hooks: unknown): Hooks<unknown> {
  if (hooks === undefined || hooks === null) return {};
  if (typeof hooks !== 'object') throw moduleError(path, 'start() must return an object of hook families');
  for (const [family, value] of Object.entries(hooks)) {
    if (family === 'newCtx') {
      if (typeof value !== 'function') throw moduleError(path, 'newCtx must be a function');
      continue;
    }
    const names = HOOK_FAMILIES[family];
    if (!names) throw moduleError(path, `unknown hook family "${family}" (known: newCtx, ${Object.keys(HOOK_FAMILIES).join(', ')})`);
    if (value === undefined || value === null) continue;
    if (typeof value !== 'object') throw moduleError(path, `${family} must be an object of hooks`);
    // Own and prototype methods (class instances) both count.
    for (let o: object | null = value as object; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
      for (const name of Object.getOwnPropertyNames(o)) {
        if (name === 'constructor' || name.startsWith('_') || name.startsWith('#')) continue;
        const member = (value as Record<string, unknown>)[name];
        if (typeof member !== 'function') continue;
        if (!names.includes(name)) throw moduleError(path, `unknown hook ${family}.${name} (known: ${names.join(', ')})`);
      }
    }
  }
  return hooks as Hooks<unknown>;
}

export const hooksStatePath = (home: string) => join(home, 'edge', 'hooks-state.json');

export interface LoadHooksOptions {
  home: string;
  location: string;
  log: Logger;
  trace?: boolean | HookTrace;
  /** The edge's vnet off-ramp for (the tenant and vnet of) a connection, once the IP path runs. */
  vnetOffRamp?: (ctx: HookContext) => IpOffRamp | undefined;
}

/** Imports `path` (relative to the working directory), runs its start() and returns the runner. */
export async function loadHooks(path: string, o: LoadHooksOptions): Promise<HookRunner> {
  const url = pathToFileURL(resolve(path)).href;
  let mod: { start?: unknown; default?: { start?: unknown } };
  try {
    mod = (await import(url)) as typeof mod;
  } catch (err) {
    throw moduleError(path, `cannot be imported: ${(err as Error).message}`, err);
  }
  const start = mod.start ?? mod.default?.start;
  if (typeof start !== 'function') throw moduleError(path, 'must export a function start(settings, parentState)');
  const statePath = hooksStatePath(o.home);
  let parentState: unknown;
  if (existsSync(statePath)) {
    parentState = JSON.parse(readFileSync(statePath, 'utf8'));
    rmSync(statePath, { force: true });
  }
  const vnetOffRamp = (ctx: HookContext): IpOffRamp => {
    const offRamp = o.vnetOffRamp?.(ctx);
    if (!offRamp) throw new Error('settings.vnetOffRamp needs the edge IP path: start the edge with --ip-tunnel-listen or --gue-listen');
    return offRamp;
  };
  const settings: HookSettings = { module: path, home: o.home, location: o.location, log: o.log.child({ hooks: path }), vnetOffRamp };
  let hooks: unknown;
  try {
    hooks = await (start as (s: HookSettings, p: unknown) => unknown)(settings, parentState);
  } catch (err) {
    throw moduleError(path, `start() failed: ${(err as Error).message}`, err);
  }
  const runner = new HookRunner(validateHooks(path, hooks), { log: o.log, trace: o.trace });
  const families = Object.keys(runner.hooks);
  o.log.info({ module: path, families: families.join(',') || 'none', parentState: parentState !== undefined }, 'Loaded hooks');
  return runner;
}

/** Runs `lifecycle.stateForRestart` and writes its answer for the next process. */
export async function saveHooksState(runner: HookRunner, home: string): Promise<boolean> {
  const state = await runner.saveState();
  if (state === undefined) return false;
  const path = hooksStatePath(home);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(state), { mode: 0o600 });
  return true;
}
