// The public HTTP on-ramp answers 502 when the connector refuses a request and 504 when it
// does not answer in time; the tunnel stream it had opened must be closed on both sides, not left
// open for the life of the connection.
import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { HttpOnramp } from '../../../src/engine/edge/http-onramp.js';
import { TunnelRegistry } from '../../../src/engine/edge/registry.js';
import type { StoreView } from '../../../src/engine/edge/store-view.js';
import { HookRunner } from '../../../src/engine/hooks/index.js';
import { createLogger } from '../../../src/engine/observe/log.js';
import { encodeResponseHead } from '../../../src/engine/protocol/http-head.js';
import { readStreamHeader, ResponseStatus, writeResponseHeader } from '../../../src/engine/protocol/stream-header.js';
import type { TunnelConnection } from '../../../src/engine/transport/types.js';
import { http2Pair } from '../transport/helpers.js';
import { connectPair } from '../../unit/quic/support.js';
import { until } from '../../helpers/until.js';

const log = createLogger({ level: 'silent' });

async function tunnelPair(protocol: 'http2' | 'quic'): Promise<{ edge: TunnelConnection; connector: TunnelConnection; close(): Promise<void> }> {
  if (protocol === 'http2') return http2Pair();
  const pair = await connectPair();
  return { edge: pair.server, connector: pair.client, close: () => pair.close() };
}

describe.each(['http2', 'quic'] as const)('over %s', (protocol) => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  });

  /** The public on-ramp over `edge` alone, for every host; closed after the test. */
  async function onrampOver(edge: TunnelConnection, responseTimeoutMs: number): Promise<HttpOnramp> {
    const registry = new TunnelRegistry();
    registry.add({ id: 'c1', tunnelId: 't1', connectorId: 'k1', connIndex: 0, conn: edge, draining: false });
    // The view's part the on-ramp uses: the host's tunnel, and 'reload' events (the fast path listens).
    const view = Object.assign(new EventEmitter(), { tunnelForHost: () => 't1' }) as unknown as StoreView;
    const onramp = await HttpOnramp.listen({ listen: '127.0.0.1:0', view, registry, log, runner: HookRunner.none(log), responseTimeoutMs });
    cleanups.push(() => onramp.close());
    return onramp;
  }

  it('a 502 for a refused or unanswered request closes its tunnel stream on both sides', async () => {
    const pair = await tunnelPair(protocol);
    cleanups.push(() => pair.close());
    // A connector that refuses /refuse as the real one does (a refusal header, then the
    // end of its side) and answers /slow only once the client has its 504s. The timeout (3 s)
    // leaves a loaded machine room to deliver the refusals in time (200 ms did not, in CI, nor
    // 1 s at load 20).
    let answerLate!: () => void;
    const late = new Promise<void>((resolve) => (answerLate = resolve));
    pair.connector.onStream((stream) => {
      stream.on('error', () => undefined);
      void readStreamHeader(stream, { expect: 'request' }).then(
        (header) => {
          stream.resume();
          if (header.destination.endsWith('/refuse')) {
            writeResponseHeader(stream, { status: ResponseStatus.FORBIDDEN, message: 'refused by policy', metadata: [] });
            stream.end();
          } else {
            void late.then(() => {
              if (stream.destroyed) return;
              writeResponseHeader(stream, { status: ResponseStatus.OK, message: '', metadata: encodeResponseHead({ status: 200, headers: [] }) });
              stream.end('too late');
            });
          }
        },
        () => stream.destroy(),
      );
    });
    const onramp = await onrampOver(pair.edge, 3000);

    const url = `http://127.0.0.1:${onramp.address.port}`;
    const statuses = await Promise.all(
      [
        ...Array.from({ length: 20 }, () => request(`${url}/refuse`, { headers: { host: 'app.example.com' } })),
        ...Array.from({ length: 5 }, () => request(`${url}/slow`, { headers: { host: 'app.example.com' } })),
      ].map((p) => p.then(async (res) => (await res.body.text(), res.statusCode))),
    );
    // Refused: 502; not answered in time: 504 (RFC 9209 http_response_timeout).
    expect(statuses).toEqual([...Array(20).fill(502), ...Array(5).fill(504)]);

    answerLate();
    await new Promise((r) => setTimeout(r, 100)); // the late answers are written
    await until(() => pair.edge.stats().activeStreams === 0 && pair.connector.stats().activeStreams === 0);
    expect({ edge: pair.edge.stats().activeStreams, connector: pair.connector.stats().activeStreams }).toEqual({ edge: 0, connector: 0 });
  });

  it('an upload slower than the response timeout is answered: the deadline counts from the end of its body', async () => {
    const pair = await tunnelPair(protocol);
    cleanups.push(() => pair.close());
    // A connector that reads the whole body, then answers /count with its length and leaves /mute unanswered.
    const bodyEnds: number[] = [];
    pair.connector.onStream((stream) => {
      stream.on('error', () => undefined);
      void readStreamHeader(stream, { expect: 'request' }).then(
        (header) => {
          let n = 0;
          stream.on('data', (d: Buffer) => (n += d.length));
          stream.on('end', () => {
            bodyEnds.push(Date.now());
            if (!header.destination.endsWith('/count')) return;
            writeResponseHeader(stream, { status: ResponseStatus.OK, message: '', metadata: encodeResponseHead({ status: 200, headers: [] }) });
            stream.end(String(n));
          });
        },
        () => stream.destroy(),
      );
    });
    const onramp = await onrampOver(pair.edge, 500);

    // 8 KiB in 1 KiB pieces 250 ms apart: the body takes ~2 s, four times the response timeout.
    async function* slowBody() {
      for (let i = 0; i < 8; i++) {
        await new Promise((r) => setTimeout(r, 250));
        yield Buffer.alloc(1024, i);
      }
    }
    const url = `http://127.0.0.1:${onramp.address.port}`;
    const counted = await request(`${url}/count`, { method: 'POST', headers: { host: 'app.example.com' }, body: Readable.from(slowBody()) });
    expect({ status: counted.statusCode, body: await counted.body.text() }).toEqual({ status: 200, body: '8192' });

    // Unanswered: a 504 still comes, after the body's end.
    const mute = await request(`${url}/mute`, { method: 'POST', headers: { host: 'app.example.com' }, body: Readable.from(slowBody()) });
    const answeredAt = Date.now();
    await mute.body.text();
    expect(mute.statusCode).toBe(504);
    expect(bodyEnds).toHaveLength(2);
    expect(answeredAt).toBeGreaterThanOrEqual(bodyEnds[1]);
  });
});
