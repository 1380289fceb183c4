/**
 * Preload (`node --import …/quic-count.js`) that counts every call into the quiche binding
 * by method, packets out (send() with a packet; `smallOut`: under 64 bytes, ACK-only) and in
 * (recv()), and event-loop turns that
 * did any of it. On SIGUSR2 the process writes its counts as JSON to
 * $OXY_QUIC_COUNT_DIR/<pid>.json (bench/quic-small.js divides them by requests).
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = process.env.OXY_QUIC_COUNT_ROOT ?? process.cwd();
const { quiche } = await import(join(root, 'node_modules/@matrixai/quic/dist/native/index.js'));
const counts = { turns: 0, packetsOut: 0, smallOut: 0, packetsIn: 0, calls: {} };
let turnMarked = false;
const proto = quiche.Connection.prototype;
for (const name of Object.getOwnPropertyNames(proto)) {
  const fn = proto[name];
  if (typeof fn !== 'function' || name === 'constructor') continue;
  proto[name] = function (...args) {
    counts.calls[name] = (counts.calls[name] ?? 0) + 1;
    if (!turnMarked) {
      turnMarked = true;
      counts.turns++;
      setImmediate(() => (turnMarked = false));
    }
    const r = fn.apply(this, args);
    if (name === 'send' && r !== null) {
      counts.packetsOut++;
      // ACK-only (or PING) short-header packets: no STREAM frame, under 64 bytes.
      if (r[0] < 64) counts.smallOut++;
    }
    if (name === 'recv') counts.packetsIn++;
    return r;
  };
}
process.on('SIGUSR2', () => {
  writeFileSync(join(process.env.OXY_QUIC_COUNT_DIR ?? '/tmp', `${process.pid}.json`), JSON.stringify(counts));
});
