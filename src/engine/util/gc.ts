import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * V8 settings for a process that moves bytes (edge, connector, quick tunnel): call once per
 * thread (each isolate has its own heap), before traffic. Every socket read makes an ArrayBuffer,
 * which V8 counts as external memory until the array-buffer sweeper frees it. That sweep runs as
 * a background job by default; when the cores are busy (here: always, under load) the job starts
 * late, the count climbs past its limit (the count at the last full GC + 64 MB) and V8 starts a
 * full mark-compact, about every 30 MB moved. A process that fell into that state stayed there:
 * 10–20 full GCs per 384 MiB and ~1.7× the CPU per MB of its twin (docs/decisions.md, "Bulk: the
 * full GCs"). Sweeping inline, during the scavenge that found the buffers dead, keeps the count
 * true. `OXY_V8_CONCURRENT_AB_SWEEP=1` keeps V8's default (for A/B).
 *
 * It also arms the external-memory pacer below (`OXY_V8_MINOR_GC=0` leaves it off).
 */
export function tuneGcForDataPlane(): void {
  if (process.env.OXY_V8_CONCURRENT_AB_SWEEP !== '1') setFlagsFromString('--no-concurrent-array-buffer-sweeping');
  if (process.env.OXY_V8_MINOR_GC !== '0' && !minorGc) {
    // V8's gc() for this isolate, without a global `gc` in any context made later.
    setFlagsFromString('--expose-gc');
    try {
      minorGc = runInNewContext('gc') as typeof minorGc;
    } finally {
      setFlagsFromString('--no-expose-gc');
    }
  }
}

let minorGc: ((options: { type: 'minor' }) => void) | undefined;
let sinceCheck = 0;
let baseline = 0;
/** Bytes noted between two reads of V8's external-memory count (a read costs ~1 µs). */
const CHECK_EVERY = 4 * 1024 * 1024;
/** External memory grown by this much since the last scavenge: run one. */
const SCAVENGE_AFTER = 16 * 1024 * 1024;

/**
 * Paces scavenges by the bytes JS handles as ArrayBuffers, where JS itself allocates too little
 * for V8 to scavenge by itself: the QUIC addon's event batches (a download's bytes on the edge,
 * an upload's on the connector) and the socket reads JS writes into it. With the young generation
 * grown to its 16 MB (small requests grow it) a one-stream QUIC transfer went 512 MiB without a
 * single scavenge, so nothing freed the dead batches but the full GCs that the external-memory
 * limit starts: 7–13 per 512 MiB on the edge, ~1 ms/MB. A scavenge after every 16 MB the count
 * grew frees them while they are young (docs/decisions.md "QUIC bulk (session 9)").
 * `bytes`: ArrayBuffer bytes JS just got or handled. A no-op unless tuneGcForDataPlane armed it.
 */
export function noteExternalBytes(bytes: number): void {
  if (!minorGc) return;
  sinceCheck += bytes;
  if (sinceCheck < CHECK_EVERY) return;
  sinceCheck = 0;
  const external = getHeapStatistics().external_memory;
  if (external < baseline) {
    baseline = external; // a GC of V8's own freed them
  } else if (external - baseline >= SCAVENGE_AFTER) {
    minorGc({ type: 'minor' });
    baseline = getHeapStatistics().external_memory;
  }
}
