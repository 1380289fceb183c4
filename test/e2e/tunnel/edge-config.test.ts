import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { oxy, oxyJson, oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, startConnector } from '../../helpers/processes.js';

let home: string;
let cleanup: () => void;
let procs: OxyProcess[];
beforeEach(() => {
  ({ home, cleanup } = tempHome());
  procs = [];
});
afterEach(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  cleanup();
});

describe('edge run --config', () => {
  it('takes its settings from the YAML file, flags winning over it', async () => {
    const file = join(home, 'edge.yml');
    writeFileSync(
      file,
      'tunnel-listen: 127.0.0.1:0\nhttp-listen: 127.0.0.1:0\nmetrics: 127.0.0.1:0\nlocation: fra\nquic: false\nip-limits:\n  max-flows: 1000\n  reassembly-bytes: 4194304\n  reassembly-timeout-ms: 2000\n',
    );
    await oxyOk(home, ['tunnel', 'create', 'web']);
    const edge = new OxyProcess(home, ['edge', 'run', '--config', file, '--location', 'ams']);
    procs.push(edge);
    const [, port] = await edge.waitFor(/Tunnel listener ready protocol=http2 address=127\.0\.0\.1:(\d+)/);
    await edge.waitFor(/Edge running/);
    expect(edge.output).not.toContain('protocol=quic');
    procs.push((await startConnector(home, Number(port), ['--hello-world', 'web'], 4)).connector);
    const [web] = await oxyJson<{ connections: { colo_name: string }[] }[]>(home, ['tunnel', 'list']);
    expect(new Set(web.connections.map((c) => c.colo_name))).toEqual(new Set(['ams']));
  });

  it('refuses an unknown key or a wrong type, naming it', async () => {
    const file = join(home, 'edge.yml');
    writeFileSync(file, 'tunnel-listen: 127.0.0.1:0\nlisten-http: 1\n');
    const unknown = await oxy(home, ['edge', 'run', '--config', file]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toContain('unknown key listen-http');
    writeFileSync(file, 'quic: maybe\n');
    const typed = await oxy(home, ['edge', 'run', '--config', file]);
    expect(typed.stderr).toContain('quic must be true or false');
    writeFileSync(file, 'ip-limits:\n  reassembly-byte: 1\n');
    const limit = await oxy(home, ['edge', 'run', '--config', file]);
    expect(limit.stderr).toContain(
      'ip-limits.reassembly-byte must be one of max-flows, max-flows-per-tenant, max-flows-per-session, reassembly-bytes, reassembly-bytes-per-tenant, reassembly-timeout-ms',
    );
  });
});
