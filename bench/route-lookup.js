// Route lookup: longest-prefix match on (vnet, destination IP) with RouteTable, against a
// linear scan over the same routes measured in the same run. Figures are printed, not asserted.
//
//   npx tsc -p tsconfig.json && node bench/route-lookup.js [--routes 100000] [--lookups 2000000]
//
// 100k routes over 10 vnets: ~90% IPv4 generated (~87% after duplicates are dropped) (aggregates /8–/12, many /16–/24, host /32s, nested
// inside 10/8, 172.16/12, 192.168/16 and a scatter elsewhere), 10% IPv6 (/32–/128 under
// 2001:db8::/32 and fd00::/8). Half of the lookups fall inside some route's network.
import { PerformanceObserver } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import vm from 'node:vm';
import { RouteTable } from '../dist/core/route-table.js';

const { values: opts } = parseArgs({
  options: {
    routes: { type: 'string', default: '100000' },
    vnets: { type: 'string', default: '10' },
    lookups: { type: 'string', default: '2000000' },
    'scan-lookups': { type: 'string', default: '300' },
    seed: { type: 'string', default: '42' },
  },
});
const ROUTES = Number(opts.routes);
const VNETS = Number(opts.vnets);
const LOOKUPS = Number(opts.lookups);
const SCAN_LOOKUPS = Number(opts['scan-lookups']);

// mulberry32: a small seeded PRNG so runs are comparable.
let seed = Number(opts.seed) >>> 0;
function rand() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (n) => Math.floor(rand() * n);
const pick = (items) => items[int(items.length)];

function mask(bytes, prefixLength) {
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefixLength - i * 8));
    bytes[i] &= (0xff00 >> keep) & 0xff;
  }
  return bytes;
}

function ipv4Prefix() {
  const r = rand();
  const len = r < 0.03 ? 8 + int(5) : r < 0.8 ? 16 + int(9) : r < 0.9 ? 25 + int(7) : 32;
  const base = pick([[10], [172, 16 + int(16)], [192, 168], [1 + int(223)]]);
  const bytes = Uint8Array.from({ length: 4 }, (_, i) => (i < base.length ? base[i] : int(256)));
  return [mask(bytes, len), len];
}

function ipv6Prefix() {
  const len = pick([32, 48, 56, 64, 64, 64, 96, 112, 128]);
  const base = pick([
    [0x20, 0x01, 0x0d, 0xb8],
    [0xfd, int(256)],
  ]);
  const bytes = Uint8Array.from({ length: 16 }, (_, i) => (i < base.length ? base[i] : i < 8 || rand() < 0.3 ? int(256) : 0));
  return [mask(bytes, len), len];
}

function format(bytes) {
  if (bytes.length === 4) return bytes.join('.');
  const groups = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
  return groups.join(':'); // uncompressed is valid input; the table canonicalises
}

