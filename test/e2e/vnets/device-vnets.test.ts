/**
 * A device enrolled for some vnets (`warp enroll --vnet`) uses only those, on both of its
 * on-ramps: its ip-packets stream over the tunnel transport (`warp connect --token`) naming
 * another vnet is refused with OXY_ERR_VNET_NOT_ALLOWED, and its GUE datagrams naming another
 * vnet are dropped and counted (wrong-vnet) while those naming its own are served. One edge
 * on loopback.
 */
import dgram from 'node:dgram';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { decodeDeviceToken } from '../../../src/core/devices.js';
import { createDialer, resolveEdge } from '../../../src/engine/connector/run.js';
import { streamChannel } from '../../../src/engine/device/warp.js';
import { GueClient } from '../../../src/engine/edge/ip/index.js';
import { createLogger } from '../../../src/engine/observe/log.js';
import { buildUdp, parseAddress } from '../../../src/engine/packet/index.js';
import { oxy, oxyOk, tempHome } from '../../helpers/cli.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { OxyProcess, freePort } from '../../helpers/processes.js';

const log = createLogger({ level: 'silent' });

privilegedDescribe('a device enrolled with --vnet uses only those vnets', () => {
  let home: string;
  let cleanup: () => void;
  let edge: OxyProcess;
  let token: string;
  let tunnelPort: number;
  let guePort: number;
  let metricsPort: number;

  beforeAll(async () => {
    ({ home, cleanup } = tempHome());
    await oxyOk(home, ['vnet', 'add', '--default', 'home']);
    await oxyOk(home, ['vnet', 'add', 'office']);
    token = (await oxyOk(home, ['warp', 'enroll', '--vnet', 'office', 'office-router'])).trim();
    [tunnelPort, guePort] = [await freePort(), await freePort()];
    edge = new OxyProcess(home, [
      'edge',
      'run',
      // Not the default 127.0.0.1:8080: another file's edge may hold it (EADDRINUSE in parallel runs).
      '--http-listen',
      '127.0.0.1:0',
      '--tunnel-listen',
      `127.0.0.1:${tunnelPort}`,
      '--gue-listen',
      `127.0.0.1:${guePort}`,
      '--ip-tunnel-listen',
      `${home}/ip.sock`,
      '--metrics',
      '127.0.0.1:0',
      '--no-quic',
    ]);
    metricsPort = Number((await edge.waitFor(/Edge running metrics=127\.0\.0\.1:(\d+)/))[1]);
  });

  afterAll(async () => {
    await edge?.stop();
    cleanup?.();
  });

  it('enrolment refuses an unknown vnet and writes nothing', async () => {
    const r = await oxy(home, ['warp', 'enroll', '--vnet', 'no-such-vnet', 'ghost']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no-such-vnet/);
    expect((await oxyOk(home, ['warp', 'devices'])).includes('ghost')).toBe(false);
  });

  it('over the tunnel transport: another vnet is refused with OXY_ERR_VNET_NOT_ALLOWED, its own is served', async () => {
    const t = decodeDeviceToken(token);
    const address = `127.0.0.1:${tunnelPort}`;
    const target = resolveEdge(home, { AccountTag: t.a, TunnelID: t.d, TunnelSecret: t.s, Endpoint: address }, { edge: address, caPin: t.p });
    const open = async (vnet: string) => {
      const conn = await createDialer('http2', target, log)(0, new AbortController().signal);
      return streamChannel(conn, { deviceId: t.d, secret: Buffer.from(t.s, 'base64'), vnet, version: 'test' }).then(
        (channel) => (channel.close(), 'served'),
        (err: { code?: string; message: string }) => (conn.close(), err),
      );
    };
    expect(await open('home')).toMatchObject({ code: 'OXY_ERR_VNET_NOT_ALLOWED', message: expect.stringContaining('may not use the virtual network home') });
    expect(await open('')).toMatchObject({ code: 'OXY_ERR_VNET_NOT_ALLOWED' });
    expect(await open('office')).toBe('served');
  });

  it('over GUE: datagrams naming another vnet are dropped as wrong-vnet, its own vnet answers', async () => {
    const t = decodeDeviceToken(token);
    const client = new GueClient({ deviceId: t.d, secret: t.s });
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
    const replies: Buffer[] = [];
    socket.on('message', (m) => {
      const packet = client.decapsulate(m);
      if (packet) replies.push(packet);
    });
    const wrongVnet = async () => {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      return Number(/^oxy_edge_gue_dropped_total\{reason="wrong-vnet"\} (\d+)/m.exec(text)?.[1] ?? 0);
    };
    try {
      const packet = buildUdp({ src: parseAddress('198.18.9.1'), dst: parseAddress('198.18.0.10'), srcPort: 4000, dstPort: 53, payload: Buffer.from('q') });
      for (const vnet of ['home', '']) socket.send(client.encapsulate(packet, { vnet }), guePort, '127.0.0.1');
      await expect.poll(wrongVnet, { timeout: 5000 }).toBe(2);
      expect(replies).toEqual([]);
      // Its own vnet is taken: no route there, so the edge answers ICMP unreachable, authenticated.
      socket.send(client.encapsulate(packet, { vnet: 'office' }), guePort, '127.0.0.1');
      await expect.poll(() => replies.length, { timeout: 5000 }).toBe(1);
      expect(replies[0]![9]).toBe(1); // IPv4 protocol: ICMP
      expect(await wrongVnet()).toBe(2);
    } finally {
      socket.close();
    }
  });
});
