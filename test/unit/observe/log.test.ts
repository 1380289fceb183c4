// A logged error reads once: our errors embed their cause's message, and the line must not
// repeat it (pino's own serializer appends every cause). A cause the message does not hold is kept.
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/engine/observe/log.js';

function lineOf(err: Error): string {
  let out = '';
  createLogger({ stream: { write: (s: string) => (out += s) } }).error({ connIndex: 1, err }, 'Unable to establish connection with the edge');
  return out;
}

describe('error= in log lines', () => {
  it('names an embedded cause once', () => {
    const cause = new Error('TLS alert 48 (unknown CA)');
    const line = lineOf(new Error(`QUIC handshake with 127.0.0.1:7844 failed: ${cause.message}`, { cause }));
    expect(line).toMatch(
      / ERR Unable to establish connection with the edge connIndex=1 error="QUIC handshake with 127\.0\.0\.1:7844 failed: TLS alert 48 \(unknown CA\)"\n$/,
    );
  });

  it('appends a cause the message does not hold, down the chain', () => {
    const root = new Error('connect ECONNREFUSED 127.0.0.1:9');
    const line = lineOf(new Error('Dial failed', { cause: new Error('edge 127.0.0.1:9 unreachable', { cause: root }) }));
    expect(line).toContain('error="Dial failed: edge 127.0.0.1:9 unreachable: connect ECONNREFUSED 127.0.0.1:9"');
  });
});