// ---- routes ----
const vnetIds = Array.from({ length: VNETS }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
const seen = new Set();
const routes = [];
const prefixes = []; // parallel to routes: { vnet, bytes, len } for the scan and for picking hits
while (routes.length < ROUTES) {
  const vnetId = pick(vnetIds);
  const [bytes, len] = rand() < 0.9 ? ipv4Prefix() : ipv6Prefix();
  const network = `${format(bytes)}/${len}`;
  const key = `${vnetId} ${network}`;
  if (seen.has(key)) continue;
  seen.add(key);
  routes.push({ id: `route-${routes.length}`, vnetId, network, tunnelId: `tunnel-${int(50)}` });
  prefixes.push({ vnetId, bytes, len });
}

// ---- lookups: stride-16 slots in one buffer, like destination addresses inside packets ----
const STRIDE = 16;
const addrBuf = new Uint8Array(LOOKUPS * STRIDE);
const addrLen = new Uint8Array(LOOKUPS);
const addrVnet = new Array(LOOKUPS);
for (let i = 0; i < LOOKUPS; i++) {
  const o = i * STRIDE;
  let bytes;
  if (rand() < 0.5) {
    const p = pick(prefixes); // inside a route's network (maybe a more specific one's)
    bytes = Uint8Array.from(p.bytes, (b, j) => b | (int(256) & ~((0xff00 >> Math.max(0, Math.min(8, p.len - j * 8))) & 0xff)));
    addrVnet[i] = rand() < 0.8 ? p.vnetId : pick(vnetIds);
  } else {
    bytes = rand() < 0.9 ? ipv4Prefix()[0] : ipv6Prefix()[0];
    for (let j = bytes.length - 1; j >= bytes.length - 2; j--) bytes[j] = int(256);
    addrVnet[i] = pick(vnetIds);
  }
  addrBuf.set(bytes, o);
  addrLen[i] = bytes.length;
}
const addrViews = Array.from({ length: Math.min(LOOKUPS, 500_000) }, (_, i) => addrBuf.subarray(i * STRIDE, i * STRIDE + addrLen[i]));
const addrTexts = Array.from({ length: Math.min(addrViews.length, 100_000) }, (_, i) => format(addrViews[i]));

const v4count = prefixes.filter((p) => p.bytes.length === 4).length;
console.log(`routes: ${routes.length} in ${VNETS} vnets (${v4count} IPv4, ${routes.length - v4count} IPv6); ` + `node ${process.version}`);

// ---- build ----
const buildTimes = [];
let table;
for (let i = 0; i < 5; i++) {
  const t0 = process.hrtime.bigint();
  table = new RouteTable(routes);
  buildTimes.push(Number(process.hrtime.bigint() - t0) / 1e6);
}
buildTimes.sort((a, b) => a - b);
console.log(`build: ${buildTimes[2].toFixed(1)} ms median of 5 (min ${buildTimes[0].toFixed(1)}, max ${buildTimes[4].toFixed(1)})`);

// ---- table lookups ----
// Garbage collections during a run: a lookup that allocates shows up here.
const gcStarts = [];
new PerformanceObserver((list) => list.getEntries().forEach((e) => gcStarts.push(e.startTime))).observe({
  entryTypes: ['gc'],
});
v8.setFlagsFromString('--expose-gc');
const collect = vm.runInNewContext('gc'); // start each run with a clean young generation

async function timeIt(n, fn) {
  fn(Math.min(n, 200_000)); // warm up
  collect();
  const start = performance.now();
  const t0 = process.hrtime.bigint();
  const hits = fn(n);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const end = performance.now();
  await new Promise((resolve) => setTimeout(resolve, 10)); // lets the observer deliver
  return { rate: n / seconds, hits, gcs: gcStarts.filter((t) => t >= start && t <= end).length };
}

const lookupAtRun = await timeIt(LOOKUPS, (n) => {
  let hits = 0;
  for (let i = 0; i < n; i++) if (table.lookupAt(addrVnet[i], addrBuf, i * STRIDE, addrLen[i]) !== undefined) hits++;
  return hits;
});
const viewRun = await timeIt(LOOKUPS, (n) => {
  let hits = 0;
  for (let i = 0; i < n; i++) if (table.lookup(addrVnet[i], addrViews[i % addrViews.length]) !== undefined) hits++;
  return hits;
});
const textRun = await timeIt(Math.min(LOOKUPS, 500_000), (n) => {
  let hits = 0;
  for (let i = 0; i < n; i++) if (table.lookup(addrVnet[i], addrTexts[i % addrTexts.length]) !== undefined) hits++;
  return hits;
});

// ---- linear scan baseline over the same routes ----
const scanVnet = prefixes.map((p) => p.vnetId);
const scanLen = Int32Array.from(prefixes, (p) => p.len);
const scanFamily = Uint8Array.from(prefixes, (p) => p.bytes.length);
const scanBytes = prefixes.map((p) => p.bytes);
function scan(vnetId, buf, offset, length) {
  let best = -1;
  let bestLen = -1;
  for (let r = 0; r < scanBytes.length; r++) {
    if (scanFamily[r] !== length || scanVnet[r] !== vnetId || scanLen[r] <= bestLen) continue;
    const net = scanBytes[r];
    const len = scanLen[r];
    let ok = true;
    for (let j = 0; ok && j * 8 < len; j++) {
      const keep = Math.min(8, len - j * 8);
      const m = (0xff00 >> keep) & 0xff;
      if ((buf[offset + j] & m) !== net[j]) ok = false;
    }
    if (ok) {
      best = r;
      bestLen = len;
    }
  }
  return best < 0 ? undefined : routes[best];
}
let disagreements = 0;
const scanRun = await timeIt(SCAN_LOOKUPS, (n) => {
  let hits = 0;
  for (let i = 0; i < n; i++) {
    const got = scan(addrVnet[i], addrBuf, i * STRIDE, addrLen[i]);
    if (got !== undefined) hits++;
    if (got !== table.lookupAt(addrVnet[i], addrBuf, i * STRIDE, addrLen[i])) disagreements++;
  }
  return hits;
});

const fmt = (rate) => (rate >= 1e6 ? `${(rate / 1e6).toFixed(2)}M/s` : `${(rate / 1e3).toFixed(2)}k/s`).padStart(10);
const pct = (run, n) => `hits ${((100 * run.hits) / n).toFixed(0)}%`;
console.log(`lookupAt(vnet, buf, offset, len)  ${fmt(lookupAtRun.rate)}  ${pct(lookupAtRun, LOOKUPS)}, ${lookupAtRun.gcs} GCs  (${LOOKUPS} lookups)`);
console.log(`lookup(vnet, Uint8Array)          ${fmt(viewRun.rate)}  ${viewRun.gcs} GCs`);
console.log(`lookup(vnet, text)                ${fmt(textRun.rate)}  ${textRun.gcs} GCs  (parses with ipaddr.js)`);
console.log(`linear scan                       ${fmt(scanRun.rate)}  (${SCAN_LOOKUPS} lookups, ${scanBytes.length} routes each)`);
console.log(`ratio lookupAt / linear scan: ${(lookupAtRun.rate / scanRun.rate).toFixed(0)}x`);
console.log(`table agrees with the scan on ${SCAN_LOOKUPS - disagreements}/${SCAN_LOOKUPS} lookups`);
