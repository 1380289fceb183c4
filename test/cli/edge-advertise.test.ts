/**
 * `edge run --advertise` (and `advertise:` in the edge's YAML file): each edge records the
 * address connectors dial to reach it, so two edges sharing a data directory name themselves
 * correctly in the edge registry and in tokens. A malformed value is refused before anything
 * starts or is written.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { oxy, oxyOk, tempHome } from '../helpers/cli.js';
import { LOOPBACK_EDGE, OxyProcess } from '../helpers/processes.js';
import { until } from '../helpers/until.js';

let home: string;
let cleanup: () => void;
const procs: OxyProcess[] = [];
beforeEach(() => ({ home, cleanup } = tempHome()));
afterEach(async () => {
  await Promise.all(procs.splice(0).map((p) => p.stop('SIGKILL')));
  cleanup();
});

describe('edge run --advertise', () => {
  it('each edge of one data directory records its own address, and the tokens (tunnel token, warp enroll) name both', async () => {
    await oxyOk(home, ['tunnel', 'create', 'web']);
    for (const [location, advertise] of [
      ['edge1', 'edge1.example.com:7844'],
      ['edge2', '[2001:db8::2]:7846'],
    ]) {
      const p = new OxyProcess(home, [...LOOPBACK_EDGE, '--no-quic', '--location', location, '--advertise', advertise]);
      procs.push(p);
      await p.waitFor(/Edge running/);
    }
    const edges = await until(async () => {
      const list = JSON.parse(await oxyOk(home, ['edge', 'list', '-o', 'json'])) as { location: string; tunnel_address: string }[];
      return list.length === 2 ? list : undefined;
    });
    expect(edges.map((e) => [e.location, e.tunnel_address])).toEqual([
      ['edge1', 'edge1.example.com:7844'],
      ['edge2', '[2001:db8::2]:7846'],
    ]);
    const token = JSON.parse(Buffer.from((await oxyOk(home, ['tunnel', 'token', 'web'])).trim(), 'base64').toString()) as { e: string };
    expect(token.e.split(',').sort()).toEqual(['[2001:db8::2]:7846', 'edge1.example.com:7844']);
    const device = JSON.parse(Buffer.from((await oxyOk(home, ['warp', 'enroll', 'laptop'])).trim(), 'base64').toString()) as { e: string };
    expect(device.e.split(',').sort()).toEqual(['[2001:db8::2]:7846', 'edge1.example.com:7844']);
  });

  it('refuses a malformed address on the command line, in the YAML file and in edge init, naming it', async () => {
    const bad = ['edge1.example.com', '0.0.0.0:7844', '[::]:7844', 'edge1:99999', '[edge1]:7844', '300.1.2.3:7844', ':7844', 'a b:1'];
    const runs = await Promise.all(bad.map((value) => oxy(home, [...LOOPBACK_EDGE, '--advertise', value])));
    for (const [i, r] of runs.entries()) {
      expect(r.code, `${bad[i]}: ${r.stderr}`).not.toBe(0);
      expect(r.stderr).toContain(`--advertise ${JSON.stringify(bad[i])} `);
      expect(r.stderr).toContain('give the HOST:PORT connectors dial');
    }
    const file = join(home, 'edge.yml');
    writeFileSync(file, 'advertise: "203.0.113.10"\n');
    const r = await oxy(home, [...LOOPBACK_EDGE, '--config', file]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(`In ${file}: advertise "203.0.113.10" is not HOST:PORT`);
    const init = await oxy(home, ['edge', 'init', '--advertise', '0.0.0.0:7844', '-o', 'json']);
    expect(init.code).not.toBe(0);
    expect(JSON.parse(init.stdout).error).toMatchObject({ code: 'OXY_ERR_EDGE_ADVERTISE', message: expect.stringContaining('is a wildcard address') });
    // Refused before anything was written: no identity (the edge runs above were refused before creating one).
    expect(existsSync(join(home, 'edge'))).toBe(false);
  });
});
