// The edge's upgraded connections accepted by the addon (native/accept.ts): over QUIC with
// tcp-flows a device's connection never becomes a net.Socket at the edge — its first chunk is read
// by the addon and goes as early data, and the flow's pump takes the connection at the answer.
// Whatever the order of the device's first bytes, its FIN and the host's first bytes, each flow is
// carried whole; with OXY_IP_NATIVE_ACCEPT=0 (Node's accept), OXY_IP_EARLY_DATA=0 (nothing read
// before the answer) and OXY_FLOW_AT_ANSWER=0 (JS starts the pump at the ANSWER) the same.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { edgeCounter, startVnetSiteWithHost, type VnetSite } from '../../helpers/vnet-site.js';

// In the data centre: 9100 answers after the client's FIN with what it got; 9105 speaks first (a
// banner at the connect), then echoes and ends after the client's FIN; 9106 is an HTTP server
// that answers each request with its path.
const HOST = `
const net = require('net');
const http = require('http');
net.createServer((s) => {
  let n = 0;
  s.on('data', (c) => (n += c.length));
  s.on('end', () => s.end('got ' + n));
}).listen(9100, '198.18.0.10');
net.createServer((s) => {
  s.write('banner\\n');
  s.pipe(s);
}).listen(9105, '198.18.0.10');
http.createServer((req, res) => res.end('path ' + req.url)).listen(9106, '198.18.0.10', () => console.log('listening'));
`;

// On the device: \`banner\` waits for the host's first bytes before it sends; \`fin\` sends its FIN
// with no byte before it (the connection's first read at the edge is its end).
const CLIENT = `
const net = require('net');
const mode = process.argv[1];
if (mode === 'banner') {
  const s = net.connect(9105, '198.18.0.10');
  let got = '';
  s.on('data', (d) => {
    if (got === '') s.end('hello after the banner');
    got += d;
  });
  s.on('end', () => console.log(JSON.stringify(got)));
  s.on('error', (e) => console.log(e.code));
} else if (mode === 'fin') {
  const s = net.connect(9100, '198.18.0.10', () => s.end());
  let got = '';
  s.on('data', (d) => (got += d));
  s.on('end', () => console.log(got));
  s.on('error', (e) => console.log(e.code));
}
`;

// On the device: a request whose first segment carries the handshake's ACK (TCP_DEFER_ACCEPT on
// the client's socket holds its ACK for the data), so the request is in the edge's socket when it
// accepts it.
const WITH_ACK = `
import socket
s = socket.socket()
s.settimeout(10)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
s.connect(('198.18.0.10', 9106))
s.sendall(b'GET /with-ack HTTP/1.1\\r\\nHost: h\\r\\nConnection: close\\r\\n\\r\\n')
got = b''
while True:
    c = s.recv(65536)
    if not c:
        break
    got += c
print(got.split(b'\\r\\n\\r\\n', 1)[1].decode())
`;

