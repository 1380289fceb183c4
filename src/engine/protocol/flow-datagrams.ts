import type { TunnelConnection } from '../transport/types.js';
import { decodeDatagram, DatagramType } from './datagram.js';

/**
 * UDP payloads of several flows sharing one connection's DATAGRAM frames: each carries its
 * flow id (see datagram.ts); this routes received ones to their flow. Both the edge and the
 * connector keep one per process.
 */
export class FlowDatagrams {
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

  detach(conn: TunnelConnection, flowId: number): void {
    this.#flows.get(conn)?.delete(flowId);
  }
}
