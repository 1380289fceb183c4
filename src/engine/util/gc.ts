import { setFlagsFromString } from 'node:v8';

/**
 * V8 settings for a process that moves bytes (edge, connector, quick tunnel): call once, before
 * traffic. Every socket read makes an ArrayBuffer, which V8 counts as external memory until the
 * array-buffer sweeper frees it. That sweep runs as a background job by default; when the cores
 * are busy (here: always, under load) the job starts late, the count climbs past its limit (the
 * count at the last full GC + 64 MB) and V8 starts a full mark-compact, about every 30 MB moved.
 * A process that fell into that state stayed there: 10–20 full GCs per 384 MiB and ~1.7× the CPU
 * per MB of its twin (docs/decisions.md, "Bulk: the full GCs"). Sweeping inline, during the
 * scavenge that found the buffers dead, keeps the count true. `OXY_V8_CONCURRENT_AB_SWEEP=1`
 * keeps V8's default (for A/B).
 */
export function tuneGcForDataPlane(): void {
  if (process.env.OXY_V8_CONCURRENT_AB_SWEEP === '1') return;
  setFlagsFromString('--no-concurrent-array-buffer-sweeping');
}
