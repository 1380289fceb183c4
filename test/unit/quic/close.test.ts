import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { isOxyError } from '../../../src/core/errors.js';
import { TunnelCloseCode } from '../../../src/engine/protocol/codes.js';
import { connectPair, type Pair } from './support.js';

describe('QUIC connection close and idle timeout', () => {
  const pairs: Pair[] = [];
  afterEach(async () => {
    for (const p of pairs.splice(0)) await p.close();
  });

  it('the peer sees the application close code and reason in `closed`', async () => {
    const p = await connectPair();
    pairs.push(p);
    p.server.close(TunnelCloseCode.UNAUTHORIZED, 'bad secret for tunnel 1234');
    const local = await p.server.closed;
    expect(local).toEqual({ code: TunnelCloseCode.UNAUTHORIZED, reason: 'bad secret for tunnel 1234', remote: false });
    const remote = await p.client.closed;
    expect(remote).toEqual({ code: TunnelCloseCode.UNAUTHORIZED, reason: 'bad secret for tunnel 1234', remote: true });
    expect(p.client.isClosed).toBe(true);
  });

  it('works the other way too, and close() is idempotent (first call wins)', async () => {
    const p = await connectPair();
    pairs.push(p);
    p.client.close(TunnelCloseCode.SHUTDOWN, 'draining');
    p.client.close(TunnelCloseCode.INTERNAL_ERROR, 'second');
    expect(await p.server.closed).toEqual({ code: TunnelCloseCode.SHUTDOWN, reason: 'draining', remote: true });
    expect((await p.client.closed).code).toBe(TunnelCloseCode.SHUTDOWN);
  });

  it('a close cuts open streams with OXY_ERR_TUNNEL_CLOSED and fails later opens and accepts', async () => {
    const p = await connectPair();
    pairs.push(p);
    const accepted = p.server.acceptStream();
    const stream = await p.client.openStream();
    stream.write('x');
    const peer = await accepted;
    const clientErr = once(stream, 'error');
    const serverErr = once(peer, 'error');
    p.client.close(TunnelCloseCode.SHUTDOWN, 'bye');
    const [a] = await clientErr;
    const [b] = await serverErr;
    expect(isOxyError(a, 'OXY_ERR_TUNNEL_CLOSED')).toBe(true);
    expect(isOxyError(b, 'OXY_ERR_TUNNEL_CLOSED')).toBe(true);
    await expect(p.client.openStream()).rejects.toSatisfy((e: unknown) => isOxyError(e, 'OXY_ERR_TUNNEL_CLOSED'));
    await expect(p.server.acceptStream()).rejects.toSatisfy((e: unknown) => isOxyError(e, 'OXY_ERR_TUNNEL_CLOSED'));
  });

  it('an idle connection times out on both ends when the peer goes silent', async () => {
    // 1 s, not less: the handshake must outlast it too, and on a loaded machine (load 14, files in
    // parallel) a 400 ms one expired before the server's side of the connection was accepted.
    const p = await connectPair({ idleTimeoutMs: 1000, keepAliveMs: 0 }, { idleTimeoutMs: 1000, keepAliveMs: 0 });
    pairs.push(p);
    // Silence the client: stop reading its socket, so neither side hears the other. (The ngtcp2
    // client's socket is the addon's; with keep-alive off nothing is sent either way anyway.)
    if ('hooks' in p.client) (p.client as unknown as { hooks: { socket: { pause(): void } } }).hooks.socket.pause();
    const started = Date.now();
    const info = await p.server.closed;
    expect(info.code).toBe(TunnelCloseCode.TRANSPORT_LOST);
    expect(info.remote).toBe(false);
    expect(info.reason).toMatch(/idle timeout/);
    expect(Date.now() - started).toBeLessThan(5000);
    expect((await p.client.closed).reason).toMatch(/idle timeout/);
  });

  it('keep-alive holds an idle connection open past the idle timeout', async () => {
    const p = await connectPair({ idleTimeoutMs: 600, keepAliveMs: 150 }, { idleTimeoutMs: 600, keepAliveMs: 150 });
    pairs.push(p);
    await new Promise((r) => setTimeout(r, 1500));
    expect(p.client.isClosed).toBe(false);
    expect(p.server.isClosed).toBe(false);
  });

  it('probe() is answered, and without keep-alive the connection is quiet afterwards', async () => {
    const p = await connectPair({ keepAliveMs: 0 }, { keepAliveMs: 0 });
    pairs.push(p);
    expect(await p.client.probe()).toBe(true);
    await new Promise((r) => setTimeout(r, 50));
    const sent = p.client.quicStats().sent;
    await new Promise((r) => setTimeout(r, 400));
    // A probe that left a PING timer behind would send packets on every loop turn.
    expect(p.client.quicStats().sent - sent).toBeLessThan(5);
    expect(p.client.isClosed).toBe(false);
  });

  it('closing the listener closes its connections with SHUTDOWN', async () => {
    const p = await connectPair();
    await p.listener.close();
    expect(await p.client.closed).toMatchObject({ code: TunnelCloseCode.SHUTDOWN, remote: true });
    p.client.close();
  });
});
