// The IP edge's upgrade path, with baselines measured in the same run. Figures are
// printed, never asserted. Needs root (namespaces, TUNs) and iperf3.
//
//   npx tsc -p tsconfig.json && node bench/ip-upgrade.js [--seconds 5] [--flows 100000]
//
// 1. iperf3 (TCP, one stream) from a device namespace A to a server namespace B:
//    baseline  A ── veth ── B
//    upgrade   A: TUN → (device process: PacketRelay, as warp connect) SEQPACKET → edge on-ramp → flow → NAT → TUN in the
//              edge's unnamed namespace → kernel TCP → accepted socket → pipe → a socket
//              made inside B (namespace child) → iperf3 -s in B
//    Printed: both rates and their ratio.
// 2. 64-byte UDP packets (IPv4 20 + UDP 8 + 36 payload) echoed by the edge's user-space
//    UDP upgrade: over a SEQPACKET tunnel (window of 512 outstanding), and in process
//    (session.receive, no syscalls on the way in).
// 3. Flows: --flows concurrent UDP flows created through session.receive (flows/s, JS heap
//    per flow), then the same number of TCP SYNs (NAT slot + TUN write per flow).
//
// Addresses: only inside namespaces made here (198.18.0.0/15, 2001:db8::/32) or loopback;
// the named namespaces are deleted at exit, the edge's own namespace is unnamed.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import v8 from 'node:v8';
import vm from 'node:vm';

import { IpEdge, SeqpacketOnRamp } from '../dist/engine/edge/ip/index.js';
import { UnnamedNetns } from '../dist/engine/netns/index.js';
import { SeqpacketSocket } from '../dist/engine/native/index.js';
import { TcpFlag, buildTcp, buildUdp, parseAddress } from '../dist/engine/packet/index.js';

const { values: opts } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    flows: { type: 'string', default: '100000' },
  },
});
const SECONDS = Number(opts.seconds);
const FLOWS = Number(opts.flows);

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

const tag = `${process.pid}-${randomBytes(2).toString('hex')}`;
const NS_A = `oxybench-a-${tag}`;
const NS_B = `oxybench-b-${tag}`;
const cleanups = [];
function cleanup() {
  while (cleanups.length) {
    try {
      cleanups.pop()();
    } catch {
      // best effort
    }
  }
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

const ip = (...args) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
function nsBatch(ns, lines) {
  execFileSync('ip', ['-n', ns, '-batch', '-'], { input: `${lines.join('\n')}\n`, stdio: ['pipe', 'pipe', 'pipe'] });
}
function run(cmd, args, timeoutMs) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}
async function iperf(fromNs, host) {
  const r = await run('ip', ['netns', 'exec', fromNs, 'iperf3', '-c', host, '-p', '5201', '-t', String(SECONDS), '-J'], (SECONDS + 15) * 1000);
  if (r.code !== 0) throw new Error(`iperf3 failed: ${r.err || r.out.slice(0, 300)}`);
  return JSON.parse(r.out).end.sum_received.bits_per_second;
}
const gbit = (bps) => `${(bps / 1e9).toFixed(2)} Gbit/s`;

const nativeUrl = new URL('../dist/engine/native/index.js', import.meta.url).href;
const DEVICE_SOURCE = `
import { execFileSync } from 'node:child_process';
import { PacketRelay, Tun, seqpacketConnectFd, withNetns } from '${nativeUrl}';
const [ns, name] = process.argv.slice(1);
const path = '\\0' + name;
const tun = withNetns('/var/run/netns/' + ns, () => Tun.open({ name: 'oxdev0', mtu: 65000, txQueueLength: 5000, batchSize: 128 }));
execFileSync('ip', ['-n', ns, '-batch', '-'], { input: ['link set oxdev0 addrgenmode none', 'addr add 198.18.1.1/32 dev oxdev0', 'link set oxdev0 up', 'route add 198.18.2.0/24 dev oxdev0', ''].join('\\n') });
// As \`warp connect\` does: the TUN relayed to the on-ramp inside the addon.
const relay = PacketRelay.attach(tun, seqpacketConnectFd(path));
relay.send(Buffer.from(JSON.stringify({ tenant: 'bench', vnet: '' })));
process.on('disconnect', () => process.exit(0));
process.send('ready');
`;

