import { describe, expect, it } from 'vitest';
import { OxyError } from '../../../src/core/errors.js';
import { dialAuto, shouldFallBack, type AutoProtocolState } from '../../../src/engine/transport/auto.js';
import { QuicDialError } from '../../../src/engine/transport/quic/index.js';
import type { TunnelConnection } from '../../../src/engine/transport/types.js';

const fake = (protocol: 'quic' | 'http2') => ({ protocol }) as unknown as TunnelConnection;

function recorder() {
  const lines: string[] = [];
  return {
    lines,
    log: {
      info: (f: object, m: string) => lines.push(`INF ${m} ${JSON.stringify(f)}`),
      warn: (f: object, m: string) => lines.push(`WRN ${m} ${JSON.stringify(f)}`),
    },
  };
}

describe('--protocol auto (decision logic)', () => {
  it('uses QUIC when it connects', async () => {
    const conn = await dialAuto({ quic: async () => fake('quic'), http2: async () => fake('http2') });
    expect(conn.protocol).toBe('quic');
  });

  it('falls back to HTTP/2 on a QUIC handshake timeout, logging why, and passes the timeout to the QUIC dialer', async () => {
    const { lines, log } = recorder();
    let given = 0;
    const conn = await dialAuto({
      quic: async ({ timeoutMs }) => {
        given = timeoutMs;
        throw new QuicDialError('OXY_ERR_TUNNEL_HANDSHAKE', 'timeout', 'QUIC handshake with 198.18.0.1:7844 did not complete within 1234 ms');
      },
      http2: async () => fake('http2'),
      log,
      quicTimeoutMs: 1234,
      fields: { connIndex: 2 },
    });
    expect(given).toBe(1234);
    expect(conn.protocol).toBe('http2');
    expect(lines[0]).toMatch(/^WRN Failed to dial a quic connection /);
    expect(lines[0]).toContain('did not complete within 1234 ms');
    expect(lines[0]).toContain('"connIndex":2');
    expect(lines[1]).toMatch(/^INF Switching to fallback protocol http2/);
  });

  it('does not fall back on a certificate or pin failure, nor on abort', async () => {
    for (const err of [
      new QuicDialError('OXY_ERR_TUNNEL_HANDSHAKE', 'tls', 'unknown CA'),
      new QuicDialError('OXY_ERR_TUNNEL_PIN_MISMATCH', 'tls', 'pin'),
      new QuicDialError('OXY_ERR_ABORTED', 'aborted', 'aborted'),
    ]) {
      expect(shouldFallBack(err)).toBe(false);
      await expect(dialAuto({ quic: async () => Promise.reject(err), http2: async () => fake('http2') })).rejects.toBe(err);
    }
    expect(shouldFallBack(new QuicDialError('OXY_ERR_TUNNEL_HANDSHAKE', 'refused', 'alpn'))).toBe(true);
    expect(shouldFallBack(new QuicDialError('OXY_ERR_TUNNEL_HANDSHAKE', 'unreachable', 'EPERM'))).toBe(true);
    expect(shouldFallBack(new OxyError('EACCES', 'socket refused'))).toBe(true);
  });

  it('a shared state makes the fallback stick until retryQuicAfterMs', async () => {
    const state: AutoProtocolState = {};
    let quicTries = 0;
    const quic = async () => {
      quicTries++;
      throw new QuicDialError('OXY_ERR_TUNNEL_HANDSHAKE', 'timeout', 'timed out');
    };
    const http2 = async () => fake('http2');
    await dialAuto({ quic, http2, state });
    await dialAuto({ quic, http2, state });
    expect(quicTries).toBe(1);
    expect(state.reason).toBe('timed out');
    state.fellBackAt = Date.now() - 60_000;
    const back = await dialAuto({ quic: async () => fake('quic'), http2, state, retryQuicAfterMs: 30_000 });
    expect(back.protocol).toBe('quic');
    expect(state.fellBackAt).toBeUndefined();
  });
});
