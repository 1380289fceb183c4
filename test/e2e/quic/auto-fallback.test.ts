// `--protocol auto` against an edge whose UDP port is dropped by nftables: QUIC times out,
// the dial falls back to HTTP/2 on the same port number, and says why. Everything runs on
// the loopback of a namespace this test creates; the main thread stays inside it for the
// test (sockets are created lazily by Node's TCP stack), and always switches back.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createEdgeIdentity, type EdgeIdentity } from '../../../src/engine/transport/identity.js';
import { closeFd, currentNetns, openNetns } from '../../../src/engine/native/index.js';
import { dialAuto, type AutoProtocolState } from '../../../src/engine/transport/auto.js';
import { dialHttp2Tunnel, Http2TunnelListener } from '../../../src/engine/transport/http2/index.js';
import { dialQuic, listenQuic, type QuicListener } from '../../../src/engine/transport/quic/index.js';
import type { TunnelConnection } from '../../../src/engine/transport/types.js';
import { insideNetnsAsync, TestNetns } from '../../helpers/netns.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { collect, echo } from '../../unit/quic/support.js';

privilegedDescribe('--protocol auto falls back to HTTP/2 when UDP to the edge is dropped', () => {
  let ns: TestNetns | undefined;
  let id: EdgeIdentity;
  let home = -1;
  let target = -1;
  let quicListener: QuicListener | undefined;
  let h2Listener: Http2TunnelListener | undefined;
  let port = 0;

  const inside = <T>(fn: () => Promise<T>): Promise<T> => insideNetnsAsync(target, home, fn);

  beforeAll(async () => {
    id = await createEdgeIdentity({ ips: ['127.0.0.1'] });
    ns = TestNetns.create('oxy-quic-auto');
    home = currentNetns();
    target = openNetns(ns.path);
    await inside(async () => {
      quicListener = await listenQuic({ cert: id.certChain, key: id.key, host: '127.0.0.1' }, echo);
      port = quicListener.address.port;
      h2Listener = new Http2TunnelListener({ cert: id.certChain, key: id.key });
      h2Listener.on('connection', (conn: TunnelConnection) =>
        conn.onStream((s) => {
          s.on('error', () => {});
          s.pipe(s);
        }),
      );
      await h2Listener.listen(port, '127.0.0.1'); // same port number, TCP
    });
  });

  afterAll(async () => {
    await quicListener?.close();
    await h2Listener?.close();
    if (target >= 0) closeFd(target);
    if (home >= 0) closeFd(home);
    ns?.delete();
  });

  /** QUIC dials attempted (each logs nothing until it fails or succeeds). */
  let quicDials = 0;

  /** `quicTimeoutMs`: 800 where UDP is dropped (the fallback's wait); where it passes, long enough for a handshake on a loaded machine (800 ms was not, at load 24). */
  function dialer(state: AutoProtocolState, lines: string[], quicTimeoutMs = 800) {
    return () =>
      dialAuto({
        quic: ({ timeoutMs, signal }) => {
          quicDials++;
          return dialQuic({ host: '127.0.0.1', port, ca: id.caCert, timeoutMs, signal });
        },
        http2: ({ signal }) => dialHttp2Tunnel({ host: '127.0.0.1', port, ca: id.caCert, signal }),
        quicTimeoutMs,
        state,
        log: {
          info: (f, m) => lines.push(`INF ${m} ${JSON.stringify(f)}`),
          warn: (f, m) => lines.push(`WRN ${m} ${JSON.stringify(f)}`),
        },
      });
  }

  async function roundTrip(conn: TunnelConnection): Promise<string> {
    const s = await conn.openStream();
    const body = collect(s);
    s.end(`via ${conn.protocol}`);
    return (await body).toString();
  }

  it('uses QUIC while UDP passes', async () => {
    const lines: string[] = [];
    const conn = await inside(async () => {
      const c = await dialer({}, lines, 30_000)();
      expect(await roundTrip(c)).toBe('via quic');
      return c;
    });
    expect(conn.protocol).toBe('quic');
    expect(lines).toEqual([]);
    conn.close();
  });

  it('with `udp dport PORT drop`, times out on QUIC, logs why, and carries streams over HTTP/2', async () => {
    ns!.exec('nft', ['add table inet oxyauto']);
    ns!.exec('nft', ['add chain inet oxyauto out { type filter hook output priority 0 ; }']);
    ns!.exec('nft', [`add rule inet oxyauto out udp dport ${port} drop`]);
    try {
      const lines: string[] = [];
      const state: AutoProtocolState = {};
      const started = Date.now();
      const conn = await inside(async () => {
        const c = await dialer(state, lines)();
        expect(await roundTrip(c)).toBe('via http2');
        return c;
      });
      // Each connection closes before its checks: one left open when a check fails holds the
      // HTTP/2 listener's close in afterAll (the hook timed out and the namespace stayed behind).
      const took = Date.now() - started;
      conn.close();
      expect(conn.protocol).toBe('http2');
      expect(took).toBeGreaterThanOrEqual(700);
      expect(lines[0]).toMatch(/^WRN Failed to dial a quic connection .*did not complete within 800 ms/);
      expect(lines[1]).toMatch(/^INF Switching to fallback protocol http2/);
      expect(state.fellBackAt).toBeDefined();

      // The fallback sticks: the next dial goes straight to HTTP/2, without trying QUIC (and
      // so without waiting for its handshake timeout). Counted, not timed: the machine's load
      // moves any time.
      const dialsBefore = quicDials;
      const second = await inside(() => dialer(state, lines)());
      second.close();
      expect(second.protocol).toBe('http2');
      expect(quicDials - dialsBefore).toBe(0);
      expect(lines).toHaveLength(2);
    } finally {
      ns!.exec('nft', ['delete table inet oxyauto']);
    }
  });
}, ['root', 'netns']);
