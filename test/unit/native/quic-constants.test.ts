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
import { FlowRecord } from '../../../src/engine/protocol/tcp-flows.js';

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
});
