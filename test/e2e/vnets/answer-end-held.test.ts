// A host that closes a little after its answer (Node's server: `res.end()` writes the answer and its
// FIN follows by p50 ~80, p90 ~200 µs), through the tunnel to a device: the connector's pump reads
// the answer before the FIN is there. Where that first read is a whole HTTP/1 answer saying
// `Connection: close`, the pump holds it for the FIN (up to OXY_FLOW_FIN_HOLD µs) and the answer
// and the flow's END go in one packet; the edge writes the answer's last bytes with MSG_MORE and
// its shutdown puts the FIN on them (OXY_FLOW_FIN_ON_DATA), so the device's client finds the FIN
// with the answer, closes second and keeps no TIME_WAIT. Without the hold the END often went in a
// packet of its own and 2-4 % of the bench's connections were closed first by the device (session
// 23, helper finend). Keep-alive answers are not held.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { startVnetSite, type VnetSite } from '../../helpers/vnet-site.js';

// In the data centre: a host that closes 1 ms after its answer (Node's server: p50 ~80, p90 ~200
// µs; the test's hold is 5 ms and the gap wide, so that the counts do not hang on the machine's
// load), keep-alive answers as they come.
const HOST = `
import socket, threading, time
CLOSE = b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: close\\r\\n\\r\\nok'
KEEP = b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\nConnection: keep-alive\\r\\n\\r\\nok'
def serve(s):
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    got = b''
    while True:
        while b'\\r\\n\\r\\n' not in got:
            c = s.recv(4096)
            if not c:
                s.close()
                return
            got += c
        head, got = got.split(b'\\r\\n\\r\\n', 1)
        if b'Connection: close' not in head:
            s.sendall(KEEP)
            continue
        s.sendall(CLOSE)
        time.sleep(0.001)
        s.shutdown(socket.SHUT_WR)
        try:
            while s.recv(4096):
                pass
        except OSError:
            pass
        s.close()
        return
a = socket.socket()
a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
a.bind(('198.18.0.10', 9108))
a.listen(128)
print('listening', flush=True)
while True:
    threading.Thread(target=serve, args=(a.accept()[0],), daemon=True).start()
`;

// On the device: C clients at once, each making N connections one after another; on each answer's
// last byte one more read that does not wait: the FIN already there (EOF) or not yet (EAGAIN).
// Then (keep-alive) one connection, 50 requests one after another: the slowest answer's µs.
const CLIENT = `
import socket, sys, threading, time
clients, n = int(sys.argv[1]), int(sys.argv[2])
counts = [0, 0]
def answer(s):
    got = b''
    while not got.endswith(b'\\r\\n\\r\\nok'):
        c = s.recv(4096)
        assert c, got
        got += c
    return got
def run():
    for i in range(n):
        s = socket.create_connection(('198.18.0.10', 9108), timeout=10)
        s.sendall(b'GET / HTTP/1.1\\r\\nHost: h\\r\\nConnection: close\\r\\n\\r\\n')
        assert b'Connection: close' in answer(s)
        s.setblocking(False)
        try:
            assert s.recv(4096) == b''
            counts[0] += 1
        except BlockingIOError:
            counts[1] += 1
        s.close()
def in_segs():
    rows = [l.split() for l in open('/proc/net/snmp') if l.startswith('Tcp:')]
    return int(rows[1][rows[0].index('InSegs')])
segs = in_segs()
threads = [threading.Thread(target=run) for _ in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
segs = in_segs() - segs
s = socket.create_connection(('198.18.0.10', 9108), timeout=10)
took = []
for i in range(50):
    t0 = time.perf_counter()
    s.sendall(b'GET / HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n')
    assert b'keep-alive' in answer(s)
    took.append(time.perf_counter() - t0)
print(counts[0], counts[1], int(sorted(took)[25] * 1e6), segs)
`;

const [CLIENTS, EACH] = [4, 100];
const N = CLIENTS * EACH;

// The hold is 5 ms here (300 µs by default): a keep-alive answer held would take that long.
const HOLD = '5000';
for (const [name, env, held] of [
  ['the answer held for the FIN', { OXY_FLOW_FIN_HOLD: HOLD }, true],
  ['not held (OXY_FLOW_FIN_HOLD=0)', { OXY_FLOW_FIN_HOLD: '0' }, false],
  ["held, the edge's FIN in a segment of its own (OXY_FLOW_FIN_ON_DATA=0)", { OXY_FLOW_FIN_HOLD: HOLD, OXY_FLOW_FIN_ON_DATA: '0' }, false],
] as const)
  privilegedDescribe(`a host that closes after its answer, through the tunnel (${name})`, () => {
    let site: VnetSite;

    beforeAll(async () => {
      site = await startVnetSite({ protocol: 'quic', env });
      await site.spawnIn(site.dc, 'python3', ['-u', '-c', HOST]).waitFor(/listening/);
    });
    afterAll(async () => {
      await site?.close();
    });

    it(`${N} connections: each answer whole, the FIN ${held ? 'with it on nearly every one' : 'as it comes'}; keep-alive answers at once`, async () => {
      const r = await site.inDevice('python3', ['-c', CLIENT, String(CLIENTS), String(EACH)], { timeoutMs: 60_000 });
      expect(r.stderr).toBe('');
      const [eof, later, median, segs] = r.stdout.trim().split(' ').map(Number);
      expect(eof! + later!).toBe(N);
      console.log(
        name,
        `${eof} found the FIN with the answer, ${later} not yet; keep-alive median ${median} µs; segments in per connection ${(segs! / N).toFixed(2)}`,
      );
      // Counts, not time.
      if (held) expect(eof, `${eof} found the FIN, ${later} not yet`).toBeGreaterThanOrEqual(N * 0.95);
      // Keep-alive answers go at once, never held for a FIN (they would take 5 ms).
      expect(median).toBeLessThan(Number(HOLD));
      // The FIN on the answer's segment: one segment less per connection into the device (4.00
      // against 4.99 with OXY_FLOW_FIN_ON_DATA=0).
      if (held) expect(segs! / N).toBeLessThan(4.5);
    }, 90_000);
  });