async function iperfRatio() {
  ip('netns', 'add', NS_A);
  cleanups.push(() => ip('netns', 'delete', NS_A));
  ip('netns', 'add', NS_B);
  cleanups.push(() => ip('netns', 'delete', NS_B));
  nsBatch(NS_A, ['link set lo up', `link add vA type veth peer name vB netns ${NS_B}`, 'addr add 198.18.10.1/24 dev vA', 'link set vA up']);
  nsBatch(NS_B, ['link set lo up', 'addr add 198.18.10.2/24 dev vB', 'link set vB up']);
  const server = spawn('ip', ['netns', 'exec', NS_B, 'iperf3', '-s', '-p', '5201'], { stdio: 'ignore' });
  cleanups.push(() => server.kill('SIGKILL'));
  await new Promise((r) => setTimeout(r, 300));

  const veth = await iperf(NS_A, '198.18.10.2');
  console.log(`iperf3 A → B over veth:               ${gbit(veth)}`);

  // The off-ramp into B: sockets made inside B by a namespace child.
  const inB = await UnnamedNetns.create({ join: `/var/run/netns/${NS_B}` });
  cleanups.push(() => inB.close());
  const edge = await IpEdge.create({
    onTcpStream(socket) {
      socket.pause();
      inB.connect({ host: '127.0.0.1', port: 5201 }).then(
        (upstream) => {
          upstream.setNoDelay(true);
          socket.pipe(upstream).pipe(socket);
          socket.resume();
          upstream.resume();
          upstream.on('error', () => socket.destroy());
          socket.on('error', () => upstream.destroy());
        },
        () => socket.destroy(),
      );
    },
  });
  cleanups.push(() => edge.close());
  const path = `\0oxybench-ip-${tag}`;
  const onRamp = new SeqpacketOnRamp(edge, path);
  cleanups.push(() => onRamp.close());

  // Device side (what WARP is): a TUN in A whose packets a separate process carries over
  // SEQPACKET, so the edge's thread is measured, not the synthetic device's.
  const device = spawn(process.execPath, ['--input-type=module', '-e', DEVICE_SOURCE, NS_A, path.slice(1)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  cleanups.push(() => device.kill('SIGKILL'));
  await new Promise((resolve, reject) => {
    device.once('message', resolve);
    device.once('exit', (code) => reject(new Error(`device process exited with ${code}`)));
  });
  device.removeAllListeners('exit');

  const upgraded = await iperf(NS_A, '198.18.2.2');
  console.log(`iperf3 A → TUN → SEQPACKET → edge upgrade → B: ${gbit(upgraded)}`);
  console.log(`ratio upgrade / veth:                  ${(upgraded / veth).toFixed(3)}  (aim >= 0.6)`);
  return edge;
}

async function udpPps(edge) {
  const path = `\0oxybench-udp-${tag}`;
  const onRamp = new SeqpacketOnRamp(edge, path);
  const socket = SeqpacketSocket.connect(path, { batchSize: 256 });
  socket.send(Buffer.from(JSON.stringify({ tenant: 'udp-bench', vnet: '' })));
  const packet = buildUdp({ src: parseAddress('198.18.1.1'), dst: parseAddress('198.18.2.2'), srcPort: 5000, dstPort: 7, payload: Buffer.alloc(36) });
  if (packet.length !== 64) throw new Error(`packet is ${packet.length} bytes`);
  let received = 0;
  let sent = 0;
  const WINDOW = 512;
  const end = Date.now() + SECONDS * 1000;
  await new Promise((resolve) => {
    const pump = () => {
      while (sent - received < WINDOW && Date.now() < end) {
        socket.send(packet);
        sent++;
      }
    };
    socket.on('message', () => {
      received++;
      if ((received & 127) === 0) pump();
      if (Date.now() >= end && received >= sent - 0) resolve();
    });
    const timer = setInterval(() => {
      if (Date.now() >= end + 1000) {
        clearInterval(timer);
        resolve();
      }
      pump();
    }, 5);
    pump();
  });
  const rate = received / SECONDS;
  console.log(`64-byte UDP echo over SEQPACKET:       ${Math.round(rate).toLocaleString()} packets/s each way (${sent - received} lost/outstanding)`);
  socket.close();
  onRamp.close();

  // In process: only the edge's JS (parse, flow lookup, strip/add headers, build reply).
  let replies = 0;
  const session = edge.openSession({ tenant: 'udp-inproc', vnet: '' }, () => replies++);
  const N = 2_000_000;
  const copies = Array.from({ length: 1024 }, () => Buffer.from(packet));
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) session.receive(copies[i & 1023]);
  const ns = Number(process.hrtime.bigint() - t0);
  console.log(
    `64-byte UDP echo in process:           ${Math.round(N / (ns / 1e9)).toLocaleString()} packets/s (${(ns / N).toFixed(0)} ns/packet incl. reply build; ${replies} replies)`,
  );
  session.close();
}

async function flowScale() {
  const edge = await IpEdge.create({ limits: { maxFlows: FLOWS * 2 + 10 }, onUdpFlow: () => {} });
  cleanups.push(() => edge.close());
  const session = edge.openSession({ tenant: 'flows', vnet: '' }, () => {});
  const dst = parseAddress('198.18.2.2');
  const packets = [];
  for (let i = 0; i < FLOWS; i++) {
    const src = parseAddress(`198.18.${100 + (i >> 16)}.${(i >> 8) & 255}`);
    packets.push(buildUdp({ src, dst, srcPort: 1024 + (i & 0xff) * 200 + ((i >> 16) & 0xff), dstPort: 53, payload: Buffer.alloc(8) }));
  }
  gc();
  const heap0 = process.memoryUsage().heapUsed;
  const t0 = process.hrtime.bigint();
  for (const p of packets) session.receive(p);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  gc();
  const heap1 = process.memoryUsage().heapUsed;
  const active = edge.table.stats.active;
  console.log(
    `UDP flows: ${active.toLocaleString()} concurrent, created at ${Math.round(active / seconds).toLocaleString()} flows/s, ~${Math.round((heap1 - heap0) / active)} bytes of JS heap per flow`,
  );

  // TCP: a SYN per flow → NAT slot + rewrite + TUN write (the kernel answers each).
  const syns = [];
  for (let i = 0; i < FLOWS; i++) {
    const src = parseAddress(`198.18.${100 + (i >> 16)}.${(i >> 8) & 255}`);
    syns.push(buildTcp({ src, dst, srcPort: 1024 + (i & 0xff) * 200 + ((i >> 16) & 0xff), dstPort: 80, seq: i, flags: TcpFlag.SYN }));
  }
  const tcpSession = edge.openSession({ tenant: 'flows-tcp', vnet: '' }, () => {});
  gc();
  const heap2 = process.memoryUsage().heapUsed;
  const t1 = process.hrtime.bigint();
  for (let i = 0; i < syns.length; i += 256) {
    for (let j = i; j < Math.min(i + 256, syns.length); j++) tcpSession.receive(syns[j]);
    await new Promise((r) => setImmediate(r)); // let batches reach the TUN
  }
  const tcpSeconds = Number(process.hrtime.bigint() - t1) / 1e9;
  gc();
  const heap3 = process.memoryUsage().heapUsed;
  const tcpFlows = edge.table.stats.active - active;
  console.log(
    `TCP flows: ${tcpFlows.toLocaleString()} concurrent (NAT slots ${edge.upgrader.activeSlots.toLocaleString()}), created at ${Math.round(tcpFlows / tcpSeconds).toLocaleString()} flows/s, ~${Math.round((heap3 - heap2) / Math.max(1, tcpFlows))} bytes of JS heap per flow`,
  );
}

try {
  console.log(`ip-upgrade bench (${SECONDS} s per rate, ${FLOWS.toLocaleString()} flows), node ${process.version}`);
  const edge = await iperfRatio();
  await udpPps(edge);
  await flowScale();
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  cleanup();
  process.exit();
}
