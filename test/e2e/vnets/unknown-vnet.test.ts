/**
 * Every on-ramp resolves the client's vnet once, when the client arrives, and refuses a vnet
 * that does not exist at once, saying so: a local device (SEQPACKET context), a device on
 * another host (warp connect --token: its ip-packets stream), and the CONNECT proxy
 * (`Oxy-Vnet`). Before, the edge answered OK and the device gave up 10 s later with
 * "no routes". One edge on loopback serves all three.
 */
import { connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { decodeDeviceToken } from '../../../src/core/devices.js';
import { createDialer, resolveEdge } from '../../../src/engine/connector/run.js';
import { streamChannel } from '../../../src/engine/device/warp.js';
import { SeqpacketSocket } from '../../../src/engine/native/index.js';
import { createLogger } from '../../../src/engine/observe/log.js';
import { oxy, oxyOk, tempHome } from '../../helpers/cli.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { OxyProcess, freePort } from '../../helpers/processes.js';

const log = createLogger({ level: 'silent' });

// "At once": well under the 10 s wait for routes that an accepted unknown vnet meant before, with
// room for a loaded machine (files run 3 at a time on 2 cores). Not a speed limit.
const AT_ONCE_MS = 5000;

privilegedDescribe('an unknown vnet is refused at once, on every on-ramp', () => {
  let home: string;
  let cleanup: () => void;
  let edge: OxyProcess;
  let token: string;
  let tunnelPort: number;
  let proxyPort: number;
  let socketPath: string;

  beforeAll(async () => {
    ({ home, cleanup } = tempHome());
    await oxyOk(home, ['vnet', 'add', 'office']);
    token = (await oxyOk(home, ['warp', 'enroll', 'laptop'])).trim();
    [tunnelPort, proxyPort] = [await freePort(), await freePort()];
    socketPath = join(home, 'ip-tunnel.sock');
    edge = new OxyProcess(home, [
      'edge',
      'run',
      // Not the default 127.0.0.1:8080: another file's edge may hold it (EADDRINUSE in parallel runs).
      '--http-listen',
      '127.0.0.1:0',
      '--tunnel-listen',
      `127.0.0.1:${tunnelPort}`,
      '--proxy-listen',
      `127.0.0.1:${proxyPort}`,
      '--proxy-allow',
      '127.0.0.1/32:9',
      '--ip-tunnel-listen',
      socketPath,
      '--metrics',
      '127.0.0.1:0',
      '--no-quic',
    ]);
    await edge.waitFor(/Edge running/);
  });

  afterAll(async () => {
    await edge?.stop();
    cleanup?.();
  });

  it('local device: a SEQPACKET context naming no vnet of the store is answered with the error and closed', async () => {
    const t0 = Date.now();
    const socket = SeqpacketSocket.connect(socketPath);
    socket.on('error', () => undefined);
    const answer = new Promise<Buffer>((resolve) => socket.once('message', (m: Buffer) => resolve(Buffer.from(m))));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.send(Buffer.from(JSON.stringify({ tenant: 'any', vnet: 'no-such-vnet' })));
    expect(JSON.parse((await answer).toString())).toEqual({
      error: { code: 'OXY_ERR_VNET_NOT_FOUND', message: expect.stringContaining('virtual network no-such-vnet not found') },
    });
    await closed;
    expect(Date.now() - t0).toBeLessThan(AT_ONCE_MS);

    // The command refuses before it dials: same code, at once.
    const cli = await oxy(home, ['warp', 'connect', '--vnet', 'no-such-vnet', '--edge', socketPath, '--loglevel', 'debug']);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toMatch(/no-such-vnet.*\[OXY_ERR_VNET_NOT_FOUND\]/);
  });

  it('device on another host (token): its ip-packets stream is refused with OXY_ERR_VNET_NOT_FOUND', async () => {
    const t = decodeDeviceToken(token);
    const address = `127.0.0.1:${tunnelPort}`;
    const target = resolveEdge(home, { AccountTag: t.a, TunnelID: t.d, TunnelSecret: t.s, Endpoint: address }, { edge: address, caPin: t.p });
    const conn = await createDialer('http2', target, log)(0, new AbortController().signal);
    const t0 = Date.now();
    const refused = await streamChannel(conn, { deviceId: t.d, secret: Buffer.from(t.s, 'base64'), vnet: 'no-such-vnet', version: 'test' }).then(
      () => undefined,
      (err: { code?: string; message: string }) => err,
    );
    expect(Date.now() - t0).toBeLessThan(AT_ONCE_MS);
    expect(refused).toMatchObject({ code: 'OXY_ERR_VNET_NOT_FOUND', message: expect.stringContaining('virtual network no-such-vnet not found') });
    conn.close();

    // The command: the same refusal, not "no routes" 10 s later.
    const c0 = Date.now();
    const cli = await oxy(home, [
      'warp',
      'connect',
      '--token',
      token,
      '--protocol',
      'http2',
      '--edge',
      address,
      '--vnet',
      'no-such-vnet',
      '--loglevel',
      'debug',
    ]);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toMatch(/virtual network no-such-vnet not found.*\[OXY_ERR_VNET_NOT_FOUND\]/);
    // Spawning the CLI counts here (seconds under load): the old refusal came after its 10 s wait.
    expect(Date.now() - c0).toBeLessThan(10_000);
  });

  it('CONNECT proxy: an Oxy-Vnet naming no vnet is a 400 with Proxy-Status, before anything is dialled', async () => {
    const ask = (request: string) =>
      new Promise<string>((resolve, reject) => {
        let text = '';
        const s = tcpConnect(proxyPort, '127.0.0.1', () => s.write(request));
        s.setEncoding('utf8').on('data', (d) => (text += d));
        s.on('end', () => resolve(text)).on('error', reject);
      });
    const t0 = Date.now();
    const connect = await ask('CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nOxy-Vnet: no-such-vnet\r\n\r\n');
    expect(Date.now() - t0).toBeLessThan(AT_ONCE_MS);
    expect(connect).toMatch(/^HTTP\/1\.1 400 /);
    expect(connect).toMatch(/proxy-status: oxyctl; error=destination_not_found; details="virtual network no-such-vnet not found \(Oxy-Vnet header\)/i);

    const absolute = await ask('GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\nOxy-Vnet: no-such-vnet\r\nConnection: close\r\n\r\n');
    expect(absolute).toMatch(/^HTTP\/1\.1 400 /);
    expect(absolute).toContain('virtual network no-such-vnet not found');

    // A vnet that exists is taken (the refusal is about the name, not the header): port 9 is closed, so 502.
    const known = await ask('CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nOxy-Vnet: office\r\n\r\n');
    expect(known).toMatch(/^HTTP\/1\.1 502 /);
  });
});