// sameTurn: the edge reads a kept connection's requests (its socket) and answers (the TUN) in the
// loop turn of the fast path's write that made them due (OXY_SAME_TURN=0: one turn later, as
// with Node's accept, whose sockets the addon does not know); counted: a small answer's TUN read
// stops at the one segment its write made (OXY_TUN_DUE_COUNT=0: at a read that finds nothing).
const VARIANTS = [
  {
    name: 'accepted by the addon',
    env: { NODE_DEBUG: 'oxy:transport:flow-pump' },
    accepted: true,
    sameTurn: true,
    counted: true,
    atAnswer: true,
    openThere: true,
    earlyAt: 'accept',
  },
  // The pump started by JS at the ANSWER (by default the addon starts it when the ANSWER is the OK one).
  {
    name: 'accepted by the addon, the pump started by JS at the answer',
    env: { NODE_DEBUG: 'oxy:transport:flow-pump', OXY_FLOW_AT_ANSWER: '0' },
    accepted: true,
    sameTurn: true,
    counted: true,
    atAnswer: false,
    openThere: false,
    earlyAt: 'none',
  },
  // The OPEN written by JS before the pump at the ANSWER registers (by default the addon writes it there).
  {
    name: 'accepted by the addon, the OPEN written by JS',
    env: { NODE_DEBUG: 'oxy:transport:flow-pump', OXY_FLOW_OPEN_AT_ACCEPT: '0' },
    accepted: true,
    sameTurn: true,
    counted: true,
    atAnswer: true,
    openThere: false,
    earlyAt: 'accept',
  },
  {
    name: 'accepted by the addon, no early data',
    env: { NODE_DEBUG: 'oxy:transport:flow-pump', OXY_IP_EARLY_DATA: '0' },
    accepted: true,
    sameTurn: true,
    counted: true,
    atAnswer: true,
    openThere: true,
    earlyAt: 'none',
  },
  {
    name: "Node's accept",
    env: { NODE_DEBUG: 'oxy:transport:flow-pump', OXY_IP_NATIVE_ACCEPT: '0' },
    accepted: false,
    sameTurn: false,
    counted: false,
    atAnswer: false,
    openThere: false,
    earlyAt: 'none',
  },
  // Each socket leaves the addon's epoll set for a uv_poll of its own at its first wake-up (the
  // default: after 16, which the 40 requests on one connection below pass mid-connection).
  {
    name: 'accepted by the addon, sockets on polls of their own at once',
    env: { NODE_DEBUG: 'oxy:transport:flow-pump', OXY_FD_SET_OWN_AFTER: '1' },
    accepted: true,
    sameTurn: true,
    counted: true,
    atAnswer: true,
    openThere: true,
    earlyAt: 'accept',
  },
  {
    name: "accepted by the addon, the fast path's writes read one turn later",
    env: { NODE_DEBUG: 'oxy:transport:flow-pump', OXY_SAME_TURN: '0' },
    accepted: true,
    sameTurn: false,
    counted: false,
    atAnswer: true,
    openThere: true,
    earlyAt: 'accept',
  },
  // The answers' TUN reads go on to the read that finds nothing (by default they stop at the one
  // segment each small answer made).
  {
    name: "accepted by the addon, the answers' TUN reads until EAGAIN",
    env: { NODE_DEBUG: 'oxy:transport:flow-pump', OXY_TUN_DUE_COUNT: '0' },
    accepted: true,
    sameTurn: true,
    counted: false,
    atAnswer: true,
    openThere: true,
    earlyAt: 'accept',
  },
  // An accepted connection's first chunk read at its watch's wake-up, a turn after the accept (by
  // default it is read in the accept's turn when it is there, and goes with the flow's OPEN).
  {
    name: 'accepted by the addon, the first chunk read a turn after the accept',
    env: { NODE_DEBUG: 'oxy:transport:flow-pump', OXY_FLOW_EARLY_AT_ACCEPT: '0' },
    accepted: true,
    sameTurn: true,
    counted: true,
    atAnswer: true,
    openThere: true,
    earlyAt: 'wake',
  },
] as const;

/** The edge's same-turn reads so far (oxy_edge_same_turn_reads_total). */
const sameTurnReads = (site: VnetSite) => {
  const count = edgeCounter(site, 'oxy_edge_same_turn_reads_total');
  return { socket: count('socket'), tun: count('tun'), counted: count('tun_counted') };
};

