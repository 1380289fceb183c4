// Shared bits of the QUIC e2e tests.
import type dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import type { OutgoingDatagram, PktinfoUdpSocket } from '../../../src/engine/native/index.js';

/**
 * A Node dgram socket dressed as a PktinfoUdpSocket, for control experiments: it hands the
 * QUIC endpoint the same batches (one datagram each) but knows no destination address
 * and cannot choose a source — the kernel picks the reply's source, as for any dgram
 * server. Only what QuicEndpoint uses is implemented.
 */
export class DgramAsPktinfo extends EventEmitter {
  closed = false;

  constructor(private readonly socket: dgram.Socket) {
    super();
    socket.on('message', (msg, rinfo) => {
      const source = rinfo.address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1');
      this.emit('batch', {
        count: 1,
        truncated: () => false,
        payload: () => msg,
        sourcePort: () => rinfo.port,
        sourceAddress: () => source,
        destinationAddress: () => undefined,
      });
    });
  }

  address(): { family: 4 | 6; address: string; port: number } {
    const a = this.socket.address();
    return { family: a.family === 'IPv4' ? 4 : 6, address: a.address, port: a.port };
  }

  sendBatch(datagrams: readonly OutgoingDatagram[]): number {
    for (const d of datagrams) this.socket.send(d.data, d.port, d.address); // sourceAddress: not possible
    return datagrams.length;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
    this.emit('close');
  }

  asPktinfo(): PktinfoUdpSocket {
    return this as unknown as PktinfoUdpSocket;
  }
}

/** Records the source address of every datagram a client socket receives. */
export function recordSources(socket: PktinfoUdpSocket): Set<string> {
  const sources = new Set<string>();
  socket.on('batch', (batch) => {
    for (let i = 0; i < batch.count; i++) sources.add(batch.sourceAddress(i));
  });
  return sources;
}
