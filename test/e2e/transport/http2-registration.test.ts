import { randomBytes, randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { isOxyError } from '../../../src/core/errors.js';
import { TunnelCloseCode } from '../../../src/engine/protocol/codes.js';
import { acceptRegistration, registerConnection, UNAUTHORIZED_MESSAGE } from '../../../src/engine/protocol/registration.js';
import { http2Pair, type Pair } from './helpers.js';

const tunnelId = randomUUID();
const secret = randomBytes(32);
let pair: Pair | undefined;

afterEach(async () => {
  await pair?.close();
  pair = undefined;
});

describe('registration over HTTP/2', () => {
  it('registers with the right secret', async () => {
    pair = await http2Pair();
    const lookups: string[] = [];
    const [edgeSide, connSide] = await Promise.all([
      acceptRegistration(pair.edge, {
        location: 'test01',
        lookupSecret: (id) => {
          lookups.push(id);
          return id === tunnelId ? secret : undefined;
        },
      }),
      registerConnection(pair.connector, {
        tunnelId,
        secret,
        connectorId: 'connector-1',
        connIndex: 3,
        clientVersion: 'oxyctl test',
        features: ['datagrams-v1'],
      }),
    ]);
    expect(lookups).toEqual([tunnelId]);
    expect(edgeSide.request).toMatchObject({ tunnelId, connectorId: 'connector-1', connIndex: 3, features: ['datagrams-v1'] });
    expect(JSON.stringify(edgeSide.request)).not.toContain(secret.toString('base64'));
    expect(connSide.connectionId).toBe(edgeSide.connectionId);
    expect(connSide.connectionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(connSide.location).toBe('test01');
    expect(pair.edge.protocol).toBe('http2');
    expect(pair.connector.remoteAddress).toBe('127.0.0.1');
  });

  it('refuses a wrong secret with a clear error on both sides', async () => {
    pair = await http2Pair();
    const [edgeResult, connResult] = await Promise.allSettled([
      acceptRegistration(pair.edge, { location: 'test01', lookupSecret: () => secret }),
      registerConnection(pair.connector, {
        tunnelId,
        secret: randomBytes(32),
        connectorId: 'connector-1',
        connIndex: 0,
        clientVersion: 'oxyctl test',
      }),
    ]);
    for (const result of [edgeResult, connResult]) {
      expect(result.status).toBe('rejected');
      const err = (result as PromiseRejectedResult).reason;
      expect(isOxyError(err, 'OXY_ERR_TUNNEL_UNAUTHORIZED'), String(err)).toBe(true);
      expect((err as Error).message).toBe(UNAUTHORIZED_MESSAGE);
    }
    const closed = await pair.connector.closed;
    expect(closed).toMatchObject({ code: TunnelCloseCode.UNAUTHORIZED, reason: UNAUTHORIZED_MESSAGE, remote: true });
    expect(await pair.edge.closed).toMatchObject({ code: TunnelCloseCode.UNAUTHORIZED, remote: false });
  });

  it('refuses an unknown tunnel the same way', async () => {
    pair = await http2Pair();
    const [edgeResult, connResult] = await Promise.allSettled([
      acceptRegistration(pair.edge, { location: 'test01', lookupSecret: () => undefined }),
      registerConnection(pair.connector, { tunnelId, secret, connectorId: 'c', connIndex: 0, clientVersion: 't' }),
    ]);
    expect(edgeResult).toMatchObject({ status: 'rejected', reason: { code: 'OXY_ERR_TUNNEL_UNAUTHORIZED' } });
    expect(connResult).toMatchObject({ status: 'rejected', reason: { code: 'OXY_ERR_TUNNEL_UNAUTHORIZED' } });
  });
});
