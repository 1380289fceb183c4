import { afterEach, describe, it } from 'vitest';
import { bothWaysOnOneStream, http2Pair, type Pair } from './helpers.js';

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
    await Promise.all(Array.from({ length: 8 }, () => bothWaysOnOneStream(pair!.edge, pair!.connector, 16 * 1024 * 1024)));
  }, 60_000);
});
