import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, PROTOCOLS, startConnector, startEdge, freePort } from '../../helpers/processes.js';
import { startBannerEchoServer, type Running } from '../../helpers/origins.js';

describe.each(PROTOCOLS)('over %s', (protocol) => {
  let home: string;
  let cleanup: () => void;
  const procs: OxyProcess[] = [];
  let sshd: Running<unknown>;
  let localPort: number;

  beforeAll(async () => {
    ({ home, cleanup } = tempHome());
    sshd = await startBannerEchoServer();
    await oxyOk(home, ['tunnel', 'create', 'bastion']);
    await oxyOk(home, ['tunnel', 'route', 'dns', 'bastion', 'ssh.example.com']);
    const config = join(home, 'bastion.yml');
    writeFileSync(config, `ingress:\n  - hostname: ssh.example.com\n    service: ssh://127.0.0.1:${sshd.port}\n  - service: http_status:404\n`);
    const e = await startEdge(home);
    procs.push(e.edge);
    procs.push((await startConnector(home, e.tunnelPort, ['--config', config, 'bastion'], 4, protocol)).connector);
    localPort = await freePort();
    const access = new OxyProcess(home, [
      'access',
      'tcp',
      '--hostname',
      'ssh.example.com',
      '--url',
      `127.0.0.1:${localPort}`,
      '--edge',
      `http://127.0.0.1:${e.httpPort}`,
    ]);
    procs.push(access);
    await access.waitFor(/Start Websocket listener/);
  });
  afterAll(async () => {
    await Promise.all(procs.map((p) => p.stop()));
    await sshd.close();
    cleanup();
  });

  describe('tcp:// ingress services through access tcp', () => {
    it('carry an SSH-like byte stream both ways, banner first', async () => {
      const socket = connect(localPort, '127.0.0.1');
      const payload = randomBytes(4 * 1024 * 1024);
      const banner = 'SSH-2.0-OxyTest_1.0\r\n';
      const received: Buffer[] = [];
      let total = 0;
      const done = new Promise<void>((resolve, reject) => {
        socket.on('data', (d: Buffer) => {
          received.push(d);
          total += d.length;
          if (total === banner.length + payload.length) resolve();
        });
        socket.on('error', reject);
      });
      // The server speaks first, as sshd does; then the client's bytes and its FIN (half-close).
      socket.end(payload);
      await done;
      const all = Buffer.concat(received);
      expect(all.subarray(0, banner.length).toString()).toBe(banner);
      expect(createHash('sha256').update(all.subarray(banner.length)).digest('hex')).toBe(createHash('sha256').update(payload).digest('hex'));
      socket.destroy();
    });

    it('several sessions at once stay separate', async () => {
      const session = (tag: string) =>
        new Promise<string>((resolve, reject) => {
          const s = connect(localPort, '127.0.0.1');
          let text = '';
          s.setEncoding('utf8').on('data', (d) => (text += d));
          s.on('end', () => resolve(text));
          s.on('error', reject);
          s.end(`${tag}\n`);
        });
      const tags = Array.from({ length: 8 }, (_, i) => `session-${i}`);
      const outputs = await Promise.all(tags.map(session));
      outputs.forEach((out, i) => expect(out).toBe(`SSH-2.0-OxyTest_1.0\r\n${tags[i]}\n`));
    });
  });
});
