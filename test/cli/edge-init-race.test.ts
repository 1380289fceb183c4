import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { oxy, tempHome } from '../helpers/cli.js';

let home: string;
let cleanup: () => void;
beforeEach(() => ({ home, cleanup } = tempHome()));
afterEach(() => cleanup());

// Two edges started at once on a fresh data directory both create the identity: neither may end
// up with one's certificate beside the other's key.
it('edge init run four times at once leaves one consistent identity', async () => {
  const results = await Promise.all([1, 2, 3, 4].map(() => oxy(home, ['edge', 'init'])));
  const won = results.filter((r) => r.code === 0);
  expect(won.length).toBeGreaterThanOrEqual(1);
  for (const r of results.filter((x) => x.code !== 0)) expect(r.stderr).toContain('already exists');
  const dir = join(home, 'edge');
  const cert = new X509Certificate(readFileSync(join(dir, 'cert.pem')));
  expect(cert.checkPrivateKey(createPrivateKey(readFileSync(join(dir, 'key.pem'))))).toBe(true);
  const ca = new X509Certificate(readFileSync(join(dir, 'ca.pem')));
  expect(cert.verify(ca.publicKey)).toBe(true);
  expect(ca.checkPrivateKey(createPrivateKey(readFileSync(join(dir, 'ca-key.pem'))))).toBe(true);
});
