import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { curl, startProxyEdge, type ProxyEdge } from './support.js';

// tunnel.shouldInterceptHttps on CONNECT tunnels: the SNI of a real TLS client (curl) reaches
// the hook; a protocol where the server speaks first (an SMTP-like banner) is not held up
// waiting for the client: the hook gets no SNI at once and the banner flows.
describe('tunnel.shouldInterceptHttps', () => {
  let p: ProxyEdge;
  let banner: net.Server;
  let bannerPort: number;
  let silent: net.Server;
  let silentPort: number;
  const seen: (string | undefined)[] = [];

  beforeAll(async () => {
    banner = net.createServer((s) => {
      s.write('220 banner.test ready\r\n');
      s.on('data', (d) => s.end(`250 got ${String(d).trim()}\r\n`));
    });
    await new Promise<void>((r) => banner.listen(0, '127.0.0.1', r));
    bannerPort = (banner.address() as net.AddressInfo).port;
    // Waits for the client, as a TLS server does; closes once it got something.
    silent = net.createServer((s) => s.once('data', () => s.end()));
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    silentPort = (silent.address() as net.AddressInfo).port;
    p = await startProxyEdge({ tunnel: { shouldInterceptHttps: (sni: string | undefined) => (seen.push(sni), false) } });
  });
  afterAll(async () => {
    await p?.close();
    banner?.close();
    silent?.close();
  });

  it('hands the SNI of a TLS client to the hook, then splices', async () => {
    seen.length = 0;
    // A TLS client toward a server that is not TLS: the handshake fails there, but its ClientHello went first.
    await curl([
      '-p',
      '-x',
      p.proxy,
      '--max-time',
      '3',
      `https://sni.example.test:${silentPort}/`,
      '--connect-to',
      `sni.example.test:${silentPort}:127.0.0.1:${silentPort}`,
    ]);
    expect(seen).toEqual(['sni.example.test']);
  });

  it('hands both streams to an app pipeline that reads with data listeners, after the decision paused them', async () => {
    const q = await startProxyEdge({
      tunnel: {
        shouldInterceptHttps: () => true,
        appTunnelPipeline(client: net.Socket, upstream: net.Socket) {
          upstream.on('data', (d: Buffer) => client.write(String(d).toUpperCase()));
          client.on('data', (d: Buffer) => upstream.write(d));
          return new Promise<void>((resolve) => client.once('close', () => resolve()));
        },
      },
    });
    const socket = net.connect(q.proxyPort, '127.0.0.1');
    let text = '';
    socket.setEncoding('utf8').on('data', (d) => (text += d));
    socket.write(`CONNECT 127.0.0.1:${bannerPort} HTTP/1.1\r\nHost: 127.0.0.1:${bannerPort}\r\n\r\n`);
    try {
      await expect.poll(() => text, { timeout: 3000 }).toMatch(/\r\n\r\n220 BANNER\.TEST READY\r\n$/);
      socket.write('HELO me\r\n');
      await expect.poll(() => text, { timeout: 3000 }).toMatch(/250 GOT HELO ME\r\n$/);
    } finally {
      socket.destroy();
      await q.close();
    }
  });

  it('does not wait for the client when the server speaks first', async () => {
    seen.length = 0;
    const socket = net.connect(p.proxyPort, '127.0.0.1');
    let text = '';
    socket.setEncoding('utf8').on('data', (d) => (text += d));
    socket.write(`CONNECT 127.0.0.1:${bannerPort} HTTP/1.1\r\nHost: 127.0.0.1:${bannerPort}\r\n\r\n`);
    try {
      // The client says nothing until it has read the banner, as an SMTP client would.
      await expect.poll(() => text, { timeout: 3000 }).toMatch(/^HTTP\/1\.1 200 [^\r]*\r\n(?:[^\r]+\r\n)*\r\n220 banner\.test ready\r\n$/);
      expect(seen).toEqual([undefined]);
      socket.write('HELO me\r\n');
      await expect.poll(() => text, { timeout: 3000 }).toMatch(/250 got HELO me\r\n$/);
    } finally {
      socket.destroy();
    }
  });
});
