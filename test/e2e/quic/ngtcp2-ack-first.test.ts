import { expect, it } from 'vitest';
import { withEnv } from '../../helpers/env.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { ngtcp2VethSuite, pumpedBulk } from './ngtcp2-netns.js';

const SERVER = '198.18.14.1';
const SIZE = 8 * 1024 * 1024;

privilegedDescribe("ngtcp2: a bulk receiver's ACK before its sockets' writes (OXY_QUIC_ACK_FIRST=1)", () => {
  const pair = ngtcp2VethSuite('oxy-ackf', SERVER, '198.18.14.100');

  it('OXY_QUIC_ACK_FIRST=1: each end sends its ACK before writing a bulk read to its socket; bytes intact both ways', async () => {
    const { client: c, edge } = await withEnv({ OXY_QUIC_ACK_FIRST: '1' }, () => pumpedBulk(pair, SIZE));
    expect(c.acksFirst).toBeGreaterThan(0);
    expect(edge.acksFirst).toBeGreaterThan(0);
  }, 60_000);

  it('OXY_QUIC_ACK_SPLIT=1: each end acknowledges in the middle of a bulk read, before decrypting the rest; bytes intact both ways', async () => {
    const { client: c, edge } = await withEnv({ OXY_QUIC_ACK_SPLIT: '1', OXY_QUIC_ACK_FIRST: undefined }, () => pumpedBulk(pair, SIZE));
    expect(c.acksSplit).toBeGreaterThan(0);
    expect(edge.acksSplit).toBeGreaterThan(0);
    expect(c.acksFirst).toBe(0);
  }, 60_000);

  it('OXY_QUIC_ACK_SPLIT=server: only the server end (the edge) splits its reads; bytes intact both ways', async () => {
    const { client: c, edge } = await withEnv({ OXY_QUIC_ACK_SPLIT: 'server', OXY_QUIC_ACK_FIRST: undefined }, () => pumpedBulk(pair, SIZE));
    expect(c.acksSplit).toBe(0);
    expect(edge.acksSplit).toBeGreaterThan(0);
  }, 60_000);

  it('by default the writes go before the packets, in one pass, and a read is acknowledged after all of it; bytes intact both ways', async () => {
    const { client: c, edge } = await withEnv({ OXY_QUIC_ACK_FIRST: undefined, OXY_QUIC_ACK_SPLIT: undefined }, () => pumpedBulk(pair, SIZE));
    expect(c.acksFirst).toBe(0);
    expect(edge.acksFirst).toBe(0);
    expect(c.acksSplit).toBe(0);
    expect(edge.acksSplit).toBe(0);
  }, 60_000);
});
