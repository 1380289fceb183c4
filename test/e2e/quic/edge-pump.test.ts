// The edge's answers written to its HTTP/1 client by the addon (the ngtcp2 edge's answer pump,
// cpp/quic-answer.cc: the connector's bytes never reach the edge's JS). Processes and real
// sockets, against an origin that writes raw HTTP/1: every framing (length, chunked with
// trailers, close-delimited, HEAD, 204, 1xx) byte-identical to the JS path (OXY_EDGE_PUMP=0)
// for pipelined requests on one connection; curl, 300 concurrent requests, bulk both ways; a
// client that stops reading (the origin is held, then every byte arrives); a half-closed client;
// an answer cut mid-way, a request dropped (502 page); answers the edge refuses (garbage: the 502
// page; bytes past the end) while a good client is served; the request counter by status.
import { createHash } from 'node:crypto';
import { connect } from 'node:net';
import { request } from 'undici';
import { describe, expect, it } from 'vitest';
import { holdThenRead } from '../../helpers/origins.js';
import { expectServes, getVia, whileServed } from './support.js';
import { BULK, edgePumpTunnel, get, HELD_MIB, heldWritten, MIB, rawExchange, SCRIPT } from './edge-pump-support.js';

const { tunnel } = edgePumpTunnel();

describe('the ngtcp2 edge writes its HTTP/1 answers natively', () => {
  it('answers every framing byte-identical to the JS path, pipelined on one connection', async () => {
    const outputs: string[] = [];
    for (const env of [{}, { OXY_EDGE_PUMP: '0' }] as Record<string, string>[]) {
      const e = await tunnel(env);
      outputs.push(await rawExchange(e.httpPort, SCRIPT));
      if (!('OXY_EDGE_PUMP' in env)) expect(e.edge.output).toMatch(/answers of stream \d+ written to the client by the transport/);
      else expect(e.edge.output).not.toMatch(/written to the client by the transport/);
      await Promise.all([e.edge.stop('SIGKILL'), e.connector.stop('SIGKILL')]);
    }
    const [pumped, js] = outputs;
    expect(pumped).toBe(js);
    const keep = 'Connection: keep-alive\r\nKeep-Alive: timeout=75\r\n';
    expect(pumped).toBe(
      'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n' +
        `HTTP/1.1 200 OK\r\nContent-Length: 2\r\n${keep}\r\nok` +
        `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n${keep}\r\n5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n` +
        `HTTP/1.1 204 No Content\r\nX-A:  spaced \r\n${keep}\r\n` +
        `HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n${keep}\r\nnope` +
        `HTTP/1.1 200 OK\r\nContent-Length: 9\r\n${keep}\r\nhello /k1` +
        `HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n${keep}\r\n` +
        'HTTP/1.1 200 OK\r\nServer: raw\r\nConnection: close\r\n\r\nuntil the end',
    );
  }, 90_000);

  it('serves curl, 300 concurrent requests and bulk both ways; counts each answer by status', async () => {
    const e = await tunnel();
    await expectServes(e.httpPort, BULK);
    for (let i = 0; i < 3; i++) expect((await getVia(e.httpPort, '/status')).status).toBe(404);
    // A half-closed client gets its answer whole, then the close.
    expect(await rawExchange(e.httpPort, get('/half'), true)).toMatch(/\r\n\r\nhello \/half$/);
    const scrape = () => request(`http://127.0.0.1:${e.metrics}/metrics`).then((r) => r.body.text());
    // The count of an idle keep-alive client's last answer comes with the pump's lazy record (≤ 20 ms).
    await expect.poll(async () => /^oxy_edge_http_requests_total\{status="404"\} (\d+)$/m.exec(await scrape())?.[1], { timeout: 5000 }).toBe('3');
    expect(e.edge.output).toMatch(/written to the client by the transport/);
  }, 90_000);

  it('a client that stops reading holds the origin back, then gets every byte', async () => {
    const e = await tunnel();
    const client = connect(e.httpPort, '127.0.0.1');
    client.on('error', () => undefined);
    client.write(get('/held'));
    // Held: the origin's writes stop growing while nobody reads (windows and buffers fill), then every byte arrives.
    const answer = await holdThenRead(client, () => heldWritten, HELD_MIB * MIB.length);
    client.destroy();
    expect(answer.held).toBe(true);
    expect(answer.heldAt).toBeLessThan(HELD_MIB * MIB.length);
    expect(answer.head).toMatch(/^HTTP\/1\.1 200 OK\r\nContent-Length: 167772160\r\nConnection: keep-alive\r\n/);
    expect(answer.bytes).toBe(HELD_MIB * MIB.length);
    const expected = createHash('sha256');
    for (let i = 0; i < HELD_MIB; i++) expected.update(MIB);
    expect(answer.sha256).toBe(expected.digest('hex'));
    // A client that resets mid-answer: its stream goes quietly, the next client is served.
    const rude = connect(e.httpPort, '127.0.0.1');
    rude.on('error', () => undefined);
    rude.write(get('/held'));
    await new Promise<void>((resolve) => {
      let n = 0;
      rude.on('data', (c: Buffer) => {
        n += c.length;
        if (n > 4 * MIB.length) {
          rude.resetAndDestroy();
          resolve();
        }
      });
    });
    expect((await getVia(e.httpPort, '/after-reset')).body.toString()).toBe('hello /after-reset');
    expect(e.edge.output).not.toMatch(/Request through the tunnel failed/);
  }, 90_000);

  it('an answer cut mid-way is cut for the client, a dropped request gets the 502 page, and the next request is served', async () => {
    const e = await tunnel();
    for (let i = 0; i < 3; i++) {
      const cut = await rawExchange(e.httpPort, get('/cut'));
      expect(cut).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      expect(cut.length).toBeLessThan(1_000_000);
      expect((await getVia(e.httpPort, '/after')).body.toString()).toBe('hello /after');
    }
    const dropped = await getVia(e.httpPort, '/drop');
    expect(dropped.status).toBe(502);
    expect((await getVia(e.httpPort, '/after-drop')).body.toString()).toBe('hello /after-drop');
  }, 60_000);

  it('answers it cannot frame close that client only, while a good client keeps being served', async () => {
    const e = await tunnel();
    await whileServed(e.httpPort, async () => {
      for (let i = 0; i < 10; i++) {
        // Garbage instead of a status line: nothing of it reaches the client, the 502 page does, then the close.
        const garbage = await rawExchange(e.httpPort, get('/garbage'));
        expect(garbage).toMatch(
          /^HTTP\/1\.1 502 Bad Gateway\r\n[\s\S]*error=http_protocol_error\r\n[\s\S]*Connection: close\r\n\r\nThe origin for app\.example\.com sent an answer that cannot be forwarded\.\n$/,
        );
        // Bytes past the end of an answer: the answer may arrive, then the connection goes.
        expect(await rawExchange(e.httpPort, get('/extra') + get('/never'))).not.toMatch(/never/);
      }
    });
    expect(e.edge.child.exitCode).toBeNull();
    expect(e.edge.output).toMatch(/Request through the tunnel failed/);
  }, 60_000);
});
