import type { TunnelConnection } from '../transport/types.js';
import { DATAGRAM_PREFIX_SIZE, DatagramRecordParser, decodeDatagram, DatagramType, encodeDatagram, encodeDatagramRecord } from './datagram.js';

/** What became of the UDP payloads a side sent (metrics). */
export interface FlowDatagramCounters {
  /** As DATAGRAM frames. */
  datagrams: number;
  /** Too large for a DATAGRAM frame on the path: carried as a record on the flow's stream. */
  oversize: number;
  /** Refused by the connection (its send queue full, or closing): lost, as on a full link. */
  dropped: number;
}

/**
 * UDP payloads of several flows sharing one connection's DATAGRAM frames: each carries its
 * flow id (see datagram.ts); this routes received ones to their flow. Both the edge and the
 * connector keep one per process.
 */
export class FlowDatagrams {
  readonly counters: FlowDatagramCounters = { datagrams: 0, oversize: 0, dropped: 0 };
  #next = 1;
  readonly #flows = new WeakMap<TunnelConnection, Map<number, (payload: Buffer) => void>>();

  nextId(): number {
    const id = this.#next;
    this.#next = this.#next >= 0xffffffff ? 1 : this.#next + 1;
    return id;
  }

  attach(conn: TunnelConnection, flowId: number, deliver: (payload: Buffer) => void): void {
    let flows = this.#flows.get(conn);
    if (!flows) {
      const table = new Map<number, (payload: Buffer) => void>();
      this.#flows.set(conn, (flows = table));
      conn.onDatagram((data) => {
        let datagram;
        try {
          datagram = decodeDatagram(data);
        } catch {
          return; // malformed: dropped, as a lossy path would
        }
        if (datagram.type === DatagramType.UDP) table.get(datagram.flowId)?.(Buffer.from(datagram.payload));
      });
    }
    flows.set(flowId, deliver);
  }

  /**
   * Sends one UDP payload of a flow: a DATAGRAM frame when it fits the path, else a record on
   * the flow's stream (QUIC's DATAGRAM limit is ~1.2–1.4 KB; a UDP payload may be 65507 B, and
   * IP fragmentation cannot help since the edge reassembles: only carrying it does).
   */
  send(conn: TunnelConnection, stream: { write(b: Buffer): unknown }, flowId: number, payload: Uint8Array): void {
    if (payload.length + DATAGRAM_PREFIX_SIZE <= conn.maxDatagramSize) {
      if (conn.sendDatagram(encodeDatagram(DatagramType.UDP, flowId, payload))) this.counters.datagrams++;
      else this.counters.dropped++;
      return;
    }
    this.counters.oversize++;
    stream.write(encodeDatagramRecord(payload));
  }

  /** Delivers the records a peer put on the flow's stream (its oversize payloads). */
  static readStream(stream: NodeJS.ReadableStream, deliver: (payload: Buffer) => void): void {
    const parser = new DatagramRecordParser();
    stream.on('data', (chunk: Buffer) => {
      for (const payload of parser.push(chunk)) deliver(payload);
    });
  }

  detach(conn: TunnelConnection, flowId: number): void {
    this.#flows.get(conn)?.delete(flowId);
  }
}