for (const variant of VARIANTS)
  privilegedDescribe(`a device's new connections over QUIC (${variant.name})`, () => {
    let site: VnetSite;

    beforeAll(async () => {
      ({ site } = await startVnetSiteWithHost(HOST, { protocol: 'quic', env: variant.env }));
    });
    afterAll(async () => {
      await site?.close();
    });

    it('curl: a new connection per request, then three requests on one kept connection', async () => {
      for (let i = 0; i < 5; i++) {
        const r = await site.inDevice('curl', ['-s', '-m', '10', `http://198.18.0.10:9106/new-${i}`]);
        expect(r.stdout).toBe(`path /new-${i}`);
      }
      const kept = await site.inDevice('curl', [
        '-s',
        '-m',
        '10',
        '-w',
        ' connects=%{num_connects}\\n',
        'http://198.18.0.10:9106/a',
        'http://198.18.0.10:9106/b',
        'http://198.18.0.10:9106/c',
      ]);
      // curl reports per URL: one connection made for the first, the others reuse it.
      expect(kept.stdout).toBe('path /a connects=1\npath /b connects=0\npath /c connects=0\n');
      const paths = Array.from({ length: 40 }, (_, i) => `/k${i}`);
      const before = sameTurnReads(site);
      const many = await site.inDevice('curl', ['-s', '-m', '20', '-w', ' connects=%{num_connects}\\n', ...paths.map((p) => `http://198.18.0.10:9106${p}`)]);
      expect(many.stdout).toBe(paths.map((p, i) => `path ${p} connects=${i === 0 ? 1 : 0}\n`).join(''));
      const after = sameTurnReads(site);
      // One request at a time: each request's segment and each answer's are read in their write's turn.
      if (variant.sameTurn) {
        expect(after.socket - before.socket).toBeGreaterThanOrEqual(20);
        expect(after.tun - before.tun).toBeGreaterThanOrEqual(20);
        // ... each answer's read stopping at its one segment (no read that finds nothing).
        if (variant.counted) expect(after.counted - before.counted).toBeGreaterThanOrEqual(20);
        else expect(after.counted - before.counted).toBe(0);
      } else {
        expect(after).toEqual({ socket: 0, tun: 0, counted: 0 });
      }
      if (variant.accepted) expect(site.edge.output).toMatch(/tcp-flows flow pumped by the addon, accepted there/);
      // A reused stream's flow: the addon read the OK ANSWER and started the pump itself.
      if (variant.atAnswer) expect(site.edge.output).toMatch(/accepted there, from its answer/);
      else expect(site.edge.output).not.toMatch(/from its answer/);
      // ... and its OPEN was written by the addon where the pump registered (at the accept).
      if (variant.openThere) expect(site.edge.output).toMatch(/from its answer, its OPEN written there/);
      else expect(site.edge.output).not.toMatch(/its OPEN written there/);
      if (!variant.accepted) {
        expect(site.edge.output).toMatch(/tcp-flows flow pumped by the addon/);
        expect(site.edge.output).not.toMatch(/accepted there/);
      }
    }, 60_000);

    it("the device's request with the handshake's ACK: read at the accept and sent with the flow's OPEN", async () => {
      const early = () => {
        const count = edgeCounter(site, 'oxy_edge_early_reads_total');
        return { accept: count('accept'), wake: count('wake') };
      };
      const before = early();
      for (let i = 0; i < 4; i++) {
        const r = await site.inDevice('python3', ['-c', WITH_ACK]);
        expect(r.stdout.trim()).toBe('path /with-ack');
      }
      const after = early();
      // A new stream's first flow goes through JS (its preamble): most, not all, are the addon's.
      if (variant.earlyAt === 'accept') {
        expect(after.accept - before.accept).toBeGreaterThanOrEqual(3);
        expect(after.wake - before.wake).toBe(0);
      } else if (variant.earlyAt === 'wake') {
        expect(after.accept - before.accept).toBe(0);
        expect(after.wake - before.wake).toBeGreaterThanOrEqual(3);
      } else {
        expect(after).toEqual(before);
      }
    }, 60_000);

    it('the host speaks first: its banner reaches the device before the device sends anything, then the echo', async () => {
      for (let i = 0; i < 3; i++) {
        const r = await site.inDevice(process.execPath, ['-e', CLIENT, 'banner']);
        expect(r.stdout.trim()).toBe(JSON.stringify('banner\nhello after the banner'));
      }
    }, 60_000);

    it("the device's FIN with no byte before it: the host reads the end and still answers", async () => {
      for (let i = 0; i < 3; i++) {
        const r = await site.inDevice(process.execPath, ['-e', CLIENT, 'fin']);
        expect(r.stdout.trim()).toBe('got 0');
      }
    }, 60_000);
  });
