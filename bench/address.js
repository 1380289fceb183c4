// Address text: the one formatter (core/address.ts, hand-written) against ipaddr.js on the
// same addresses in the same run, and the ipaddr.js-based parser's cost. The QUIC listener
// formats the source address of every datagram it receives (native/udp.ts), so formatting
// is on the data path; parsing happens per connection or per configuration value.
// Figures are printed, not asserted; the machine may be busy (compare ratios, not times).
//
//   npx tsc -p tsconfig.json && node bench/address.js [--n 1000000]
import { parseArgs } from 'node:util';
import ipaddr from 'ipaddr.js';
import { formatAddress, parseAddress } from '../dist/core/address.js';

const { values: opts } = parseArgs({ options: { n: { type: 'string', default: '1000000' } } });
const N = Number(opts.n);

const v4 = [...Array(64)].map((_, i) => Uint8Array.from([198, 18, i, 1 + i]));
const v6 = [...Array(64)].map((_, i) => Uint8Array.from([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, i, 0, 0, 0, 0, 0, 0, 0, 1 + i]));
const v6text = v6.map((b) => formatAddress(b));

function time(fn) {
  for (let i = 0; i < N / 10; i++) fn(i); // warm up
  const t0 = process.hrtime.bigint();
  let sink = 0;
  for (let i = 0; i < N; i++) sink += fn(i).length;
  const ns = Number(process.hrtime.bigint() - t0) / N;
  if (sink === 0) throw new Error('unreachable');
  return ns;
}

const rows = [
  ['format IPv4 (4 bytes)', time((i) => formatAddress(v4[i & 63])), time((i) => ipaddr.fromByteArray(Array.from(v4[i & 63])).toString())],
  ['format IPv6 (16 bytes)', time((i) => formatAddress(v6[i & 63])), time((i) => ipaddr.fromByteArray(Array.from(v6[i & 63])).toString())],
];
console.log('operation                 ours ns/op  ipaddr.js ns/op  ipaddr.js / ours');
for (const [name, ours, theirs] of rows)
  console.log(`${name.padEnd(24)} ${ours.toFixed(0).padStart(10)} ${theirs.toFixed(0).padStart(16)} ${(theirs / ours).toFixed(1).padStart(16)}×`);
console.log(`parse IPv6 text (ipaddr.js, strict): ${time((i) => parseAddress(v6text[i & 63])).toFixed(0)} ns/op`);
