// What only the ngtcp2 edge has: the addon's listener holds many connections on one socket,
// routes each by CID, and forgets every connection and CID once they are done — closed by the
// client, by the edge, or gone silent — as a long-lived edge must. Clients on both libraries.
import { afterEach, describe, expect, it } from 'vitest';
import { dialQuic, listenQuic, type QuicClientConnection, type QuicListener, type QuicServerConnection } from '../../../src/engine/transport/quic/index.js';
import { savedEnv, setEnv } from '../../helpers/env.js';
import { collect, echo, edgeIdentity, type LossyRelay, lossyRelay } from './support.js';

describe('ngtcp2 edge', () => {
  const saved = savedEnv(['OXY_QUIC_IMPL']);
  let listener: QuicListener | undefined;
  afterEach(async () => {
    await listener?.close();
    listener = undefined;
    setEnv(saved);
  });

  it('serves 40 connections at once on one socket and forgets them all once closed', async () => {
    const id = await edgeIdentity();
    const accepted: QuicServerConnection[] = [];
    listener = await listenQuic({ cert: id.certChain, key: id.key, host: '127.0.0.1', impl: 'ngtcp2', idleTimeoutMs: 1500, keepAliveMs: 0 }, (c) => {
      accepted.push(c);
      echo(c);
    });
    const port = listener.address.port;
    const clients: QuicClientConnection[] = [];
    for (let i = 0; i < 40; i++) {
      // Half on each library; the client's library is chosen when it dials. Keep-alive holds the
      // first ones open while the others dial (40 dials outlast the 1.5 s idle timeout on a loaded machine).
      process.env.OXY_QUIC_IMPL = i % 2 === 0 ? 'ngtcp2' : 'quiche';
      clients.push(await dialQuic({ host: '127.0.0.1', port, ca: id.caCert, keepAliveMs: 300 }));
    }
    await expect.poll(() => listener!.connections().length, { timeout: 10_000 }).toBe(40);
    expect(listener.nativeStats!().connections).toBe(40);
    // Every connection's bytes come back on that connection (CID routing).
    const bodies = await Promise.all(
      clients.map(async (c, i) => {
        const s = await c.openStream();
        const body = collect(s);
        s.end(`client ${i}`);
        return (await body).toString();
      }),
    );
    expect(bodies).toEqual(clients.map((_, i) => `client ${i}`));
    // A third close from the client, a third from the edge, a third go silent (idle timeout).
    for (let i = 0; i < 40; i++) {
      if (i % 3 === 0) clients[i]!.close(0, 'client done');
      else if (i % 3 === 1) accepted.find((a) => a.remotePort === clients[i]!.localPort)!.close(0, 'edge done');
      else (clients[i] as { abandon(reason: string): void }).abandon('gone');
    }
    await expect.poll(() => listener!.nativeStats!(), { timeout: 8000 }).toMatchObject({ connections: 0, cids: 0 });
    expect(listener.connections()).toHaveLength(0);
  }, 60_000);

  /** A client behind a relay whose edge closed with `code`/`reason` while every close it sent was dropped. */
  async function closedWhileDropping(code: number, reason: string, test: (client: QuicClientConnection, relay: LossyRelay) => Promise<void>) {
    const id = await edgeIdentity();
    let server: QuicServerConnection | undefined;
    listener = await listenQuic({ cert: id.certChain, key: id.key, host: '127.0.0.1', impl: 'ngtcp2' }, (c) => (server = c));
    const relay = await lossyRelay(listener.address.port, { up: 0, down: 0 });
    try {
      const client = await dialQuic({ host: '127.0.0.1', port: relay.port, ca: id.caCert, keepAliveMs: 0 });
      await expect.poll(() => server).toBeDefined();
      relay.loss.down = 1;
      server!.close(code, reason);
      // The closing period is short on loopback: go on as soon as the close was dropped.
      await expect.poll(() => relay.dropped.down, { interval: 1 }).toBeGreaterThan(0);
      await test(client, relay);
      expect(await client.closed).toMatchObject({ code, reason, remote: true });
    } finally {
      relay.close();
    }
  }

  it('a client whose copy of the CONNECTION_CLOSE was lost still reads the code and reason (closing period)', async () => {
    await closedWhileDropping(0x1234, 'edge says bye', async (client, relay) => {
      relay.loss.down = 0;
      // The client's next packet reaches the closing edge, which answers with its close again.
      void client.probe();
    });
  });

  it('a closing edge answers a flood of late packets with a few closes, not one each (RFC 9000 §10.2.1)', async () => {
    await closedWhileDropping(0x77, 'flooded', async (client, relay) => {
      // 256 copies of the client's last packet: each carries the connection's ID.
      relay.replayUp(256);
      // Answered: the 1st, 2nd, 4th ... 256th (9), plus the first close and the client's own packets.
      // Wait for the answers (a loaded machine delays them), then 300 ms more for any extra ones.
      await expect.poll(() => relay.dropped.down, { timeout: 5000 }).toBeGreaterThan(3);
      await new Promise((r) => setTimeout(r, 300));
      expect(relay.dropped.down).toBeLessThan(20);
      relay.loss.down = 0;
      // Still in its closing period: a later packet is answered with the code and reason.
      relay.replayUp(512);
      void client.probe();
    });
  });
});
