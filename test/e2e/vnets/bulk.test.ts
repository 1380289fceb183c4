// Bulk TCP over the whole private path (device TUN relayed in the addon → SEQPACKET → edge
// upgrade → tunnel stream → connector → host), both ways, with the device's FIN arriving
// before the host answers: every byte arrives, in order, and the half-close is kept; and a
// device's session ending ends the host's connection of a flow still open.
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { edgeCounter, startVnetSiteWithHost, type VnetSite } from '../../helpers/vnet-site.js';

const MIB = 1024 * 1024;
const SIZE = 24 * MIB;

// In the data centre: port 9000 reads until the client's FIN and answers with the byte
// count and a checksum; port 9001 sends SIZE bytes of a known pattern and closes.
const HOST = `
const net = require('net');
const pattern = (i) => (i * 7 + (i >> 11)) & 255;
net.createServer((s) => {
  let n = 0, sum = 0;
  s.on('data', (c) => { for (let i = 0; i < c.length; i++) { if (c[i] !== pattern(n + i)) sum = -1e9; } n += c.length; });
  s.on('end', () => s.end('got ' + n + (sum < 0 ? ' corrupt' : ' intact')));
}).listen(9000, '198.18.0.10');
net.createServer((s) => {
  const chunk = 256 * 1024; let sent = 0;
  const more = () => { while (sent < ${SIZE}) { const b = Buffer.allocUnsafe(chunk); for (let i = 0; i < chunk; i++) b[i] = pattern(sent + i); sent += chunk; if (!s.write(b)) return s.once('drain', more); } s.end(); };
  more();
}).listen(9001, '198.18.0.10');
net.createServer((s) => {
  let n = 0;
  s.end('bye');
  s.on('data', (c) => (n += c.length));
  s.on('end', () => console.log('host got ' + n + ' after its FIN'));
}).listen(9002, '198.18.0.10');
net.createServer((s) => {
  console.log('host 9003 open');
  s.resume();
  s.on('error', (e) => console.log('host 9003 saw ' + e.code));
  s.on('end', () => console.log('host 9003 saw end'));
  s.on('close', () => console.log('host 9003 closed'));
}).listen(9003, '198.18.0.10', () => console.log('listening'));
`;

// On the device: upload SIZE bytes then FIN and print the answer; or download and check.
const CLIENT = `
const net = require('net');
const pattern = (i) => (i * 7 + (i >> 11)) & 255;
const [mode, size] = [process.argv[1], Number(process.argv[2])];
if (mode === 'up') {
  const s = net.connect(9000, '198.18.0.10');
  let answer = '';
  s.on('data', (d) => (answer += d));
  s.on('end', () => { console.log(answer); process.exit(0); });
  let sent = 0; const chunk = 256 * 1024;
  const more = () => { while (sent < size) { const b = Buffer.allocUnsafe(chunk); for (let i = 0; i < chunk; i++) b[i] = pattern(sent + i); sent += chunk; if (!s.write(b)) return s.once('drain', more); } s.end(); };
  s.on('connect', more);
} else if (mode === 'after') {
  const s = net.connect(9002, '198.18.0.10');
  let answer = '';
  s.on('data', (d) => (answer += d));
  s.on('end', () => { s.end(Buffer.alloc(size, 1)); console.log(answer); });
} else if (mode === 'hold') {
  net.connect(9003, '198.18.0.10').on('error', () => {}).write('hi');
  setTimeout(() => process.exit(0), 30000);
} else {
  const s = net.connect(9001, '198.18.0.10');
  let n = 0, ok = true;
  s.on('data', (c) => { for (let i = 0; i < c.length; i++) if (c[i] !== pattern(n + i)) ok = false; n += c.length; });
  s.on('end', () => { console.log('got ' + n + (ok ? ' intact' : ' corrupt')); process.exit(0); });
}
`;

/**
 * The edge drops a session's flows when its device goes: the host's connection of an open flow
 * must end with it, not linger on the tunnel (the socket the edge destroys, or its pump).
 */
async function sessionEnds(site: VnetSite, host: ReturnType<VnetSite['spawnIn']>): Promise<void> {
  const client = site.spawnIn(site.device, process.execPath, ['-e', CLIENT, 'hold']);
  await host.waitFor(/host 9003 open/, 10_000);
  await site.warp.stop();
  await host.waitFor(/host 9003 closed/, 10_000);
  await client.stop();
}

/**
 * The edge's fast NAT packets so far by outcome (oxy_edge_fast_nat_packets_total), its TUN writes in
 * batches and its upgrade TUN's reads made in those batches (oxy_edge_tun_ring_total).
 */
const fastNatPackets = (site: VnetSite) => {
  const count = edgeCounter(site, 'oxy_edge_fast_nat_packets_total');
  const ring = edgeCounter(site, 'oxy_edge_tun_ring_total');
  return { toClient: count('to_client'), lost: count('lost'), ringWrites: ring('writes'), upgradeReads: ring('upgrade_reads') };
};

/**
 * The device's TCP counters (`nstat -az`: absolute, no history file): segments received and those it
 * queued out of order. The path between the edge's TCP and the device's keeps order by construction
 * (one thread reads the upgrade TUN and writes the device's, a TUN write is received in the writer's
 * own context): a segment out of order would be reordering of ours, which Reno toward a near device
 * takes for a loss.
 */
