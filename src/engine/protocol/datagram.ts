/**
 * Datagram framing for proxied UDP and IP. Every tunnel datagram (QUIC DATAGRAM frame, or
 * one record of the HTTP/2 datagram stream) starts with a 5-byte prefix:
 *
 *   [u8 type][u32 BE flow id][payload]
 *
 * type 0x01 UDP payload of flow `flowId` (the flow was set up by a `udp` stream whose
 * header carries `FlowId`); 0x02 a raw IP packet (flowId names the IP session/vnet
 * context the packet belongs to). The receiver looks the flow up by id and drops datagrams
 * of unknown flows.
 *
 * Also here: the record codec of the datagram *stream* that carries datagrams where the
 * transport has none (HTTP/2): `[u16 BE length][datagram]` repeated.
 */
import { OxyError } from '../../core/errors.js';
import { ChunkQueue } from './chunks.js';

export const DATAGRAM_PREFIX_SIZE = 5;
export const DatagramType = { UDP: 0x01, IP: 0x02 } as const;
export type DatagramTypeValue = (typeof DatagramType)[keyof typeof DatagramType];

export interface TunnelDatagram {
  type: DatagramTypeValue;
  flowId: number;
  /** A view into the received buffer; copy it to keep it beyond the callback. */
  payload: Buffer;
}

export function encodeDatagram(type: DatagramTypeValue, flowId: number, payload: Uint8Array): Buffer {
  if (!Number.isInteger(flowId) || flowId < 0 || flowId > 0xffffffff) {
    throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', `Flow id out of range: ${flowId}`);
  }
  const out = Buffer.allocUnsafe(DATAGRAM_PREFIX_SIZE + payload.length);
  out[0] = type;
  out.writeUInt32BE(flowId, 1);
  out.set(payload, DATAGRAM_PREFIX_SIZE);
  return out;
}

export function decodeDatagram(data: Buffer): TunnelDatagram {
  if (data.length < DATAGRAM_PREFIX_SIZE) {
    throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', `Datagram of ${data.length} bytes is shorter than its prefix`);
  }
  const type = data[0]!;
  if (type !== DatagramType.UDP && type !== DatagramType.IP) {
    throw new OxyError('OXY_ERR_PROTOCOL_MALFORMED', `Unknown datagram type 0x${type.toString(16)}`);
  }
  return { type, flowId: data.readUInt32BE(1), payload: data.subarray(DATAGRAM_PREFIX_SIZE) };
}

// ---------------------------------------------------------------------------- datagram stream

export const MAX_STREAM_DATAGRAM = 0xffff;

/** `[u16 BE length][datagram]`: one record of the datagram stream. */
export function encodeDatagramRecord(datagram: Uint8Array): Buffer {
  if (datagram.length > MAX_STREAM_DATAGRAM) {
    throw new OxyError('OXY_ERR_PROTOCOL_OVERSIZE', `Datagram of ${datagram.length} bytes exceeds ${MAX_STREAM_DATAGRAM}`);
  }
  const out = Buffer.allocUnsafe(2 + datagram.length);
  out.writeUInt16BE(datagram.length, 0);
  out.set(datagram, 2);
  return out;
}

/** Splits a datagram stream back into datagrams. */
export class DatagramRecordParser {
  private readonly queue = new ChunkQueue();
  private pending = -1;

  push(chunk: Buffer): Buffer[] {
    this.queue.push(chunk);
    const out: Buffer[] = [];
    for (;;) {
      if (this.pending < 0) {
        if (this.queue.length < 2) break;
        this.pending = this.queue.readUInt(2);
      }
      if (this.queue.length < this.pending) break;
      out.push(this.queue.consume(this.pending));
      this.pending = -1;
    }
    return out;
  }
}
