// Loading the addon turns libuv's idle-time metric off for the thread's loop (cpp/common.h
// LoopOneWait): Node turns it on for performance.eventLoopUtilization(), and with it every wait
// of the loop is an epoll_pwait that does not wait, then the one that does. The child sleeps 40
// times on a timer; strace counts its main thread's epoll_pwait calls with a timeout of 0 that
// found nothing. OXY_LOOP_ONE_WAIT=0 keeps Node's setting.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { addonPath } from '../../../src/engine/native/binding.js';

const strace = spawnSync('strace', ['-V'], { encoding: 'utf8' }).status === 0;
const SLEEPS = 40;

/** A child that loads the addon and sleeps SLEEPS times on 2 ms timers; its `loopOneWait` and, under strace, its empty polls. */
function sleeper(env: NodeJS.ProcessEnv, traced: boolean): { oneWait: boolean; emptyPolls: number; sleeps: number } {
  const script = `
    const addon = require(${JSON.stringify(addonPath())});
    let left = ${SLEEPS};
    const next = () => (--left > 0 ? setTimeout(next, 2) : console.log(JSON.stringify({ oneWait: addon.loopOneWait, sleeps: ${SLEEPS} })));
    setTimeout(next, 2);`;
  const dir = mkdtempSync(join(tmpdir(), 'oxy-one-wait-'));
  try {
    const log = join(dir, 'strace.log');
    const command = traced ? 'strace' : process.execPath;
    const args = traced ? ['-qq', '-o', log, '-e', 'trace=epoll_pwait,epoll_wait', process.execPath, '-e', script] : ['-e', script];
    const result = spawnSync(command, args, { encoding: 'utf8', timeout: 25_000, env: { ...process.env, ...env } });
    expect(result.status, result.stderr).toBe(0);
    const out = JSON.parse(result.stdout.trim().split('\n').pop() ?? '{}');
    // Without -f strace follows the main thread only: the loop's polls, not the threads'.
    const emptyPolls = traced
      ? readFileSync(log, 'utf8')
          .split('\n')
          .filter((l) => /epoll_p?wait\(.*, 0(, NULL, 8)?\)\s*= 0$/.test(l)).length
      : 0;
    return { ...out, emptyPolls };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("the loop's idle-time poll", () => {
  it('is off once the addon is loaded: one poll per wait', () => {
    expect(sleeper({}, false).oneWait).toBe(true);
  });

  it('stays on with OXY_LOOP_ONE_WAIT=0', () => {
    expect(sleeper({ OXY_LOOP_ONE_WAIT: '0' }, false).oneWait).toBe(false);
  });

  it.skipIf(!strace)('saves the poll that does not wait before each sleep', () => {
    const on = sleeper({}, true);
    const off = sleeper({ OXY_LOOP_ONE_WAIT: '0' }, true);
    expect(off.emptyPolls).toBeGreaterThanOrEqual(SLEEPS / 2);
    expect(on.emptyPolls).toBeLessThan(SLEEPS / 4);
  });
});