const deviceTcp = (site: VnetSite) => {
  const out = execFileSync('ip', ['netns', 'exec', site.device.name, 'nstat', '-az', 'TcpInSegs', 'TcpExtTCPOFOQueue'], { encoding: 'utf8' });
  const n = (name: string) => Number(new RegExp(`^${name}\\s+(\\d+)`, 'm').exec(out)?.[1] ?? Number.NaN);
  return { inSegs: n('TcpInSegs'), ofo: n('TcpExtTCPOFOQueue') };
};

const VARIANTS = [
  { name: 'http2', protocol: 'http2', env: {} },
  // Over QUIC both ends' pumps carry each flow's records natively (edge/ and connector/tcp-flows.ts).
  // The edge's connection accepted by the addon and taken by its pump with no net.Socket (native/accept.ts).
  {
    name: 'quic',
    protocol: 'quic',
    env: { NODE_DEBUG: 'oxy:transport:flow-pump' },
    pumped: /tcp-flows flow pumped by the addon/,
    edgePumped: /tcp-flows flow pumped by the addon, accepted there/,
  },
  // The fast path's TUN writes one system call each, as before io_uring batched them (fastnat.cc).
  {
    name: 'quic, TUN writes one call each',
    protocol: 'quic',
    env: { NODE_DEBUG: 'oxy:transport:flow-pump', OXY_IP_TUN_RING: '0' },
    pumped: /tcp-flows flow pumped by the addon/,
    edgePumped: /tcp-flows flow pumped by the addon, accepted there/,
  },
  // A stream per flow: both ends hand the flow's socket to the addon (transport/flow-pump.ts) and
  // say so. Without the fast path no RST from the device's side reaches the edge's socket when the
  // session goes: only the edge's own end of the flow (its pump closed, the stream reset) tells the host.
  {
    name: 'quic, a stream per flow, no fast path',
    protocol: 'quic',
    env: { OXY_TCP_FLOWS: 'http2', OXY_IP_FAST_PATH: '0', NODE_DEBUG: 'oxy:transport:flow-pump' },
    pumped: /flow socket pumped by the addon/,
  },
] as const;

for (const variant of VARIANTS)
  privilegedDescribe(`bulk TCP over the private path (${variant.name})`, () => {
    let site: VnetSite;
    let host: ReturnType<VnetSite['spawnIn']>;

    beforeAll(async () => {
      ({ site, host } = await startVnetSiteWithHost(HOST, { protocol: variant.protocol, env: variant.env }));
    });
    afterAll(async () => {
      await site?.close();
    });

    it('24 MiB up from the device, then its FIN: the host reads every byte in order and still answers', async () => {
      const r = await site.inDevice(process.execPath, ['-e', CLIENT, 'up', String(SIZE)], { timeoutMs: 45_000 });
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe(`got ${SIZE} intact`);
      if ('pumped' in variant) {
        expect(site.edge.output).toMatch('edgePumped' in variant ? variant.edgePumped : variant.pumped);
        expect(site.connector.output).toMatch(variant.pumped);
      }
    }, 50_000);

    it('24 MiB down to the device: every byte in order, then the end', async () => {
      const before = fastNatPackets(site);
      const tcpBefore = deviceTcp(site);
      const r = await site.inDevice(process.execPath, ['-e', CLIENT, 'down', String(SIZE)], { timeoutMs: 45_000 });
      const tcpAfter = deviceTcp(site);
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe(`got ${SIZE} intact`);
      // The edge's segments reach the device by its fast NAT (up to 64 KB each), none lost; with the
      // fast path off, none that way.
      const after = fastNatPackets(site);
      if ('OXY_IP_FAST_PATH' in variant.env) expect(after.toClient - before.toClient).toBe(0);
      else expect(after.toClient - before.toClient).toBeGreaterThan(100);
      expect(after.lost).toBe(before.lost);
      // The local device handed its TUN to the edge: the segments' writes to it went in batches
      // (io_uring; none with OXY_IP_TUN_RING=0, the variant's or this file run so).
      const ringOff = 'OXY_IP_TUN_RING' in variant.env || process.env.OXY_IP_TUN_RING === '0';
      if ('OXY_IP_FAST_PATH' in variant.env || ringOff) expect(after.ringWrites).toBe(0);
      else expect(after.ringWrites - before.ringWrites).toBeGreaterThan(100);
      // The edge's kernel put the segments on the upgrade TUN: read 4 at a time in one io_uring_enter
      // (tun.cc ReadBatch), with the fast path or without it; one call each with the switch off (or
      // the file run with OXY_IP_TUN_RING_READS=0).
      if (ringOff || process.env.OXY_IP_TUN_RING_READS === '0') expect(after.upgradeReads).toBe(0);
      else expect(after.upgradeReads - before.upgradeReads).toBeGreaterThan(100);
      // In order all the way: the device queued none of its segments out of order.
      expect(tcpAfter.inSegs - tcpBefore.inSegs).toBeGreaterThan(100);
      expect(tcpAfter.ofo - tcpBefore.ofo).toBe(0);
    }, 50_000);

    it("the host's FIN first: the device reads it and still sends 4 MiB, which the host reads", async () => {
      const r = await site.inDevice(process.execPath, ['-e', CLIENT, 'after', String(4 * MIB)], { timeoutMs: 30_000 });
      expect(r.stdout.trim()).toBe('bye');
      await host.waitFor(new RegExp(`host got ${4 * MIB} after its FIN`), 20_000);
    }, 50_000);

    // Last: it ends the device's session.
    it("the device's session ends: the host's open connection ends too", () => sessionEnds(site, host), 30_000);
  });
