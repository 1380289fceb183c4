import { afterEach, describe, expect, it } from 'vitest';
import { DatagramType, decodeDatagram, encodeDatagram } from '../../../src/engine/protocol/datagram.js';
import { connectPair, type Pair } from './support.js';
import { until } from '../../helpers/until.js';

describe('QUIC datagrams', () => {
  const pairs: Pair[] = [];
  afterEach(async () => {
    for (const p of pairs.splice(0)) await p.close();
  });

  it('carry flow-tagged datagrams both ways', async () => {
    const p = await connectPair();
    pairs.push(p);
    const atServer: string[] = [];
    const atClient: string[] = [];
    p.server.onDatagram((d) => {
      const { flowId, payload } = decodeDatagram(d);
      atServer.push(`${flowId}:${payload.toString()}`);
      p.server.sendDatagram(encodeDatagram(DatagramType.UDP, flowId + 1000, payload));
    });
    p.client.onDatagram((d) => {
      const { flowId, payload } = decodeDatagram(d);
      atClient.push(`${flowId}:${payload.toString()}`);
    });
    for (let i = 0; i < 50; i++) expect(p.client.sendDatagram(encodeDatagram(DatagramType.UDP, i, Buffer.from(`d${i}`)))).toBe(true);
    await until(() => atClient.length >= 50, 3000, '50 datagrams at the client');
    // Loopback without loss delivers all of them; QUIC does not promise order.
    expect(atServer.sort()).toEqual(Array.from({ length: 50 }, (_, i) => `${i}:d${i}`).sort());
    expect(atClient.length).toBe(50);
    expect(p.client.stats()).toMatchObject({ datagramsSent: 50, datagramsReceived: 50, datagramsDropped: 0 });
  });

  it('drops (and counts) a datagram larger than maxDatagramSize', async () => {
    const p = await connectPair();
    pairs.push(p);
    const max = p.client.maxDatagramSize;
    expect(p.client.sendDatagram(Buffer.alloc(max + 1))).toBe(false);
    expect(p.client.stats().datagramsDropped).toBe(1);
    let got = 0;
    p.server.onDatagram((d) => (got = d.length));
    expect(p.client.sendDatagram(Buffer.alloc(max, 3))).toBe(true);
    await until(() => got > 0, 2000, 'the largest datagram');
    expect(got).toBe(max);
  });

  it('refuses datagrams after close', async () => {
    const p = await connectPair();
    pairs.push(p);
    p.client.close();
    expect(p.client.sendDatagram(Buffer.from('late'))).toBe(false);
  });
});
