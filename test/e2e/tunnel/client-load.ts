// Clients of a test edge's public HTTP listener that keep sending, for tests that watch which
// requests succeed around an event (a connector killed, restarted, hung).
import { request } from 'undici';

export interface Sample {
  at: number;
  status: number;
  ms: number;
}

/** Four clients, each sending its next request when the last one ended (given up after `timeoutMs`, as a client would), until stopped. */
export function clientLoad(httpPort: number, timeoutMs = 5000) {
  const samples: Sample[] = [];
  let running = true;
  const client = async () => {
    while (running) {
      const at = Date.now();
      const status = await request(`http://127.0.0.1:${httpPort}/`, { headers: { host: 'app.example.com' }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
        .then(async (r) => (await r.body.text(), r.statusCode))
        .catch(() => 0);
      samples.push({ at, status, ms: Date.now() - at });
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const clients = Array.from({ length: 4 }, client);
  return { samples, stop: async () => ((running = false), await Promise.all(clients)) };
}
