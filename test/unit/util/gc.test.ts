import { constants, PerformanceObserver } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { getHeapStatistics } from 'node:v8';
import { describe, expect, it } from 'vitest';

import { noteExternalBytes, tuneGcForDataPlane } from '../../../src/engine/util/gc.js';

const MiB = 1024 * 1024;

/**
 * Full and minor GCs, and the external-memory count's growth at its peak, while `mib` MiB of
 * ArrayBuffers pass through and die at once with almost no JS allocation beside them (a QUIC
 * bulk transfer's batches), each noted to the pacer or not.
 */
async function run(mib: number, note: boolean): Promise<{ major: number; minor: number; peak: number }> {
  const seen = { major: 0, minor: 0 };
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind;
      if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) seen.major++;
      else if (kind === constants.NODE_PERFORMANCE_GC_MINOR) seen.minor++;
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  const start = getHeapStatistics().external_memory;
  let peak = 0;
  for (let i = 0; i < mib; i++) {
    const b = Buffer.allocUnsafeSlow(MiB);
    b[0] = i;
    if (note) noteExternalBytes(b.length);
    peak = Math.max(peak, getHeapStatistics().external_memory - start);
  }
  await sleep(50); // GC entries are delivered asynchronously
  observer.disconnect();
  return { ...seen, peak };
}

// This file's process only (pool: forks): the flags are V8's, process-wide.
describe('external-memory pacer', () => {
  it('scavenges as noted ArrayBuffers pile up, where V8 alone waits for a full GC', async () => {
    tuneGcForDataPlane();
    const alone = await run(160, false);
    const paced = await run(160, true);
    // Nothing frees unnoted buffers before V8's external-memory limit starts a full GC.
    expect(alone.major).toBeGreaterThan(0);
    // Noted: a scavenge after every 16 MB of growth (checked every 4 MB), no full GC.
    expect(paced.major).toBe(0);
    expect(paced.minor).toBeGreaterThanOrEqual(8);
    expect(paced.peak).toBeLessThan(24 * MiB);
    expect(alone.peak).toBeGreaterThan(paced.peak);
  });
});
