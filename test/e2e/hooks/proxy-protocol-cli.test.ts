import net from 'node:net';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PP2_TYPE, encodeProxyV2 } from '../../../src/engine/protocol/proxy-protocol.js';
import { oxyOk, tempHome } from '../../helpers/cli.js';
import { OxyProcess, startConnector, LOOPBACK_EDGE } from '../../helpers/processes.js';
import { curl, startOrigin, type Origin } from './support.js';

// `oxyctl edge run --proxy-protocol` as a real process: both HTTP listeners (forward proxy,
// public hostnames) expect a PROXY v1/v2 header from a load balancer in front of them.
let home: string;
let cleanup: () => void;
let origin: Origin;
const procs: OxyProcess[] = [];
let edge: OxyProcess;
let proxyPort: number;
let httpPort: number;
const HOST = 'lb.example.test';

const APP = `export function start(settings) {
  return {
    proxyProtocol: {
      handleConnection(header, ctx) {
        const tlvs = header.tlvs.map((t) => t.type.toString(16) + '=' + t.value.toString()).join(',');
        settings.log.info({ onramp: ctx.onramp, version: header.version, source: header.source.address + ':' + header.source.port, client: ctx.client.address + ':' + ctx.client.port, tlvs }, 'PROXY header');
      },
    },
  };
}
`;

async function startEdge(args: string[]): Promise<OxyProcess> {
  const p = new OxyProcess(home, [...LOOPBACK_EDGE, '--proxy-listen', '127.0.0.1:0', '--proxy-allow', '127.0.0.0/8', ...args]);
  procs.push(p);
  await p.waitFor(/Edge running/);
  return p;
}

/** Writes `bytes` on a new connection to `port` and collects the answer until the edge closes it. */
function exchange(port: number, ...bytes: (Buffer | string)[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      for (const b of bytes) socket.write(b);
    });
    let got = '';
    socket.on('data', (d) => (got += d));
    socket.on('error', reject);
    socket.on('close', () => resolve(got));
  });
}

const v2 = (tlvs: { type: number; value: Buffer }[]) =>
  encodeProxyV2({ source: { address: '198.18.0.7', port: 40000 }, destination: { address: '198.18.0.1', port: 443 }, tlvs });

beforeAll(async () => {
  ({ home, cleanup } = tempHome());
  origin = await startOrigin();
  writeFileSync(join(home, 'pp-app.js'), APP);
  await oxyOk(home, ['tunnel', 'create', 'web']);
  await oxyOk(home, ['tunnel', 'route', 'dns', 'web', HOST]);
  edge = await startEdge(['--proxy-protocol', '--hooks', join(home, 'pp-app.js')]);
  proxyPort = Number((await edge.waitFor(/CONNECT proxy listener ready address=127\.0\.0\.1:(\d+) proxyProtocol=true/))[1]);
  httpPort = Number((await edge.waitFor(/Public HTTP listener ready address=127\.0\.0\.1:(\d+) proxyProtocol=true/))[1]);
  const tunnelPort = Number((await edge.waitFor(/Tunnel listener ready protocol=http2 address=127\.0\.0\.1:(\d+)/))[1]);
  procs.push((await startConnector(home, tunnelPort, ['--url', `http://127.0.0.1:${origin.port}`, '--ha-connections', '1', 'web'], 1)).connector);
});
afterAll(async () => {
  await Promise.all(procs.map((p) => p.stop()));
  await origin?.close();
  cleanup();
});

describe('oxyctl edge run --proxy-protocol', () => {
  it('forward proxy: curl --haproxy-protocol (v1) goes through; the hook sees the header and ctx.client from it', async () => {
    const r = await curl(['--haproxy-protocol', '-w', '\n%{local_port}', '-x', `http://127.0.0.1:${proxyPort}`, `http://127.0.0.1:${origin.port}/v1`]);
    expect(r.code, r.stderr).toBe(0);
    expect(origin.seen.at(-1)!.url).toBe('/v1');
    const port = r.stdout.slice(r.stdout.lastIndexOf('\n') + 1);
    await edge.waitFor(
      new RegExp(`INF PROXY header hooks=\\S+ onramp=connect-proxy version=1 source=127\\.0\\.0\\.1:${port} client=127\\.0\\.0\\.1:${port} tlvs=`),
    );
  });

  it('forward proxy: a v2 header with TLVs from a Node client; the source it names becomes the client', async () => {
    const answer = await exchange(
      proxyPort,
      v2([
        { type: 0xe0, value: Buffer.from('tenant-a') },
        { type: PP2_TYPE.AUTHORITY, value: Buffer.from('lb.example.test') },
      ]),
      `GET http://127.0.0.1:${origin.port}/v2 HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nConnection: close\r\n\r\n`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    expect(origin.seen.at(-1)!.url).toBe('/v2');
    await edge.waitFor(
      /INF PROXY header hooks=\S+ onramp=connect-proxy version=2 source=198\.18\.0\.7:40000 client=198\.18\.0\.7:40000 tlvs="e0=tenant-a,2=lb\.example\.test"/,
    );
  });

  it('public-hostname listener: the header source is the client the origin sees in X-Forwarded-For', async () => {
    const answer = await exchange(httpPort, v2([]), `GET /behind-lb HTTP/1.1\r\nHost: ${HOST}\r\nConnection: close\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    expect(origin.seen.at(-1)).toMatchObject({ url: '/behind-lb', headers: { 'x-forwarded-for': '198.18.0.7' } });
    await edge.waitFor(/INF PROXY header hooks=\S+ onramp=public-hostname version=2 source=198\.18\.0\.7:40000/);
  });

  it('closes a connection without a valid header, on both listeners, and says why', async () => {
    const before = origin.seen.length;
    const proxied = await curl(['-x', `http://127.0.0.1:${proxyPort}`, `http://127.0.0.1:${origin.port}/no-header`]);
    expect(proxied.code).not.toBe(0);
    expect(proxied.stderr).toMatch(/Empty reply from server|Recv failure/);
    const direct = await curl(['-H', `Host: ${HOST}`, `http://127.0.0.1:${httpPort}/no-header`]);
    expect(direct.code).not.toBe(0);
    expect(origin.seen.length).toBe(before);
    await edge.waitFor(
      /WRN Closed a connection without a valid PROXY protocol header connection=\d+ onramp=connect-proxy client=127\.0\.0\.1:\d+ error="Invalid PROXY protocol header: no PROXY signature"/,
    );
    await edge.waitFor(/WRN Closed a connection without a valid PROXY protocol header connection=\d+ onramp=public-hostname/);
  });

  it('proxy-protocol: true in the edge YAML turns it on; --no-proxy-protocol on the command line wins', async () => {
    const file = join(home, 'edge.yml');
    writeFileSync(file, 'proxy-protocol: true\n');
    const fromFile = await startEdge(['--config', file]);
    await fromFile.waitFor(/CONNECT proxy listener ready address=\S+ proxyProtocol=true/);
    await fromFile.stop();
    const overridden = await startEdge(['--config', file, '--no-proxy-protocol']);
    const [line] = await overridden.waitFor(/CONNECT proxy listener ready [^\n]*/);
    expect(line).not.toContain('proxyProtocol');
    await overridden.stop();
  });
});
