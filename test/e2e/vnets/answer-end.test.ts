// A host's answer and its close, through the tunnel to a device: where the host's FIN is in the
// connector's socket when the pump wakes for the answer, the pump reads the EOF in the same turn
// (the watch asked for EPOLLRDHUP) and the flow's END rides with the answer's last bytes, so the
// edge closes the device's socket in the turn it writes them and the device finds the FIN behind
// the answer. A client that reads a complete answer and closes then closes second and keeps no
// TIME_WAIT (session 22: ~18-22 % of the bench's connections closed first through the tunnel against
// ~3 % over a veth, and the device's ports to one host ran out at ~6,000 connections/s).
// With OXY_FD_WATCH_HANGUP=0 the EOF is read a turn later and the END goes on its own.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { startVnetSite, type VnetSite } from '../../helpers/vnet-site.js';

const ANSWER = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok';

// In the data centre: the answer and the FIN in one segment (TCP_CORK held the answer for the
// shutdown), so both are in the connector's socket when its pump wakes.
const HOST = `
import socket, threading
def serve(s):
    s.settimeout(10)
    got = b''
    while b'\\r\\n\\r\\n' not in got:
        c = s.recv(4096)
        if not c:
            break
        got += c
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    s.sendall(${JSON.stringify(ANSWER)}.encode())
    s.shutdown(socket.SHUT_WR)
    try:
        while s.recv(4096):
            pass
    except OSError:
        pass
    s.close()
a = socket.socket()
a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
a.bind(('198.18.0.10', 9107))
a.listen(128)
print('listening', flush=True)
while True:
    threading.Thread(target=serve, args=(a.accept()[0],), daemon=True).start()
`;

// On the device: C clients at once, each making N connections one after another (so the edge and
// the connector are busy, as under a load); on each answer's last byte one more read that does not
// wait: the FIN already there (EOF) or not yet (EAGAIN). Prints the two counts.
const CLIENT = `
import socket, sys, threading
clients, n = int(sys.argv[1]), int(sys.argv[2])
answer = ${JSON.stringify(ANSWER)}.encode()
counts = [0, 0]
def run():
    for i in range(n):
        s = socket.create_connection(('198.18.0.10', 9107), timeout=10)
        s.sendall(b'GET / HTTP/1.1\\r\\nHost: h\\r\\nConnection: close\\r\\n\\r\\n')
        got = b''
        while len(got) < len(answer):
            c = s.recv(4096)
            if not c:
                break
            got += c
        assert got == answer, got
        s.setblocking(False)
        try:
            c = s.recv(4096)
            assert c == b'', c
            counts[0] += 1
        except BlockingIOError:
            counts[1] += 1
        s.close()
threads = [threading.Thread(target=run) for _ in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(counts[0], counts[1])
`;

const [CLIENTS, EACH] = [16, 25];
const N = CLIENTS * EACH;

const VARIANTS: { name: string; env: Record<string, string>; together: boolean }[] = [
  { name: 'the EOF read with the answer', env: {}, together: true },
  { name: 'the EOF read a turn later (OXY_FD_WATCH_HANGUP=0)', env: { OXY_FD_WATCH_HANGUP: '0' }, together: false },
];

for (const variant of VARIANTS)
  privilegedDescribe(`a host's answer and its close reach the device (${variant.name})`, () => {
    let site: VnetSite;

    beforeAll(async () => {
      site = await startVnetSite({ protocol: 'quic', env: variant.env });
      await site.spawnIn(site.dc, 'python3', ['-u', '-c', HOST]).waitFor(/listening/);
    });
    afterAll(async () => {
      await site?.close();
    });

    it(`${N} connections: each answer whole, and the FIN behind it ${variant.together ? 'on nearly every one' : 'as it comes'}`, async () => {
      const r = await site.inDevice('python3', ['-c', CLIENT, String(CLIENTS), String(EACH)], { timeoutMs: 60_000 });
      expect(r.stderr).toBe('');
      const [eof, later] = r.stdout.trim().split(' ').map(Number);
      expect(eof + later).toBe(N);
      // Counts, not time: the END in the answer's packet makes the edge write the answer and close
      // in one turn, so the device's kernel has the FIN before its client reads the answer.
      // Session 22, load 6: 381-400 of 400 with it, 241-312 without.
      if (variant.together) expect(eof, `${eof} found the FIN, ${later} not yet`).toBeGreaterThanOrEqual(N * 0.85);
    }, 90_000);
  });
