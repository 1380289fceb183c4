// The tunnel protocol above the transport, over QUIC: the edge opens the control stream,
// the connector proves its secret; a refusal closes with UNAUTHORIZED and the reason.
import { randomBytes, randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { isOxyError } from '../../../src/core/errors.js';
import { TunnelCloseCode } from '../../../src/engine/protocol/codes.js';
import { acceptRegistration, registerConnection, UNAUTHORIZED_MESSAGE } from '../../../src/engine/protocol/registration.js';
import { connectPair, edgeIdentity, type Pair } from '../../unit/quic/support.js';

const tunnelId = randomUUID();
const secret = randomBytes(32);

describe('registration over QUIC', () => {
  let pair: Pair | undefined;
  afterEach(async () => {
    await pair?.close();
    pair = undefined;
  });

  it('registers with the right secret', async () => {
    pair = await connectPair({}, { caPin: (await edgeIdentity()).caPin });
    const [edgeSide, connSide] = await Promise.all([
      acceptRegistration(pair.server, { location: 'quic01', lookupSecret: (id) => (id === tunnelId ? secret : undefined) }),
      registerConnection(pair.client, { tunnelId, secret, connectorId: 'c1', connIndex: 2, clientVersion: 'oxyctl test', features: ['datagrams-v1'] }),
    ]);
    expect(edgeSide.request).toMatchObject({ tunnelId, connectorId: 'c1', connIndex: 2 });
    expect(connSide.connectionId).toBe(edgeSide.connectionId);
    expect(connSide.location).toBe('quic01');
    expect(pair.server.protocol).toBe('quic');
  });

  it('refuses a wrong secret: both sides reject with UNAUTHORIZED and the close carries the reason', async () => {
    pair = await connectPair();
    const [edgeResult, connResult] = await Promise.allSettled([
      acceptRegistration(pair.server, { location: 'quic01', lookupSecret: () => secret }),
      registerConnection(pair.client, { tunnelId, secret: randomBytes(32), connectorId: 'c1', connIndex: 0, clientVersion: 't' }),
    ]);
    for (const result of [edgeResult, connResult]) {
      expect(result.status).toBe('rejected');
      const err = (result as PromiseRejectedResult).reason;
      expect(isOxyError(err, 'OXY_ERR_TUNNEL_UNAUTHORIZED'), String(err)).toBe(true);
      expect((err as Error).message).toBe(UNAUTHORIZED_MESSAGE);
    }
    expect(await pair.client.closed).toMatchObject({ code: TunnelCloseCode.UNAUTHORIZED, reason: UNAUTHORIZED_MESSAGE, remote: true });
    expect(await pair.server.closed).toMatchObject({ code: TunnelCloseCode.UNAUTHORIZED, remote: false });
  });
});
