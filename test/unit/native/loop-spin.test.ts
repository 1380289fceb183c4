// After a turn in which one of the addon's fd watchers ran, the loop polls without waiting for up
// to OXY_LOOP_SPIN µs (cpp/common.h NoteLoopWork), yielding the CPU between polls, so that an
// answer that comes meanwhile finds the thread awake: on this project's machines a sleep that
// another CPU ends costs ~20-30 µs of CPU (docs/decisions.md, session 22). A child ping-pongs
// datagrams between the addon's UDP socket and a plain echo process; the addon's counters say how
// many answers the spin caught, and /proc how many times the main thread slept.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';

import { addonPath } from '../../../src/engine/native/binding.js';

const ROUNDS = 200;

type Spin = { spinUs: number; polls: number; caught: number; slept: number };

/** The ping-pong's script; `inWorker` runs it in a worker thread that is terminated right after. */
function script(inWorker: boolean): string {
  const pingPong = `
    const addon = require(${JSON.stringify(addonPath())});
    const { readFileSync } = require('node:fs');
    const sleeps = () => Number(/voluntary_ctxt_switches:\\s*(\\d+)/.exec(readFileSync('/proc/thread-self/status', 'utf8'))[1]);
    function pingPong(port, rounds, done) {
      const sock = new addon.UdpSocket(4, { ipv6Only: false, reuseAddress: false, reusePort: false, batchSize: 8, maxDatagramSize: 2048, maxReadsPerWakeup: 8 });
      sock.bind('127.0.0.1', 0);
      const ping = [{ data: Buffer.alloc(32), address: '127.0.0.1', port }];
      let left = rounds;
      let before = 0;
      sock.start((data, meta, count) => {
        left -= count;
        if (left > 0) return void sock.sendBatch(ping, 0);
        const slept = sleeps() - before;
        sock.close();
        done({ spin: addon.loopSpin(), sleeps: slept });
      }, () => {}, (err) => { throw err; });
      sock.setEvents(true, false);
      before = sleeps();
      sock.sendBatch(ping, 0);
    }`;
  const echo = `
    const { spawn } = require('node:child_process');
    const echo = spawn(process.execPath, ['-e', "const s = require('node:dgram').createSocket('udp4'); s.on('message', (m, r) => s.send(m, r.port, r.address)); s.bind(0, '127.0.0.1', () => console.log(s.address().port))"], { stdio: ['ignore', 'pipe', 'inherit'] });
    const port = await new Promise((resolve) => echo.stdout.once('data', (d) => resolve(Number(String(d).trim()))));`;
  if (!inWorker) {
    return `${pingPong}
    (async () => {${echo}
      pingPong(port, ${ROUNDS}, (result) => { console.log(JSON.stringify(result)); echo.kill(); });
    })();`;
  }
  return `
    const { Worker } = require('node:worker_threads');
    const WORKER = ${JSON.stringify(`${pingPong}\nrequire('node:worker_threads').parentPort.once('message', (port) => pingPong(port, 50, (r) => require('node:worker_threads').parentPort.postMessage(r)));`)};
    (async () => {${echo}
      for (let i = 0; i < 4; i++) {
        const w = new Worker(WORKER, { eval: true });
        w.postMessage(port);
        const result = await new Promise((resolve) => w.once('message', resolve));
        // Terminated while its loop may still spin: the idle handle must close before the loop does.
        await w.terminate();
        if (i === 3) console.log(JSON.stringify(result));
      }
      echo.kill();
    })();`;
}

function run(env: NodeJS.ProcessEnv, inWorker = false): { spin: Spin; sleeps: number } {
  const result = spawnSync(process.execPath, ['-e', script(inWorker)], { encoding: 'utf8', timeout: 25_000, env: { ...process.env, ...env } });
  expect(result.status, `${result.stdout}${result.stderr}`).toBe(0);
  return JSON.parse(result.stdout.trim().split('\n').pop() ?? '{}');
}

describe('the loop spins before it sleeps', () => {
  it('20 µs unless told: an answer that comes meanwhile is caught', () => {
    const { spin } = run({ OXY_LOOP_SPIN: undefined });
    expect(spin.spinUs).toBe(20);
    expect(spin.polls).toBeGreaterThan(0);
  });

  it('a spin longer than the echo catches most answers: the main thread seldom sleeps', () => {
    const on = run({ OXY_LOOP_SPIN: '1000' });
    expect(on.spin.spinUs).toBe(1000);
    expect(on.spin.caught).toBeGreaterThanOrEqual(ROUNDS / 2);
    const off = run({ OXY_LOOP_SPIN: '0' });
    expect(off.spin).toEqual({ spinUs: 0, polls: 0, caught: 0, slept: 0 });
    expect(off.sleeps).toBeGreaterThanOrEqual(ROUNDS / 2);
    expect(on.sleeps).toBeLessThan(off.sleeps / 2);
  });

  it("a worker's loop spins on its own, and a worker terminated meanwhile closes it", () => {
    const { spin } = run({ OXY_LOOP_SPIN: '1000' }, true);
    expect(spin.spinUs).toBe(1000);
    expect(spin.caught).toBeGreaterThan(0);
  });
});
