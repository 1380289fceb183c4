import { afterEach, describe, expect, it } from 'vitest';
import { drainHash, http2Pair, pumpPattern, type Pair } from './helpers.js';

// The read-ahead's placement is the process's, decided by its first relay: this file (its own
// process under the forks pool) pins the relays to the JS thread's loop, where small traffic
// runs them by default, so bulk both ways must not deadlock there either.
process.env.OXY_H2_READAHEAD = 'inline';

let pair: Pair | undefined;
afterEach(async () => {
  await pair?.close();
  pair = undefined;
});

describe('HTTP/2 read-ahead on the JS thread (OXY_H2_READAHEAD=inline)', () => {
  it('8 streams carry 16 MB each way at once: no deadlock', async () => {
    pair = await http2Pair();
    const total = 16 * 1024 * 1024;
    const one = async (): Promise<void> => {
      const accepted = pair!.connector.acceptStream({ timeoutMs: 5000 });
      const edgeStream = await pair!.edge.openStream();
      const connStream = await accepted;
      const [sentDown, sentUp, gotDown, gotUp] = await Promise.all([
        pumpPattern(edgeStream, total),
        pumpPattern(connStream, total),
        drainHash(connStream),
        drainHash(edgeStream),
      ]);
      expect(gotDown).toEqual({ bytes: total, sha256: sentDown });
      expect(gotUp).toEqual({ bytes: total, sha256: sentUp });
    };
    await Promise.all(Array.from({ length: 8 }, one));
  }, 60_000);
});
