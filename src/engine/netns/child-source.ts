/**
 * The namespace child: a tiny Node program (plain CommonJS, run with `node -e`, so it
 * needs no build step and no TypeScript loader) started inside the new network
 * namespace by `unshare`. It talks to the parent over Node's IPC channel:
 *
 *   → { op: 'ip', id, lines }            runs `ip -batch -` inside the namespace
 *   → { op: 'sysctl', id, name, value }   writes a net.* sysctl of the namespace
 *   → { op: 'connect', id, host, port, localAddress, localPort }
 *                                        connects from the namespace; the connected
 *                                        socket is sent back as a handle (SCM_RIGHTS
 *                                        underneath) and closed here
 *   → { op: 'listen', id, backlog }       a TCP listener on [::]:0 in the namespace, sent back
 *                                        as a handle and closed here
 *   → { op: 'tun', id, name, mtu, txQueueLength, batchSize, maxPacketSize, partialChecksums }
 *                                        (unprivileged mode) opens a TUN here, sets it up, and
 *                                        sends its fd over the SEQPACKET pair on fd 4
 *                                        (SCM_RIGHTS; the message is the request id as JSON)
 *   ← { op: 'ready', pid }               once, at start
 *   ← { id, ok, error? }                 one reply per request (with the socket for connect)
 *
 * It exits when the parent goes away (the IPC channel closes).
 */
export const NAMESPACE_CHILD_SOURCE = String.raw`
'use strict';
const { execFileSync } = require('node:child_process');
const net = require('node:net');
function reply(message, handle) {
  try { process.send(message, handle); } catch { /* parent gone */ }
}
process.on('message', (m) => {
  if (!m || typeof m !== 'object') return;
  if (m.op === 'ip') {
    try {
      execFileSync('ip', ['-batch', '-'], { input: m.lines.join('\n') + '\n', stdio: ['pipe', 'ignore', 'pipe'] });
      reply({ id: m.id, ok: true });
    } catch (err) {
      reply({ id: m.id, ok: false, error: String((err.stderr && err.stderr.toString()) || err.message).trim() });
    }
  } else if (m.op === 'sysctl') {
    try {
      if (!/^net\.[a-z0-9_.]+$/.test(m.name)) throw new Error('not a net.* sysctl');
      require('node:fs').writeFileSync('/proc/sys/' + m.name.replace(/\./g, '/'), String(m.value));
      reply({ id: m.id, ok: true });
    } catch (err) {
      reply({ id: m.id, ok: false, error: err.message });
    }
  } else if (m.op === 'connect') {
    const socket = net.connect({ host: m.host, port: m.port, localAddress: m.localAddress, localPort: m.localPort });
    // Nothing is read here: every byte the peer sends must reach the parent.
    socket.pause();
    const timer = setTimeout(() => socket.destroy(new Error('ETIMEDOUT')), m.timeoutMs || 10000);
    socket.once('connect', () => {
      clearTimeout(timer);
      reply({ id: m.id, ok: true }, socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      reply({ id: m.id, ok: false, error: err.code || err.message });
    });
  } else if (m.op === 'listen') {
    const server = net.createServer();
    server.once('error', (err) => reply({ id: m.id, ok: false, error: err.code || err.message }));
    server.listen({ port: 0, backlog: m.backlog || 4096 }, () => {
      reply({ id: m.id, ok: true }, server);
      server.close();
    });
  } else if (m.op === 'tun') {
    try {
      const addon = require(process.env.OXY_NATIVE_ADDON);
      addon.setErrorFactory((syscall, errno, code, message) => Object.assign(new Error(message), { code }));
      const tun = new addon.TunDevice({ name: m.name, vnetHeader: false, partialChecksums: m.partialChecksums === true, offload: 0, multiQueue: false, batchSize: m.batchSize, maxPacketSize: m.maxPacketSize });
      if (m.mtu) tun.setMtu(m.mtu);
      if (m.txQueueLength) {
        // SIOCSIFTXQLEN is refused inside a user namespace; the same change over netlink is not.
        try { tun.setTxQueueLength(m.txQueueLength); }
        catch { execFileSync('ip', ['link', 'set', 'dev', tun.name, 'txqueuelen', String(m.txQueueLength)]); }
      }
      pair = pair || new addon.SeqpacketSocket(4, { maxMessageSize: 256, batchSize: 1 });
      pair.send(Buffer.from(JSON.stringify({ id: m.id })), [tun.fd]);
      tun.close();
    } catch (err) {
      reply({ id: m.id, ok: false, error: err.code || err.message });
    }
  }
});
let pair;
process.on('disconnect', () => process.exit(0));
reply({ op: 'ready', pid: process.pid });
`;
