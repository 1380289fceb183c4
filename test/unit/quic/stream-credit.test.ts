// Stream credit comes back for every stream a side opened and reset, whether or not a byte of it
// crossed: over a connection's life a side opens far more streams than the peer's limit (1,000).
import { afterEach, describe, expect, it } from 'vitest';
import { collect, connectPair, type Pair } from './support.js';

describe('stream credit', () => {
  const open: Pair[] = [];
  afterEach(async () => {
    for (const p of open.splice(0)) await p.close();
  });

  it.each([
    ['client', 'before its first byte'],
    ['server', 'before its first byte'],
    ['client', 'after one byte'],
    ['server', 'after one byte'],
  ] as const)(
    'the %s opens and resets 1,200 streams, each %s, then opens one more that carries bytes',
    async (side, when) => {
      const p = await connectPair();
      open.push(p);
      const [opener, acceptor] = side === 'client' ? [p.client, p.server] : [p.server, p.client];
      // Every stream the acceptor sees: the reset ones fail, the last one says hello.
      const hello = new Promise<string>((resolve) =>
        acceptor.onStream((s) => {
          s.on('error', () => {});
          collect(s).then(
            (b) => b.toString() === 'hello' && resolve('hello'),
            () => {},
          );
        }),
      );
      // Each open is bounded: credit that never comes back fails the test, not a loaded machine
      // (the one credit-starved open past 1,000 waited more than 5 s at load 14).
      for (let i = 0; i < 1200; i++) {
        const s = await opener.openStream({ signal: AbortSignal.timeout(20_000) });
        s.on('error', () => {});
        if (when === 'after one byte') {
          s.write('x');
          // The byte leaves with the turn's flush, before the reset.
          await new Promise((r) => setImmediate(r));
        }
        s.destroy();
      }
      const s = await opener.openStream({ signal: AbortSignal.timeout(20_000) });
      s.on('error', () => {});
      s.end('hello');
      expect(await hello).toBe('hello');
    },
    60_000,
  );
});
