/**
 * Gate for tests that need root-like powers (network namespaces, TUN, setns).
 * Without them the tests are skipped — unless OXY_REQUIRE_PRIVILEGED_TESTS=1
 * (CI on a capable machine), where a missing privilege fails the run instead of
 * silently skipping it.
 *
 *   privilegedDescribe('tun', () => { ... });               // needs everything
 *   privilegedDescribe('veth', () => { ... }, ['netns']);    // needs less
 *   it('x', (ctx) => { requirePrivileged(ctx, ['tun']); ... });
 */
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { describe, it, type TestContext } from 'vitest';

export type Privilege =
  /** uid 0 */
  | 'root'
  /** CAP_NET_ADMIN + CAP_SYS_ADMIN and iproute2: ip netns add/exec, setns(CLONE_NEWNET) */
  | 'netns'
  /** /dev/net/tun can be opened (creating a TUN also needs CAP_NET_ADMIN: use with 'netns') */
  | 'tun';

export const ALL_PRIVILEGES: readonly Privilege[] = ['root', 'netns', 'tun'];

export const privilegedTestsRequired = process.env.OXY_REQUIRE_PRIVILEGED_TESTS === '1';

const CAP_NET_ADMIN = 12n;
const CAP_SYS_ADMIN = 21n;

const checks: Record<Privilege, () => string | undefined> = {
  root: () => (process.getuid?.() === 0 ? undefined : 'not running as root'),
  netns: () => {
    const status = readFileSync('/proc/self/status', 'utf8');
    const effective = BigInt(`0x${/^CapEff:\s*([0-9a-f]+)/m.exec(status)?.[1] ?? '0'}`);
    if (!((effective >> CAP_NET_ADMIN) & 1n) || !((effective >> CAP_SYS_ADMIN) & 1n)) {
      return 'CAP_NET_ADMIN and CAP_SYS_ADMIN are not both effective';
    }
    if (spawnSync('ip', ['-V']).status !== 0) return 'iproute2 (`ip`) is not installed';
    return undefined;
  },
  tun: () => {
    try {
      closeSync(openSync('/dev/net/tun', 'r+'));
      return undefined;
    } catch (err) {
      return `/dev/net/tun: ${(err as NodeJS.ErrnoException).code}`;
    }
  },
};

const cache = new Map<Privilege, string | undefined>();

/** Human-readable reasons why `needs` are not met; empty when they are. */
export function missingPrivileges(needs: readonly Privilege[] = ALL_PRIVILEGES): string[] {
  const reasons: string[] = [];
  for (const need of needs) {
    if (!cache.has(need)) cache.set(need, checks[need]());
    const reason = cache.get(need);
    if (reason) reasons.push(reason);
  }
  return reasons;
}

/** describe() that skips (or, when required, fails) without the privileges. */
export function privilegedDescribe(name: string, body: () => void, needs: readonly Privilege[] = ALL_PRIVILEGES): void {
  const missing = missingPrivileges(needs);
  if (missing.length === 0) {
    describe(name, body);
  } else if (privilegedTestsRequired) {
    describe(name, () => {
      it('has the privileges it needs', () => {
        throw new Error(`OXY_REQUIRE_PRIVILEGED_TESTS=1 but ${missing.join('; ')}`);
      });
    });
  } else {
    describe.skip(`${name} (skipped: ${missing.join('; ')})`, body);
  }
}

/** Inside a test: skips it (or, when required, fails it) without the privileges. */
export function requirePrivileged(ctx: TestContext, needs: readonly Privilege[] = ALL_PRIVILEGES): void {
  const missing = missingPrivileges(needs);
  if (missing.length === 0) return;
  if (privilegedTestsRequired) throw new Error(`OXY_REQUIRE_PRIVILEGED_TESTS=1 but ${missing.join('; ')}`);
  ctx.skip(missing.join('; '));
}
