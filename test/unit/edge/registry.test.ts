// Which connection a new stream takes (registry.ts pickLocal): streams spread over a tunnel's
// connectors and pack onto one connection of each (PACK_STREAMS before the next by index), a
// silent connection ranks after every answering one, and a connection holding an idle tcp-flows
// stream wins. The connections are stand-ins holding the figures the pick reads (streams open,
// time unanswered): the rule is arithmetic over them, the transports are tested elsewhere.
import { expect, it } from 'vitest';
import { LIVENESS_MS, PACK_STREAMS, TunnelRegistry, type LiveConnection } from '../../../src/engine/edge/registry.js';
import type { TunnelConnection } from '../../../src/engine/transport/types.js';

function connection(connectorId: string, connIndex: number) {
  const state = { streams: 0, unansweredMs: 0, closed: false };
  const conn = {
    get isClosed() {
      return state.closed;
    },
    unansweredMs: () => state.unansweredMs,
    activeStreams: () => state.streams,
  } as unknown as TunnelConnection;
  const live: LiveConnection = { id: `${connectorId}-${connIndex}`, tunnelId: 'T', connectorId, connIndex, conn, draining: false, http1: true };
  return { live, state };
}

/** Opens `n` streams one after another, each on the connection picked then: the connection ids, in order. */
function open(registry: TunnelRegistry, all: ReturnType<typeof connection>[], n: number): string[] {
  const picked: string[] = [];
  for (let i = 0; i < n; i++) {
    const live = registry.pickLocal('T', true)!;
    all.find((c) => c.live === live)!.state.streams++;
    picked.push(live.id);
  }
  return picked;
}

function count(ids: string[]): Record<string, number> {
  const m: Record<string, number> = {};
  for (const id of ids) m[id] = (m[id] ?? 0) + 1;
  return m;
}

it("one connector's streams go to one connection until it holds PACK_STREAMS, then the next", () => {
  const registry = new TunnelRegistry();
  // Registered out of order: the index decides, not the order.
  const all = [connection('a', 2), connection('a', 0), connection('a', 3), connection('a', 1)];
  for (const c of all) registry.add(c.live);
  expect(count(open(registry, all, PACK_STREAMS))).toEqual({ 'a-0': PACK_STREAMS });
  // Then a-1, a-2, a-3 in turn; once all hold PACK_STREAMS, the fewest (one more each).
  expect(count(open(registry, all, 3 * PACK_STREAMS + 4))).toEqual({ 'a-0': 1, 'a-1': PACK_STREAMS + 1, 'a-2': PACK_STREAMS + 1, 'a-3': PACK_STREAMS + 1 });
});

it('streams spread over the connectors of a tunnel (the one with the fewest), packed within each', () => {
  const registry = new TunnelRegistry();
  const all = [connection('a', 0), connection('a', 1), connection('b', 0), connection('b', 1)];
  for (const c of all) registry.add(c.live);
  expect(count(open(registry, all, 20))).toEqual({ 'a-0': 10, 'b-0': 10 });
  // b's streams end: b takes the next ones until it holds as many as a.
  all[2]!.state.streams = 0;
  expect(count(open(registry, all, 10))).toEqual({ 'b-0': 10 });
});

it('a closed, draining or silent connection is passed over while another answers', () => {
  const registry = new TunnelRegistry();
  const all = [connection('a', 0), connection('a', 1), connection('a', 2)];
  for (const c of all) registry.add(c.live);
  all[0]!.state.unansweredMs = LIVENESS_MS + 1;
  expect(open(registry, all, 1)).toEqual(['a-1']);
  all[1]!.state.closed = true;
  expect(open(registry, all, 1)).toEqual(['a-2']);
  all[2]!.live.draining = true;
  // Only the silent one is left: used rather than none.
  expect(open(registry, all, 1)).toEqual(['a-0']);
  all[0]!.state.closed = true;
  expect(registry.pickLocal('T', true)).toBeUndefined();
});

it('a connection holding an idle tcp-flows stream wins (its next flow opens no stream)', () => {
  const registry = new TunnelRegistry();
  const all = [connection('a', 0), connection('a', 1)];
  for (const c of all) registry.add(c.live);
  all[1]!.state.streams = 1;
  all[1]!.live.idleStreams = 1;
  expect(registry.pickLocal('T', true)?.id).toBe('a-1');
});

it('canPick says whether pick finds a connection: any of its own neither closed nor draining, else a peer edge', () => {
  const peer = connection('p', 0);
  let forwarding = false;
  const registry = new TunnelRegistry({ pick: () => (forwarding ? peer.live : undefined) });
  const agree = () => expect(registry.canPick('T')).toBe(registry.pick('T') !== undefined);
  expect(registry.canPick('T')).toBe(false);
  agree();
  const all = [connection('a', 0), connection('a', 1)];
  for (const c of all) registry.add(c.live);
  // A silent or probing connection is still picked when no other answers.
  all[0]!.state.unansweredMs = LIVENESS_MS + 1;
  all[1]!.live.probing = true;
  expect(registry.canPick('T')).toBe(true);
  agree();
  all[0]!.state.closed = true;
  all[1]!.live.draining = true;
  expect(registry.canPick('T')).toBe(false);
  agree();
  forwarding = true;
  expect(registry.canPick('T')).toBe(true);
  agree();
});
