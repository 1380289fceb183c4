// The reason IP_PKTINFO exists here: a server bound to the wildcard on a host
// with several addresses must answer from the address the client dialed.
//
//   client netns  cli0 198.18.0.100/24, 2001:db8:0:1::100/64
//        │ veth
//   server netns  srv0 198.18.0.1/24 + 198.18.0.2/24, 2001:db8:0:1::1/64 + ::2/64
//
// Servers are created on the main thread inside the server namespace (withNetns),
// clients (plain Node dgram, an independent check of the reply's source) inside
// the client namespace. A dgram server in the same setup must get at least one
// source wrong per family — the kernel picks one source per destination route.
import type dgram from 'node:dgram';
import { afterAll, beforeAll, expect, it } from 'vitest';

import { PktinfoUdpSocket, withNetns } from '../../../src/engine/native/index.js';
import { TestNetns } from '../../helpers/netns.js';
import { privilegedDescribe } from '../../helpers/privileged.js';
import { bindDgramSync, currentNetnsInode, request } from './support.js';

const V4 = ['198.18.0.1', '198.18.0.2'];
const V6 = ['2001:db8:0:1::1', '2001:db8:0:1::2'];
const CLIENT_V4 = '198.18.0.100';
const CLIENT_V6 = '2001:db8:0:1::100';

/** Echo server that answers with the destination address it saw, from that address. */
function pktinfoEcho(socket: PktinfoUdpSocket): PktinfoUdpSocket {
  socket.on('batch', (batch) => {
    const replies = [];
    for (let i = 0; i < batch.count; i++) {
      const dst = batch.destinationAddress(i)!;
      replies.push({ data: Buffer.from(dst), address: batch.sourceAddress(i), port: batch.sourcePort(i), sourceAddress: dst });
    }
    socket.sendBatch(replies);
  });
  return socket;
}

function dgramEcho(socket: dgram.Socket): dgram.Socket {
  socket.on('message', (msg, rinfo) => socket.send(msg, rinfo.port, rinfo.address));
  return socket;
}

privilegedDescribe('wildcard UDP server on a multi-address interface (network namespaces)', () => {
  let server: TestNetns | undefined;
  let client: TestNetns | undefined;
  const closers: { close(): void }[] = [];
  let clients: { v4: dgram.Socket; v6: dgram.Socket };

  beforeAll(() => {
    server = TestNetns.create('oxy-pktinfo-srv');
    client = TestNetns.create('oxy-pktinfo-cli');
    server.veth('srv0', client, 'cli0');
    server.ipBatch([...V4.map((a) => `addr add ${a}/24 dev srv0`), ...V6.map((a) => `addr add ${a}/64 dev srv0 nodad`)]);
    client.ipBatch([`addr add ${CLIENT_V4}/24 dev cli0`, `addr add ${CLIENT_V6}/64 dev cli0 nodad`]);

    const home = currentNetnsInode();
    clients = withNetns(client.path, () => ({
      v4: bindDgramSync('udp4', CLIENT_V4),
      v6: bindDgramSync('udp6', CLIENT_V6),
    }));
    expect(currentNetnsInode()).toBe(home);
    closers.push(clients.v4, clients.v6);
  });

  afterAll(() => {
    for (const c of closers) c.close();
    server?.delete();
    client?.delete();
  });

  async function dial(port: number, addresses: readonly string[]): Promise<Map<string, { from: string; body: string }>> {
    const replies = new Map<string, { from: string; body: string }>();
    for (const address of addresses) {
      const socket = address.includes(':') ? clients.v6 : clients.v4;
      const { msg, rinfo } = await request(socket, Buffer.from('hello'), port, address);
      replies.set(address, { from: rinfo.address, body: msg.toString() });
    }
    return replies;
  }

  it('PktinfoUdpSocket on 0.0.0.0 and :: answers every address from that address', async () => {
    const [v4, v6] = withNetns(server!.path, () => [
      pktinfoEcho(PktinfoUdpSocket.bind({ address: '0.0.0.0' })),
      pktinfoEcho(PktinfoUdpSocket.bind({ address: '::', ipv6Only: true })),
    ]);
    closers.push(v4!, v6!);

    const replies = new Map([...(await dial(v4!.address().port, V4)), ...(await dial(v6!.address().port, V6))]);
    for (const address of [...V4, ...V6]) {
      // The server saw the right destination, and the client saw the reply come from it.
      expect(replies.get(address)).toEqual({ from: address, body: address });
    }
  });

  it('one dual-stack PktinfoUdpSocket on :: does the same for IPv4 and IPv6', async () => {
    const dual = withNetns(server!.path, () => pktinfoEcho(PktinfoUdpSocket.bind({ address: '::' })));
    closers.push(dual);
    const replies = await dial(dual.address().port, [...V4, ...V6]);
    for (const address of [...V4, ...V6]) expect(replies.get(address)).toEqual({ from: address, body: address });
  });

  it('control: a Node dgram server on the wildcard answers from the wrong address for one of them', async () => {
    const [v4, v6] = withNetns(server!.path, () => [dgramEcho(bindDgramSync('udp4', '0.0.0.0')), dgramEcho(bindDgramSync('udp6', '::', 0, true))]);
    closers.push(v4!, v6!);

    const replies4 = await dial(v4!.address().port, V4);
    const replies6 = await dial(v6!.address().port, V6);
    // Every reply came back (so the server really ran in that namespace) ...
    expect(replies4.size + replies6.size).toBe(4);
    // ... but from the route's preferred source: the primary 198.18.0.1 for both IPv4 addresses.
    expect(replies4.get('198.18.0.2')!.from).toBe('198.18.0.1');
    const wrong6 = V6.filter((a) => replies6.get(a)!.from !== a);
    expect(wrong6.length).toBeGreaterThanOrEqual(1);
  });
});
