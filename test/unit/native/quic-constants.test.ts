/**
 * The addon and JS read each other's event records by number: quic-core.h's enums and the
 * constants in native/quic.ts and protocol/tcp-flows.ts must say the same thing. Several people
 * add pump events at once; two given the same number once sent every count to the wrong handler
 * without a failing test. This reads the header itself, so a clash or a drift fails here.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ANSWER_STATE, BODY_END, QuicEvent, QuicPumpEvent } from '../../../src/engine/native/quic.js';
import { MAX_EXTENSIONS, MAX_FAST_HEAD, MAX_LINE, MAX_RECORD, MAX_SIZE_DIGITS } from '../../../src/engine/protocol/http1.js';
import { FlowRecord, MAX_FLOW_DATA_RECORD, MAX_FLOW_HEADER_RECORD } from '../../../src/engine/protocol/tcp-flows.js';
import { CID_LENGTH } from '../../../src/engine/transport/quic/config.js';
import { MAX_FRAME_PAYLOAD } from '../../../src/engine/transport/quic/framing.js';
import { MAC_LENGTH } from '../../../src/engine/transport/quic/retry.js';
import { RESETS_PER_SECOND } from '../../../src/engine/transport/quic/stateless-reset.js';

const header = readFileSync(fileURLToPath(new URL('../../../src/engine/native/cpp/quic-core.h', import.meta.url)), 'utf8');

/** kPumpFastStart → FAST_START (after the prefix is cut). */
const snake = (name: string) => name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();

/** `enum Name : type { kA = 1, ... }` as [name without its prefix, value] pairs. */
function cEnum(name: string, prefix: (member: string) => string): [string, number][] {
  const body = new RegExp(`enum ${name}\\b[^{]*\\{([^}]*)\\}`).exec(header)?.[1];
  if (!body) throw new Error(`enum ${name} not found in quic-core.h`);
  return [...body.replace(/\/\/[^\n]*/g, '').matchAll(/(k\w+)\s*=\s*(\d+)/g)].map(([, member, value]) => [
    snake(member.slice(prefix(member).length)),
    Number(value),
  ]);
}

function constants(prefix: string): [string, number][] {
  return [...header.matchAll(new RegExp(`constexpr uint8_t ${prefix}(\\w+) = (0x[0-9a-fA-F]+|\\d+);`, 'g'))].map(([, name, value]) => [
    snake(name),
    Number(value),
  ]);
}

const sorted = (pairs: [string, number][]) => Object.fromEntries([...pairs].sort(([a], [b]) => (a < b ? -1 : 1)));
const duplicates = (pairs: [string, number][]) => pairs.filter(([, v], i) => pairs.findIndex(([, w]) => w === v) !== i);

describe('the addon and JS agree on the numbers of their records', () => {
  it.each([
    ['EventType', QuicEvent, () => 'kEv'],
    ['PumpEvent', QuicPumpEvent, (m: string) => (m.startsWith('kPump') ? 'kPump' : 'k')],
    ['AnswerSlot', ANSWER_STATE, () => 'kAns'],
    ['BodyOutcome', BODY_END, () => 'kBody'],
  ] as const)('enum %s: every member once, with the value JS uses', (name, js, prefix) => {
    const pairs = cEnum(name, prefix);
    expect(duplicates(pairs)).toEqual([]);
    expect(sorted(pairs)).toEqual(sorted(Object.entries(js)));
  });

  it('tcp-flows record types', () => {
    expect(sorted(constants('kFlow').filter(([n]) => !n.startsWith('MAX')))).toEqual(sorted(Object.entries(FlowRecord)));
  });

  // The limits each side enforces on the same bytes: a record, frame, line or head the addon takes
  // and JS refuses (or the other way) would fail a stream only on one path.
  it.each([
    ['quic-core.h', 'kMaxFramePayload', MAX_FRAME_PAYLOAD],
    ['quic-core.h', 'kMaxRecord', MAX_RECORD],
    ['quic-core.h', 'kMaxFlowHeader', MAX_FLOW_HEADER_RECORD],
    ['quic-core.h', 'kMaxFlowData', MAX_FLOW_DATA_RECORD],
    ['http1-answer.cc', 'kMaxLine', MAX_LINE],
    ['http1-answer.cc', 'kMaxFastHead', MAX_FAST_HEAD],
    ['http1-answer.cc', 'kMaxSizeDigits', MAX_SIZE_DIGITS],
    ['http1-answer.cc', 'kMaxExtensions', MAX_EXTENSIONS],
    // The ngtcp2 listener's and the quiche listener's: connection IDs, retry tokens, resets.
    ['quicserver.cc', 'kCidLength', CID_LENGTH],
    ['quicserver.cc', 'kMacLength', MAC_LENGTH],
    ['quicserver.cc', 'kResetsPerSecond', RESETS_PER_SECOND],
  ] as const)('%s %s is the JS limit', (file, name, js) => {
    const source = file === 'quic-core.h' ? header : readFileSync(fileURLToPath(new URL(`../../../src/engine/native/cpp/${file}`, import.meta.url)), 'utf8');
    const expr = new RegExp(`constexpr \\w+ ${name} = ([\\d *]+);`).exec(source)?.[1];
    expect(expr, `${name} in ${file}`).toBeDefined();
    expect(expr!.split('*').reduce((product, factor) => product * Number(factor), 1)).toBe(js);
  });
});
