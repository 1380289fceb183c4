// An answer that comes before its request's body ended (here the origin resets the connection
// mid-upload: the connector's 502 page) closes the client's connection on the edge's fast path:
// the FIN follows the answer, and what the client still sends is read and dropped (never parsed
// as requests) until its FIN. Closed at once, as it was, the unread bytes reset the connection,
// and a client that writes before it reads lost the answer: the pump suite's "no answer" after
// /reset-up (sessions 21-22, 1 CI run in 7). The rest of the body also went to Node's parser as
// requests. The client here reads nothing until its whole body is sent, as a loaded host may
// schedule any client: it gets the 502 page and the FIN, no reset, and a request inside the rest
// of its body never reaches the origin; with OXY_EDGE_LINGER=0 the reset comes and the answer is lost.
// A client that neither ends nor closes is let go after 5 s.
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSockets, startConnector, startEdge, useWebTunnel, type Protocol } from '../../helpers/processes.js';
import { until } from '../../helpers/until.js';
import { sendBeforeReading } from './send-before-reading.js';

const HOST = 'app.example.com';
const MIB = 1024 * 1024;
const BODY = 8 * MIB;
/** What the rest of the body holds: a request, should anything read it as one. */
const SMUGGLED = `GET /smuggled HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`;

let origin: Server;
let originPort = 0;
/** Paths the origin was asked for. */
const seen: string[] = [];

/**
 * POSTs BODY bytes without reading: 1 MiB, then (once the answer is in its receive queue) the
 * rest, SMUGGLED over and over; then it ends and reads. The answer read, and the error a write met.
 */
function uploadBeforeReading(port: number): Promise<{ answer: string; writeError?: string }> {
  const head = `POST /reset-up HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: ${BODY}\r\n\r\n`;
  const rest = Buffer.from(SMUGGLED.repeat(Math.ceil((BODY - MIB) / SMUGGLED.length)).slice(0, BODY - MIB), 'latin1');
  return sendBeforeReading(port, Buffer.concat([Buffer.from(head), Buffer.alloc(MIB, 0x61)]), { rest });
}

describe('an answer before the end of its request body', () => {
  const t = useWebTunnel();

  beforeAll(async () => {
    origin = createServer((req, res) => {
      seen.push(req.url ?? '');
      if (req.url !== '/reset-up') return void res.end(`hello ${req.url}`);
      // 64 KiB of the upload, then the connection is reset, unanswered.
      let bytes = 0;
      req.on('data', (c: Buffer) => {
        if ((bytes += c.length) >= 64 * 1024 && !req.socket.destroyed) req.socket.resetAndDestroy();
      });
    });
    origin.keepAliveTimeout = 120_000;
    await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
    originPort = (origin.address() as AddressInfo).port;
  });
  afterAll(() => origin?.close());

  const tunnel = async (protocol: Protocol, edgeEnv: Record<string, string>) => {
    const e = await startEdge(t.home, [], {}, edgeEnv);
    t.procs.push(e.edge);
    const { connector } = await startConnector(t.home, e.tunnelPort, ['--url', `http://127.0.0.1:${originPort}`, '--ha-connections', '1', 'web'], 1, protocol);
    t.procs.push(connector);
    return e;
  };

  it.each([
    ['http2', {}],
    ['quic', {}],
    ['quic', { OXY_QUIC_SERVER_IMPL: 'quiche' }],
    // Node's server (the per-request path) behaves so too.
    ['http2', { OXY_HTTP1_STREAMS: '0' }],
  ] as [Protocol, Record<string, string>][])(
    'over %s %j: the client gets the 502 page and the FIN, no reset; the rest of its body is no request',
    async (protocol, edgeEnv) => {
      const e = await tunnel(protocol, edgeEnv);
      seen.length = 0;
      const sockets = openSockets(e.edge.child.pid!);
      const { answer, writeError } = await uploadBeforeReading(e.httpPort);
      expect(writeError).toBeUndefined();
      expect(answer).toMatch(/^HTTP\/1\.1 502 /);
      expect(answer).toMatch(/not reachable/);
      expect(seen).toEqual(['/reset-up']);
      // The client's FIN lets the edge's socket go, before the bound on dropping (5 s).
      await until(() => openSockets(e.edge.child.pid!) <= sockets, 4000, "the edge's socket closed at the client's FIN", 50);
    },
    60_000,
  );

  it('a client that neither ends its body nor closes is let go after 5 s', async () => {
    const e = await tunnel('http2', {});
    const sockets = openSockets(e.edge.child.pid!);
    // Half-open: the edge's FIN does not end it.
    const s = connect({ port: e.httpPort, host: '127.0.0.1', allowHalfOpen: true });
    let answer = '';
    s.on('data', (c: Buffer) => (answer += c.toString('latin1')));
    s.on('error', () => undefined);
    s.write(`POST /reset-up HTTP/1.1\r\nHost: ${HOST}\r\nContent-Length: ${BODY}\r\n\r\n`);
    s.write(Buffer.alloc(MIB, 0x61));
    await until(() => answer.includes('not reachable'), 15_000, 'the 502 page');
    const answeredAt = Date.now();
    await until(() => openSockets(e.edge.child.pid!) <= sockets, 15_000, "the edge's socket for the client closed", 50);
    expect(Date.now() - answeredAt).toBeGreaterThan(4000);
    s.destroy();
  }, 60_000);

  it('with OXY_EDGE_LINGER=0 the edge closes at once: the reset overtakes the client reading, its answer is lost', async () => {
    const e = await tunnel('quic', { OXY_EDGE_LINGER: '0' });
    const { answer, writeError } = await uploadBeforeReading(e.httpPort);
    expect(writeError).toMatch(/^(EPIPE|ECONNRESET)$/);
    expect(answer).toBe('');
  }, 60_000);
});
