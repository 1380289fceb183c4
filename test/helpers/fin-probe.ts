// Where the FIN is when a client has read an answer: the Python scripts the answer-end tests run
// (through the tunnel to a device, or to the edge's public listener). The client, on each answer's
// last byte, reads once more without waiting: the FIN already there (EOF) or not yet (EAGAIN), and
// prints the two counts. The host answers, and closes after the first answer to a request saying
// `Connection: close`.

/** The host's answers: two bytes, `ok`. */
export const HOST_ANSWER = {
  close: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok',
  keepAlive: 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok',
} as const;

/** A Python bytes literal of `s` (latin1). */
const bytes = (s: string) => `b${JSON.stringify(s)}`;

export interface ClosingHostOptions {
  address: string;
  port: number;
  /**
   * Absent: the answer and the FIN in one segment (TCP_CORK holds the answer for the shutdown), so
   * both are in the connector's socket when its pump wakes. A number: TCP_NODELAY, the answer at
   * once and the FIN that many ms after it (Node's server: p50 ~80, p90 ~200 µs).
   */
  finAfterMs?: number;
}

/**
 * A Python host (`python3 -u -c`) listening on `address:port`; it prints `listening` once it is.
 * Keep-alive requests are answered at once; the first request saying `Connection: close` gets the
 * closing answer, then the host's FIN, then the host reads to the client's end and closes.
 */
export function closingHostScript({ address, port, finAfterMs }: ClosingHostOptions): string {
  return `
import socket, threading, time
FIN_AFTER = ${finAfterMs === undefined ? 'None' : finAfterMs / 1000}
CLOSE = ${bytes(HOST_ANSWER.close)}
KEEP = ${bytes(HOST_ANSWER.keepAlive)}
def serve(s):
    s.settimeout(10)
    if FIN_AFTER is not None:
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
        if FIN_AFTER is None:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        s.sendall(CLOSE)
        if FIN_AFTER is not None:
            time.sleep(FIN_AFTER)
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
a.bind((${JSON.stringify(address)}, ${port}))
a.listen(128)
print('listening', flush=True)
while True:
    threading.Thread(target=serve, args=(a.accept()[0],), daemon=True).start()
`;
}

/** How each connection's request goes (the script's fourth argument). */
export type FinProbeMode =
  /** The request says `Connection: close`. */
  | 'close'
  /** The request and the client's FIN in one segment. */
  | 'half'
  /** A keep-alive request and its answer, then a request and the FIN in one segment. */
  | 'half-read';

export interface FinProbeOptions {
  /** Where the clients connect; the port is the script's first argument. */
  address: string;
  /** The request's path and Host; `{i}` in the path is the connection's number on its client. */
  path?: string;
  host?: string;
  /** Each answer must end with these bytes (`{i}` as in the path). */
  answerEnds: string;
  /**
   * Then one keep-alive connection, 50 requests one after another: prints the TCP segments into the
   * client's namespace during the probe and the median answer's µs after the two counts.
   */
  keepAlive?: boolean;
}

/**
 * The probe client (`python3 -c SCRIPT port clients each mode`): `clients` at once, each making
 * `each` connections one after another (so the edge and the connector are busy, as under a load).
 * Prints `eof later` (with `keepAlive`: `eof later segments median-µs`).
 */
export function finProbeScript({ address, path = '/', host = 'h', answerEnds, keepAlive = false }: FinProbeOptions): string {
  return `
import socket, sys, threading, time
port, clients, n, mode = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
KEEP_ALIVE = ${keepAlive ? 'True' : 'False'}
counts = [0, 0]
def numbered(b, i):
    return b.replace(b'{i}', str(i).encode())
def request(i):
    return b'GET ' + numbered(${bytes(path)}, i) + b' HTTP/1.1\\r\\nHost: ' + ${bytes(host)} + b'\\r\\n'
def whole(got):
    i = got.find(b'\\r\\n\\r\\n')
    if i < 0:
        return False
    length = [l for l in got[:i].split(b'\\r\\n') if l.lower().startswith(b'content-length:')]
    return len(got) >= i + 4 + int(length[0].split(b':')[1])
def answer(s):
    got = b''
    while not whole(got):
        c = s.recv(4096)
        if not c:
            break
        got += c
    return got
def run():
    for i in range(n):
        s = socket.create_connection((${JSON.stringify(address)}, port), timeout=10)
        req = request(i)
        if mode == 'close':
            s.sendall(req + b'Connection: close\\r\\n\\r\\n')
        else:
            if mode == 'half-read':
                s.sendall(req + b'\\r\\n')
                assert answer(s).endswith(numbered(${bytes(answerEnds)}, i))
            # The request and the FIN in one segment.
            s.send(req + b'\\r\\n', socket.MSG_MORE)
            s.shutdown(socket.SHUT_WR)
        got = answer(s)
        assert got.endswith(numbered(${bytes(answerEnds)}, i)), got
        s.setblocking(False)
        try:
            c = s.recv(4096)
            assert c == b'', c
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
if KEEP_ALIVE:
    s = socket.create_connection((${JSON.stringify(address)}, port), timeout=10)
    took = []
    for i in range(50):
        t0 = time.perf_counter()
        s.sendall(request(i) + b'\\r\\n')
        assert b'keep-alive' in answer(s)
        took.append(time.perf_counter() - t0)
    print(counts[0], counts[1], segs, int(sorted(took)[25] * 1e6))
else:
    print(counts[0], counts[1])
`;
}
