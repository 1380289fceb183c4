/**
 * OXY_QUIC_TRACE lines (native/cpp/quic-core.cc Conn::Trace: a connection's counters every N ms
 * while it flushes) read back for one transfer: per process, the connection that moved the most
 * stream bytes or packets between `t0` and `t1` (CLOCK_MONOTONIC seconds, as
 * process.hrtime.bigint()), its counters' growth over the transfer and its last path figures.
 */
const COUNTERS = [
  'sent',
  'recv',
  'flushes',
  'streamBytes',
  'stopCwnd',
  'stopPacing',
  'stopBlocked',
  'stopData',
  'timerFires',
  'timerAcks',
  'timerLateUs',
  'creditHeld',
  'writableWaits',
  'cwndWaitUs',
  'answers',
  'answerUs',
];

function parse(output) {
  const lines = [];
  for (const m of output.matchAll(/^quic-trace (\w+) (\w+) t=([\d.]+) (.*)$/gm)) {
    const fields = Object.fromEntries(
      m[4]
        .split(' ')
        .map((kv) => kv.split('='))
        .map(([k, v]) => [k, Number(v)]),
    );
    lines.push({ key: `${m[1]} ${m[2]}`, t: Number(m[3]), ...fields });
  }
  return lines;
}

/** { key, delta: {counter: growth}, last: {cwnd, srttUs, minRttUs, ...} } of the busiest connection, or undefined. */
export function traceDelta(output, t0, t1) {
  const byKey = new Map();
  for (const l of parse(output)) {
    const e = byKey.get(l.key) ?? { before: undefined, last: undefined };
    if (l.t <= t0) e.before = l;
    else if (l.t <= t1) e.last = l;
    byKey.set(l.key, e);
  }
  let best;
  for (const [key, { before, last }] of byKey) {
    if (!last) continue;
    const delta = Object.fromEntries(COUNTERS.map((k) => [k, last[k] - (before?.[k] ?? 0)]));
    const weight = delta.streamBytes + delta.recv * 1000;
    if (!best || weight > best.weight) best = { key, delta, last, weight };
  }
  return best;
}

export const monotonicSeconds = () => Number(process.hrtime.bigint()) / 1e9;
