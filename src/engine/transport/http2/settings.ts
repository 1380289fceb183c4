/**
 * HTTP/2 flow-control and framing settings for tunnels. Node's defaults (64 KiB stream and
 * connection windows, 16 KiB frames, 10 MB session memory) cap a single stream at a
 * fraction of what the TLS socket carries, worst in the direction whose receiver is slow to
 * return WINDOW_UPDATEs. Both peers use these; bench/transport-throughput.js measures the
 * effect against plain TLS.
 */
import type { Settings } from 'node:http2';

/** Per-stream receive window advertised in SETTINGS_INITIAL_WINDOW_SIZE. */
export const STREAM_WINDOW = 8 * 1024 * 1024;
/** Connection-level receive window, set with session.setLocalWindowSize(). */
export const CONNECTION_WINDOW = 32 * 1024 * 1024;
/** SETTINGS_MAX_FRAME_SIZE we accept: fewer, larger DATA frames. (Max 2^24-1.) */
export const MAX_FRAME_SIZE = 1024 * 1024;
/** Streams the connector lets the edge keep open at once (all kinds, both directions). */
export const MAX_CONCURRENT_STREAMS = 1000;
/**
 * Node's per-session memory cap, in MB (nghttp2 buffers + pending writes). Above it Node
 * refuses new streams with ENHANCE_YOUR_CALM; the windows above bound what a peer can make
 * us buffer, so allow a multiple of the connection window.
 */
export const MAX_SESSION_MEMORY_MB = 4 * (CONNECTION_WINDOW / (1024 * 1024));

export function tunnelSettings(overrides: Settings = {}): Settings {
  return {
    enablePush: false,
    initialWindowSize: STREAM_WINDOW,
    maxFrameSize: MAX_FRAME_SIZE,
    maxConcurrentStreams: MAX_CONCURRENT_STREAMS,
    ...overrides,
  };
}

/** Tuning knobs a caller (or a benchmark) may override. */
export interface Http2TuningOptions {
  settings?: Settings;
  connectionWindow?: number;
  maxSessionMemoryMb?: number;
}

/** Internal request headers on the edge → connector HTTP/2 requests. */
export const H2_HEADER_STREAM = 'oxy-stream';
export const H2_HEADER_REVERSE_ID = 'oxy-reverse-id';
export const H2_STREAM_DATA = 'data';
export const H2_STREAM_REVERSE = 'reverse';
export const H2_STREAM_REVERSE_OPEN = 'reverse-open';
export const H2_STREAM_DATAGRAMS = 'datagrams';
export const H2_PATH = '/oxy/tunnel';
