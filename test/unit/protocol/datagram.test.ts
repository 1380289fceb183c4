import { describe, expect, it } from 'vitest';
import { DatagramRecordParser, DatagramType, decodeDatagram, encodeDatagram, encodeDatagramRecord } from '../../../src/engine/protocol/datagram.js';

describe('datagram framing', () => {
  it('prefixes type and flow id and decodes to a view', () => {
    const wire = encodeDatagram(DatagramType.UDP, 0xdeadbeef, Buffer.from('dns query'));
    expect(wire.subarray(0, 5)).toEqual(Buffer.from([0x01, 0xde, 0xad, 0xbe, 0xef]));
    const d = decodeDatagram(wire);
    expect(d).toMatchObject({ type: DatagramType.UDP, flowId: 0xdeadbeef });
    expect(d.payload.toString()).toBe('dns query');
    expect(d.payload.buffer).toBe(wire.buffer);
  });

  it('rejects short and unknown datagrams with a code', () => {
    expect(() => decodeDatagram(Buffer.from([1, 0, 0]))).toThrow(expect.objectContaining({ code: 'OXY_ERR_PROTOCOL_MALFORMED' }));
    expect(() => decodeDatagram(Buffer.from([9, 0, 0, 0, 1]))).toThrow(expect.objectContaining({ code: 'OXY_ERR_PROTOCOL_MALFORMED' }));
    expect(() => encodeDatagram(DatagramType.IP, -1, Buffer.alloc(0))).toThrow(expect.objectContaining({ code: 'OXY_ERR_PROTOCOL_MALFORMED' }));
  });

  it('splits a datagram stream delivered byte by byte', () => {
    const datagrams = [Buffer.alloc(0), Buffer.from('a'), Buffer.alloc(1400, 7), Buffer.alloc(65535, 1)];
    const wire = Buffer.concat(datagrams.map(encodeDatagramRecord));
    const parser = new DatagramRecordParser();
    const out: Buffer[] = [];
    for (let i = 0; i < wire.length; i += 1 + (i % 1000)) out.push(...parser.push(wire.subarray(i, i + 1 + (i % 1000))));
    expect(out).toEqual(datagrams);
    expect(() => encodeDatagramRecord(Buffer.alloc(65536))).toThrow(expect.objectContaining({ code: 'OXY_ERR_PROTOCOL_OVERSIZE' }));
  });
});
