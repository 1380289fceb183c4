/**
 * Where each HA slot belongs over several edges, and when it may go back (connector/spread.ts):
 * the supervisor's moves over real processes are in e2e/store/edge-kill-load; here the rules
 * of the state machine — a failed dial or a dropped connection moves the slot on, a return
 * that does not last STABLE_MS doubles the hold before the next one.
 */
import { afterEach, expect, it, vi } from 'vitest';
import { EdgeSpread, RETURN_TIMING, STABLE_MS } from '../../../src/engine/connector/spread.js';
import type { TunnelConnection } from '../../../src/engine/transport/types.js';

afterEach(() => vi.useRealTimers());

/** Two edges whose dials fail while `down` names them. */
function twoEdges() {
  const down = new Set<number>();
  const dialed: number[] = [];
  const dialer = (edge: number) => async () => {
    dialed.push(edge);
    if (down.has(edge)) throw new Error(`edge ${edge} refused`);
    return {} as TunnelConnection;
  };
  return { spread: new EdgeSpread([dialer(0), dialer(1)], ['a:7844', 'b:7844']), down, dialed };
}

it('4 slots over 2 edges: 2 + 2; a failed dial moves the slot to the other edge, and it is away until it returned', async () => {
  const { spread, down, dialed } = twoEdges();
  expect([0, 1, 2, 3].map((i) => spread.at(i))).toEqual([0, 1, 0, 1]);
  down.add(1);
  await expect(spread.dial(1, new AbortController().signal)).rejects.toThrow('edge 1 refused');
  expect(spread.at(1)).toBe(0);
  expect(spread.away(1)).toBe(true);
  await spread.dial(1, new AbortController().signal);
  expect(dialed).toEqual([1, 0]);
  // Trying home does not move the slot; only `returned` does.
  down.delete(1);
  await spread.dialHome(1, new AbortController().signal);
  expect(spread.away(1)).toBe(true);
  spread.returned(1);
  expect([spread.at(1), spread.away(1)]).toEqual([1, false]);
  // A dropped connection moves the slot on at once (its next dial goes to the other edge).
  spread.lost(3, 1);
  expect(spread.at(3)).toBe(0);
  // A drop reported for an edge the slot no longer dials changes nothing.
  spread.lost(3, 1);
  expect(spread.at(3)).toBe(0);
});

it('an edge that flaps holds its slots off longer each time (10 s doubling to 5 min); a return that lasts resets it', () => {
  vi.useFakeTimers();
  const { spread } = twoEdges();
  expect(spread.holdMs(1)).toBe(RETURN_TIMING.firstMs);
  const flap = () => {
    spread.lost(1, 1); // home dropped
    spread.returned(1);
    vi.advanceTimersByTime(1000);
  };
  spread.lost(1, 1);
  spread.returned(1);
  vi.advanceTimersByTime(1000);
  const holds: number[] = [];
  for (let i = 0; i < 8; i++) {
    flap();
    holds.push(spread.holdMs(1));
  }
  expect(holds).toEqual([10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000]);
  // Home held for STABLE_MS: the next loss is no flap, and the hold is back to the first pause.
  vi.advanceTimersByTime(STABLE_MS);
  spread.lost(1, 1);
  expect(spread.holdMs(1)).toBe(RETURN_TIMING.firstMs);
});

it('with one edge nothing moves', async () => {
  const spread = new EdgeSpread([async () => Promise.reject(new Error('down'))], ['a:7844']);
  await expect(spread.dial(2, new AbortController().signal)).rejects.toThrow('down');
  spread.lost(2, 0);
  expect([spread.at(2), spread.away(2)]).toEqual([0, false]);
});

it('an edge that refuses is left for edges that do not, until it accepts again; all refusing is final', () => {
  const ok = async () => ({}) as TunnelConnection;
  const spread = new EdgeSpread([ok, ok, ok], ['a:7844', 'b:7844', 'c:7844']);
  const no = (edge: number) => new Error(`edge ${edge} refuses`);
  expect(spread.refused(1, 1, no(1))).toEqual({ first: true, all: false });
  expect(spread.at(1)).toBe(2);
  // Slot 2's edge refuses too: it skips edge 0's neighbour that refuses (1) and lands on 0.
  expect(spread.refused(2, 2, no(2))).toEqual({ first: true, all: false });
  expect(spread.at(2)).toBe(0);
  // Slot 1 sat on edge 2 and is refused there again: edge 0, never back to refusing 1.
  expect(spread.refused(1, 2, no(2))).toEqual({ first: false, all: false });
  expect(spread.at(1)).toBe(0);
  // A dropped connection moves a slot only to an edge that does not refuse: here, its own.
  spread.lost(0, 0);
  expect(spread.at(0)).toBe(0);
  // Edge 1 accepts a slot again (a try home): the others may go there once more.
  expect(spread.accepted(1)).toBe(true);
  expect(spread.accepted(1)).toBe(false);
  expect(spread.refused(0, 0, no(0)).all).toBe(false);
  expect(spread.at(0)).toBe(1);
  expect(spread.refused(0, 1, no(1))).toEqual({ first: true, all: true });
  expect(spread.refusals()).toBe('c:7844: edge 2 refuses; a:7844: edge 0 refuses; b:7844: edge 1 refuses');
});
