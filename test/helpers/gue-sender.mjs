// A GUE sender for tests, run inside a network namespace (node gue-sender.mjs EDGE_HOST EDGE_PORT).
// It uses the built engine (dist/): one JSON command per stdin line, one JSON answer per line.
//   {"op":"request","device":ID,"secret":B64,"vnet":V,"payload":P[,"timeoutMs":T,"retryMs":R]} → {"reply":"…"} or {"reply":null}
//   {"op":"send","kind":K,"device":ID,"secret":B64,"vnet":V,"payload":P} → {"sent":true}
//     kinds: v1 (unauthenticated format), wrong-key, unknown-key, replay (the last good datagram
//     again), wrong-tenant, wrong-vnet, stale (a clock 10 minutes behind), bad-mac (one bit flipped)
//   {"op":"replies"} → {"replies":[…]} every reply payload that arrived, {"forged":n} those not verifying
//   {"op":"raw","port":P,"datagrams":[hex…]} → {"sent":n}: each datagram as is to EDGE_HOST:P (hostile input)
import { randomBytes, randomUUID } from 'node:crypto';
import dgram from 'node:dgram';
import readline from 'node:readline';

const { GueClient } = await import(new URL('../../dist/engine/edge/ip/gue.js', import.meta.url));
const { buildUdp, parseAddress, parsePacket, PacketView } = await import(new URL('../../dist/engine/packet/index.js', import.meta.url));

const [host, port] = [process.argv[2], Number(process.argv[3])];
const DEVICE_IP = parseAddress('198.18.9.1');
const HOST_IP = parseAddress('198.18.0.10');
const socket = dgram.createSocket('udp4');
await new Promise((r) => socket.bind(0, r));

const clients = new Map();
const clientFor = (device, secret, skewMs = 0) => {
  const key = `${device}|${secret}|${skewMs}`;
  if (!clients.has(key)) clients.set(key, new GueClient({ deviceId: device, secret, now: () => Date.now() + skewMs }));
  return clients.get(key);
};
const packetOf = (payload, srcPort = 40000) => buildUdp({ src: DEVICE_IP, dst: HOST_IP, srcPort, dstPort: 5353, payload: Buffer.from(payload) });

const replies = [];
let forged = 0;
let waiting;
let good;
socket.on('message', (datagram) => {
  const packet = good?.decapsulate(datagram);
  if (!packet) return void forged++;
  const view = parsePacket(packet, new PacketView());
  const text = view.ok ? view.payload.toString() : '<malformed>';
  replies.push(text);
  if (waiting && text.endsWith(waiting.payload)) waiting.resolve(text);
});

const send = (datagram) => new Promise((r) => socket.send(datagram, port, host, r));
let last;

async function handle(c) {
  const vnet = c.vnet ?? '';
  if (c.op === 'replies') return { replies, forged };
  if (c.op === 'raw') {
    for (const hex of c.datagrams) await new Promise((r) => socket.send(Buffer.from(hex, 'hex'), c.port, host, r));
    return { sent: c.datagrams.length };
  }
  if (c.op === 'request') {
    good = clientFor(c.device, c.secret);
    last = good.encapsulate(packetOf(c.payload), { vnet });
    let retry;
    const reply = new Promise((resolve) => {
      waiting = { payload: c.payload, resolve };
      setTimeout(() => resolve(null), c.timeoutMs ?? 3000);
      // retryMs: the request again (a fresh counter) until answered, as a UDP client retries.
      if (c.retryMs) retry = setInterval(() => void send((last = good.encapsulate(packetOf(c.payload), { vnet }))), c.retryMs);
    });
    await send(last);
    const answer = await reply;
    clearInterval(retry);
    return { reply: answer };
  }
  const packet = packetOf(c.payload, 40001);
  let datagram;
  switch (c.kind) {
    case 'v1': {
      // The old unauthenticated format: magic, version 1, tenant and vnet lengths, names.
      const t = Buffer.from('any-tenant');
      const body = Buffer.concat([Buffer.from([0x4f, 1, t.length, 0]), t]);
      const padded = Buffer.concat([body, Buffer.alloc((4 - (body.length % 4)) % 4)]);
      datagram = Buffer.concat([Buffer.from([padded.length / 4, 4, 0, 0]), padded, packet]);
      break;
    }
    case 'wrong-key':
      datagram = clientFor(c.device, randomBytes(32).toString('base64')).encapsulate(packet, { vnet });
      break;
    case 'unknown-key':
      datagram = clientFor(randomUUID(), c.secret).encapsulate(packet, { vnet });
      break;
    case 'replay':
      datagram = last;
      break;
    case 'wrong-tenant':
      datagram = clientFor(c.device, c.secret).encapsulate(packet, { tenant: 'someone-else', vnet });
      break;
    case 'wrong-vnet':
      datagram = clientFor(c.device, c.secret).encapsulate(packet, { vnet: 'no-such-vnet' });
      break;
    case 'stale':
      datagram = clientFor(c.device, c.secret, -600_000).encapsulate(packet, { vnet });
      break;
    case 'bad-mac':
      datagram = Buffer.from(clientFor(c.device, c.secret).encapsulate(packet, { vnet }));
      datagram[datagram.length - 1] ^= 1;
      break;
    default:
      throw new Error(`unknown kind ${c.kind}`);
  }
  await send(datagram);
  return { sent: true };
}

for await (const line of readline.createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  try {
    process.stdout.write(`${JSON.stringify(await handle(JSON.parse(line)))}\n`);
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ error: String(err) })}\n`);
  }
}
socket.close();
