#!/usr/bin/env node
/**
 * Reads the quic-trace.log of `node bench/vnet-path.js --quic-trace MS --log DIR` and prints, per
 * phase round (bulk-0, bulk-r-1, ...) and connection that moved at least 5 MB of stream bytes:
 * MB/s, packets sent and received, flushes, window-full and pacing stops, pace skips and timer
 * fires per MB; the window, bytes in flight and RTTs (median and range over the round's lines);
 * ssthresh, losses and dropped sends. E.g. a slow -R round's connector: a window of 55-69 KB
 * and ~35 window-full stops per MB, against 376 KB and ~8.5 (docs/decisions.md "The vnet path's
 * -R: a window frozen by slow start's luck"). The sender's share of the round it waited on a full window
 * (cwndWaitUs); the bulk receiver's answers (ACKs), how long after the first packet each left, and those
 * sent early (OXY_QUIC_ACK_FIRST=1: before the sockets' writes; OXY_QUIC_ACK_SPLIT=1: in the middle of a read).
 * Flushes left unpaced per MB (a near path with OXY_QUIC_PACING=far; by default 0, every path paced).
 *   node bench/quic-trace.js DIR/quic-trace.log
 */
import { readFileSync } from 'node:fs';

const file = process.argv[2];
if (!file) throw new Error('usage: node bench/quic-trace.js DIR/quic-trace.log');
const roles = new Map();
const rounds = [];
const started = new Map();
const lines = [];
for (const line of readFileSync(file, 'utf8').split('\n')) {
  let m = /^=== process (\S+) pid=(\d+)/.exec(line);
  if (m) {
    roles.set(m[2], m[1]);
    continue;
  }
  m = /^=== (\S+) (start|end) t=([\d.]+)/.exec(line);
  if (m) {
    if (m[2] === 'start') started.set(m[1], Number(m[3]));
    else rounds.push({ label: m[1], from: started.get(m[1]), to: Number(m[3]) });
    continue;
  }
  if (!line.startsWith('quic-trace ')) continue;
  const [, side, conn, ...rest] = line.split(' ');
  const v = Object.fromEntries(rest.filter((p) => p.includes('=')).map((p) => p.split('=')));
  lines.push({ side, conn, pid: v.pid, v: Object.fromEntries(Object.entries(v).map(([k, x]) => [k, Number(x)])) });
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const k = (bytes) => `${Math.round(bytes / 1e3)}K`;
for (const { label, from, to } of rounds) {
  const byConn = new Map();
  for (const l of lines) {
    if (l.v.t < from || l.v.t > to) continue;
    const key = `${roles.get(l.pid) ?? l.pid} ${l.side} ${l.conn}`;
    if (!byConn.has(key)) byConn.set(key, []);
    byConn.get(key).push(l.v);
  }
  for (const [key, rows] of byConn) {
    const [a, b] = [rows[0], rows[rows.length - 1]];
    const d = (name) => b[name] - a[name];
    const mb = d('streamBytes') / 1e6;
    const answers = d('answers');
    // The bulk receiver (few stream bytes of its own, thousands of packets read): how long what it
    // read waited for its answer (an ACK, mostly), and the ACKs sent early (OXY_QUIC_ACK_FIRST / _SPLIT).
    if (mb < 5 && d('recv') >= 1000) {
      console.log(
        `${label} ${key}: received ${d('recv')} packets | answers ${answers} (${(d('recv') / (answers || 1)).toFixed(1)} packets each), ` +
          `${(d('answerUs') / (answers || 1)).toFixed(0)}µs from the first packet read to the answer | acksFirst ${d('acksFirst') || 0} acksSplit ${d('acksSplit') || 0}`,
      );
    }
    if (mb < 5) continue;
    const per = (name) => (d(name) / mb).toFixed(1);
    const range = (name, f) =>
      `${f(median(rows.map((r) => r[name])))} (${f(Math.min(...rows.map((r) => r[name])))}-${f(Math.max(...rows.map((r) => r[name])))})`;
    const us = (x) => `${Math.round(x)}µs`;
    console.log(
      `${label} ${key}: ${(mb / (d('t') || 1)).toFixed(0)} MB/s | per MB: packets ${per('sent')} sent / ${per('recv')} received, flushes ${per('flushes')}, ` +
        `window full ${per('stopCwnd')}, pacing ${per('stopPacing')}, pace skips ${per('paceSkips')}, unpaced ${b.unpaced === undefined ? '-' : per('unpaced')}, timer ${per('timerFires')} | ` +
        `cwnd ${range('cwnd', k)} in flight ${range('inflight', k)} srtt ${range('srttUs', us)} min RTT ${us(b.minRttUs)} | ` +
        `ssthresh ${b.ssthresh > 1e18 ? '-' : k(b.ssthresh)} lost ${d('lost')} dropped ${d('dropped')} | ` +
        `waited on a full window ${((d('cwndWaitUs') / 1e6 / (d('t') || 1)) * 100).toFixed(0)} % of the round`,
    );
  }
}
