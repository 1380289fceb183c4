import { expect, it } from 'vitest';
import { withEnv } from '../../helpers/env.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { ngtcp2VethSuite, pumpedBulk } from './ngtcp2-netns.js';

const SERVER = '198.18.24.1';
const SIZE = 8 * 1024 * 1024;

privilegedDescribe("a pump's reads of its fd: up to 256 KiB at once (OXY_PUMP_READ=0: 64 KiB)", () => {
  const pair = ngtcp2VethSuite('oxy-prd', SERVER, '198.18.24.100');

  it('by default each end reads its socket more than 64 KiB at a time, at most 256 KiB; bytes intact both ways', async () => {
    const { client: c, edge } = await withEnv({ OXY_PUMP_READ: undefined }, () => pumpedBulk(pair, SIZE));
    for (const end of [c, edge]) {
      expect(end.pumpReadBytes).toBe(SIZE);
      expect(end.pumpReadMax).toBeGreaterThan(64 * 1024);
      expect(end.pumpReadMax).toBeLessThanOrEqual(256 * 1024);
    }
  }, 60_000);

  it('OXY_PUMP_READ=0: 64 KiB at most, as before; bytes intact both ways', async () => {
    const { client: c, edge } = await withEnv({ OXY_PUMP_READ: '0' }, () => pumpedBulk(pair, SIZE));
    for (const end of [c, edge]) {
      expect(end.pumpReadBytes).toBe(SIZE);
      expect(end.pumpReadMax).toBeLessThanOrEqual(64 * 1024);
      // 8 MiB in 64 KiB reads: 128 at least.
      expect(end.pumpReads).toBeGreaterThanOrEqual(SIZE / (64 * 1024));
    }
  }, 60_000);

  it('OXY_PUMP_READ=BYTES: that many at most (for pairs); bytes intact both ways', async () => {
    const { client: c, edge } = await withEnv({ OXY_PUMP_READ: String(512 * 1024) }, () => pumpedBulk(pair, SIZE));
    for (const end of [c, edge]) {
      expect(end.pumpReadBytes).toBe(SIZE);
      expect(end.pumpReadMax).toBeLessThanOrEqual(512 * 1024);
    }
  }, 60_000);
});
