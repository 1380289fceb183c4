// The edge's answers to its public HTTP/1 clients and the connection's close: where the connection
// closes after an answer the addon writes (the request's `Connection: close`, or the client's FIN
// in with its request), the addon sends the edge's FIN on the answer's last bytes (MSG_MORE, then
// shutdown, in the turn it writes them), so the client finds the FIN with the answer and is not the
// side that closes first (and keeps the TIME_WAIT). Before, JS ended the socket a turn later: 4-124
// of 400 clients found the FIN with the answer. OXY_EDGE_ANSWER_FIN=0: JS's end only, as before.
// The three ways in: a new connection whose request says `Connection: close` (JS reads it), a
// request and the client's FIN in one segment (JS reads it), and a keep-alive request then a request
// and the FIN (the addon reads that one: its poll sees the FIN with it, EPOLLRDHUP, and reads the EOF
// in the same turn).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { finProbeScript } from '../../helpers/fin-probe.js';
import { edgePumpTunnel } from './edge-pump-support.js';

const { tunnel } = edgePumpTunnel();

// The probe, in each of the three ways in.
const CLIENT = finProbeScript({ address: '127.0.0.1', path: '/a{i}', host: 'app.example.com', answerEnds: 'hello /a{i}' });

const [CLIENTS, EACH] = [16, 25];
const N = CLIENTS * EACH;
const MODES = ['close', 'half', 'half-read'] as const;

describe("the edge's FIN behind the last answer its addon writes to a public client", () => {
  for (const [name, env, together] of [
    ['with the answer', {}, true],
    ['a turn later (OXY_EDGE_ANSWER_FIN=0)', { OXY_EDGE_ANSWER_FIN: '0' }, false],
  ] as const)
    it(`${N} connections each way in: every answer whole, the FIN ${name}`, async () => {
      const e = await tunnel(env);
      const counts: Record<string, string> = {};
      for (const mode of MODES) {
        const r = await promisify(execFile)('python3', ['-c', CLIENT, String(e.httpPort), String(CLIENTS), String(EACH), mode], { timeout: 60_000 });
        expect(r.stderr).toBe('');
        const [eof, later] = r.stdout.trim().split(' ').map(Number);
        expect(eof! + later!).toBe(N);
        counts[mode] = `${eof} found the FIN, ${later} not yet`;
      }
      expect(e.edge.output).toMatch(/client of stream \d+ read by the transport/);
      // Counts, not time: the answer's last bytes and the FIN go in one segment. Session 23, load
      // 5-6: 400 of 400 in each way with it; 4-124 (close), 7-273 (half) without.
      if (together) for (const mode of MODES) expect(counts[mode], `${mode}: ${counts[mode]}`).toMatch(new RegExp(`^(${N}|3[6-9]\\d) found`));
      console.log(name, counts);
    }, 120_000);
});
