/**
 * The edge's QUIC listener on the addon's ngtcp2 server (`OXY_QUIC_SERVER_IMPL=ngtcp2`,
 * native/cpp/quicserver.cc): the listener of ./endpoint.ts with the packets kept in C++. The
 * addon works on a duplicate of the pktinfo socket listenQuic bound (or adopted: a worker's
 * SO_REUSEPORT member, a socket made in another namespace), so binding, reuse-port groups and
 * namespaces are as for quiche. Retry tokens use the key of a RetryTokens, stateless resets the
 * key StatelessResets derives from the edge's TLS key: a restarted edge resets its predecessor's
 * connections whichever library either ran.
 *
 * The addon's events arrive in one Buffer per loop callback: a CONN record names the connection
 * the records after it are about; a connection JS does not know yet appears with its HANDSHAKE.
 */
import { debuglog } from 'node:util';
import { createQuicServer, QuicEvent, type NativeQuicServer, type PktinfoUdpSocket } from '../../native/index.js';
import { noteExternalBytes } from '../../util/gc.js';
import { QUIC_ALPN, type QuicSettings } from './config.js';
import { canonicalAddress } from './endpoint.js';
import { Ngtcp2TunnelConnection, type Ngtcp2Port } from './ngtcp2-connection.js';
import type { RetryTokens } from './retry.js';
import type { StatelessResets } from './stateless-reset.js';

const debug = debuglog('oxy:transport:quic');

export interface Ngtcp2ListenerOptions {
  socket: PktinfoUdpSocket;
  /** The socket is ours: closed once the addon has its duplicate. Else it is paused while we listen. */
  ownsSocket: boolean;
  cert: string;
  key: string;
  settings: QuicSettings;
  retry: RetryTokens | undefined;
  resets: StatelessResets;
  maxConnections: number;
  onConnection: (conn: Ngtcp2TunnelConnection) => void;
}

export class Ngtcp2Listener {
  readonly address: { address: string; port: number; family: 4 | 6 };
  private readonly server: NativeQuicServer;
  private readonly conns = new Map<number, Ngtcp2TunnelConnection>();
  private readonly options: Ngtcp2ListenerOptions;
  private closing: Promise<void> | undefined;

  constructor(options: Ngtcp2ListenerOptions) {
    this.options = options;
    const { socket, settings } = options;
    this.address = socket.address();
    this.server = createQuicServer(
      {
        fd: socket.fd,
        alpn: QUIC_ALPN,
        cert: options.cert,
        key: options.key,
        resetKey: options.resets.key,
        retryKey: options.retry?.key,
        retryLifetimeMs: options.retry?.lifetimeMs ?? 10_000,
        maxConnections: options.maxConnections,
        ...settings,
      },
      this.onEvents,
    );
    // The addon reads its duplicate from now on; the JS socket must not take datagrams from it.
    if (options.ownsSocket) socket.close();
    else socket.pause();
  }

  connections(): Ngtcp2TunnelConnection[] {
    return [...this.conns.values()].filter((c) => !c.isClosed);
  }

  /** The addon's counters: connections, routed CIDs, refusals, resets sent. */
  stats(): ReturnType<NativeQuicServer['stats']> {
    return this.server.stats();
  }

  /** No new connections; every connection closes with `code`/`reason`; then the socket closes. */
  close(code: number, reason: string): Promise<void> {
    this.closing ??= (async () => {
      this.server.stop();
      for (const conn of [...this.conns.values()]) conn.close(code, reason);
      // Closing flushes first: the CONNECTION_CLOSEs leave before the socket closes.
      this.server.close();
      if (!this.options.ownsSocket && !this.options.socket.closed) this.options.socket.resume();
    })();
    return this.closing;
  }

  private readonly onEvents = (batch: Buffer): void => {
    let conn: Ngtcp2TunnelConnection | undefined;
    let handle = 0;
    for (let at = 0; at + 16 <= batch.length; ) {
      const type = batch[at]!;
      const flag = batch[at + 1]!;
      const length = batch.readUInt32LE(at + 4);
      const id = batch.readDoubleLE(at + 8);
      const data = batch.subarray(at + 16, at + 16 + length);
      at += 16 + length;
      if (type === QuicEvent.CONN) {
        conn?.endBatch();
        handle = id;
        conn = this.conns.get(handle);
        continue;
      }
      if (!conn) {
        // A connection appears with its handshake; before that (or once dropped) nothing is ours to hear.
        if (type !== QuicEvent.HANDSHAKE || this.closing) continue;
        conn = this.adopt(handle);
        if (!conn) continue;
      }
      conn.onRecord(type, flag, id, data);
    }
    conn?.endBatch();
    noteExternalBytes(batch.length);
  };

  private adopt(handle: number): Ngtcp2TunnelConnection | undefined {
    const server = this.server;
    const port: Ngtcp2Port = {
      openStream: () => server.openStream(handle),
      write: (id, data, fin) => server.write(handle, id, data, fin),
      shutdownStream: (id, code) => server.shutdownStream(handle, id, code),
      setReadPaused: (id, paused) => server.setReadPaused(handle, id, paused),
      sendDatagram: (data) => server.sendDatagram(handle, data),
      closeConnection: (code, reason, transport) => server.closeConnection(handle, code, reason, transport),
      probe: () => server.probe(handle),
      info: () => server.info(handle),
      peerCertificates: () => [],
      attachAnswers: (id, fd, state, keepAlive, extra) => server.attachAnswers(handle, id, fd, state, keepAlive, extra),
      armAnswer: (id, flags) => server.armAnswer(handle, id, flags),
      readClient: (id, host, client) => server.readClient(handle, id, host, client),
      readClientStop: (id) => server.readClientStop(handle, id),
      readBody: (id, left, chunkState) => server.readBody(handle, id, left, chunkState),
      closeAnswers: (id) => server.closeAnswers(handle, id),
      attachPump: (id, fd, mode, source, answer, open) => server.attachPump(handle, id, fd, mode, Number(source ?? 0), answer, open),
      shutPump: (id) => server.shutPump(handle, id),
      resetPump: (id) => server.resetPump(handle, id),
      pumpWrite: (id, data, head) => server.pumpWrite(handle, id, data, head),
      closePump: (id, reset) => server.closePump(handle, id, reset),
      armPumpHeads: (id, mode, frameLeft, bodyLeft) => server.armPumpHeads(handle, id, mode, frameLeft, bodyLeft),
      close: () => server.abandon(handle),
    };
    const info = server.info(handle);
    if (!info.remoteAddress) return undefined;
    const conn = new Ngtcp2TunnelConnection(() => port, {
      role: 'edge',
      remote: { address: canonicalAddress(info.remoteAddress.address), port: info.remoteAddress.port },
      local: { address: canonicalAddress(info.localAddress.address), port: info.localAddress.port },
      established: (c) => {
        try {
          this.options.onConnection(c);
        } catch (err) {
          debug('onConnection threw: %s', (err as Error).message);
          c.close(0x2, 'internal error');
        }
      },
      released: (c) => {
        if (this.conns.get(handle) === c) this.conns.delete(handle);
      },
    });
    this.conns.set(handle, conn);
    return conn;
  }
}
