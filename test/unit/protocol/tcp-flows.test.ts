import { describe, expect, it } from 'vitest';
import type { ErrorCode } from '../../../src/core/errors.js';
import { expectCode } from '../../helpers/errors.js';
import { encodeRequestHeader, encodeResponseHeader } from '../../../src/engine/protocol/stream-header.js';
import {
  decodeFlowHeader,
  FlowRecord,
  FlowRecordParser,
  flowRecordHead,
  MAX_FLOW_DATA_RECORD,
  MAX_FLOW_HEADER_RECORD,
  type FlowRecordSink,
} from '../../../src/engine/protocol/tcp-flows.js';

/** Records as a list of words: header:TYPE:LEN, data:TEXT, end, reset. */
function collect(): { sink: FlowRecordSink; seen: string[] } {
  const seen: string[] = [];
  const sink: FlowRecordSink = {
    header: (type, payload) => seen.push(`header:${type}:${payload.length}`),
    data: (bytes) => seen.push(`data:${bytes.toString()}`),
    end: () => seen.push('end'),
    reset: () => seen.push('reset'),
  };
  return { sink, seen };
}

const record = (type: number, payload: Buffer = Buffer.alloc(0)) => Buffer.concat([flowRecordHead(type, payload.length), payload]);

describe('tcp-flows records', () => {
  const open = encodeRequestHeader({ kind: 'tcp', destination: '198.18.0.10:80', metadata: [['Vnet', 'v']] });
  const wire = Buffer.concat([
    record(FlowRecord.OPEN, open),
    record(FlowRecord.DATA, Buffer.from('hello')),
    record(FlowRecord.DATA, Buffer.from(' world')),
    record(FlowRecord.END),
    record(FlowRecord.RESET),
  ]);

  it('parses a flow in one chunk and byte by byte alike; DATA passes on as it arrives', () => {
    const whole = collect();
    new FlowRecordParser(whole.sink, FlowRecord.OPEN).push(wire);
    expect(whole.seen).toEqual([`header:1:${open.length}`, 'data:hello', 'data: world', 'end', 'reset']);
    const split = collect();
    const parser = new FlowRecordParser(split.sink, FlowRecord.OPEN);
    for (let i = 0; i < wire.length; i++) parser.push(wire.subarray(i, i + 1));
    expect(split.seen.filter((s) => !s.startsWith('data:'))).toEqual([`header:1:${open.length}`, 'end', 'reset']);
    expect(
      split.seen
        .filter((s) => s.startsWith('data:'))
        .map((s) => s.slice(5))
        .join(''),
    ).toBe('hello world');
  });

  it('a header record decodes to exactly one stream header of its type', () => {
    expect(decodeFlowHeader(open, 'request')).toMatchObject({ kind: 'tcp', destination: '198.18.0.10:80' });
    const answer = encodeResponseHeader({ status: 1, message: 'refused', metadata: [] });
    expect(decodeFlowHeader(answer, 'response')).toMatchObject({ status: 1, message: 'refused' });
    expectCode(() => decodeFlowHeader(answer, 'request'), 'OXY_ERR_PROTOCOL_UNEXPECTED_MESSAGE');
    expectCode(() => decodeFlowHeader(Buffer.concat([open, Buffer.from('x')]), 'request'), 'OXY_ERR_PROTOCOL_MALFORMED');
    expectCode(() => decodeFlowHeader(open.subarray(0, open.length - 1), 'request'), 'OXY_ERR_PROTOCOL_MALFORMED');
    // Decoded whole (no parser): a cut prefix, another frame's magic, a declared body over the limit.
    expectCode(() => decodeFlowHeader(open.subarray(0, 5), 'request'), 'OXY_ERR_PROTOCOL_MALFORMED');
    expectCode(() => decodeFlowHeader(Buffer.from([0x16, 0x03, 1, 1, 0, 0, 0, 0]), 'request'), 'OXY_ERR_PROTOCOL_BAD_MAGIC');
    const huge = Buffer.from(open);
    huge.writeUInt32BE(MAX_FLOW_HEADER_RECORD + 1, 4);
    expectCode(() => decodeFlowHeader(huge, 'request'), 'OXY_ERR_PROTOCOL_OVERSIZE');
    // The same header split across the body's declared length and trailing bytes is not one header.
    const short = Buffer.from(open);
    short.writeUInt32BE(open.length - 9, 4);
    expectCode(() => decodeFlowHeader(short, 'request'), 'OXY_ERR_PROTOCOL_MALFORMED');
  });

  it('refuses hostile records before awaiting their payload, and stays failed', () => {
    const cases: [Buffer, ErrorCode][] = [
      [flowRecordHead(9, 0), 'OXY_ERR_PROTOCOL_MALFORMED'],
      // The edge never receives an OPEN, the connector never an ANSWER.
      [flowRecordHead(FlowRecord.ANSWER, 10), 'OXY_ERR_PROTOCOL_MALFORMED'],
      [flowRecordHead(FlowRecord.OPEN, MAX_FLOW_HEADER_RECORD + 1), 'OXY_ERR_PROTOCOL_OVERSIZE'],
      [flowRecordHead(FlowRecord.OPEN, 0), 'OXY_ERR_PROTOCOL_MALFORMED'],
      [flowRecordHead(FlowRecord.DATA, MAX_FLOW_DATA_RECORD + 1), 'OXY_ERR_PROTOCOL_OVERSIZE'],
      [flowRecordHead(FlowRecord.END, 1), 'OXY_ERR_PROTOCOL_MALFORMED'],
      [flowRecordHead(FlowRecord.RESET, 0xffffffff), 'OXY_ERR_PROTOCOL_MALFORMED'],
      // A peer that does not serve tcp-flows answers with a stream header: said so at its magic.
      [encodeResponseHeader({ status: 3, message: "This connector does not serve 'tcp-flows' streams", metadata: [] }), 'OXY_ERR_PROTOCOL_UNEXPECTED_MESSAGE'],
    ];
    for (const [bytes, code] of cases) {
      const { sink, seen } = collect();
      const parser = new FlowRecordParser(sink, FlowRecord.OPEN);
      expectCode(() => parser.push(bytes), code);
      parser.push(record(FlowRecord.END));
      expect(seen).toEqual([]);
    }
  });
});
