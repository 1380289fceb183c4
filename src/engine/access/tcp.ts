/**
 * The client side of a tcp:// ingress service (cloudflared's `access tcp`): a local
 * listener whose every connection becomes an `Upgrade: tcp` request to the edge for the
 * hostname; after the 101 the bytes flow raw in both directions.
 */
import { request as httpRequest } from 'node:http';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { OxyError } from '../../core/errors.js';
import type { Logger } from '../observe/log.js';
import { bridge } from '../util/pump.js';

/**
 * Opens one raw byte stream to the tcp:// service behind `hostname`; `destination` names the
 * target of a bastion service (cloudflared's Cf-Access-Jump-Destination).
 */
export function dialThroughEdge(edgeUrl: string, hostname: string, destination?: string): Promise<Socket> {
  const url = new URL(edgeUrl);
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: url.hostname,
      port: url.port || 80,
      path: '/',
      headers: { host: hostname, connection: 'Upgrade', upgrade: 'tcp', ...(destination ? { 'cf-access-jump-destination': destination } : {}) },
    });
    req.on('upgrade', (_res, socket, head) => {
      // A raw byte stream half-closes: the client's FIN must not end our sending side.
      socket.allowHalfOpen = true;
      if (head.length) socket.unshift(head);
      resolve(socket);
    });
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d) => (body += d));
      res.on('end', () => reject(new OxyError('OXY_ERR_ACCESS_REFUSED', `The edge refused the TCP stream to ${hostname}: ${res.statusCode} ${body.trim()}`)));
    });
    req.on('error', reject);
    req.end();
  });
}

export async function startAccessTcp(o: {
  edgeUrl: string;
  hostname: string;
  destination?: string;
  listen: { host: string; port: number };
  log: Logger;
}): Promise<Server> {
  const server = createServer({ allowHalfOpen: true }, async (local) => {
    local.on('error', () => undefined);
    try {
      const remote = await dialThroughEdge(o.edgeUrl, o.hostname, o.destination);
      remote.on('error', () => undefined); // the bridge handles errors while it runs; none may crash after
      await bridge(local, remote);
    } catch (err) {
      o.log.error({ err, hostname: o.hostname }, 'Failed to connect through the edge');
      local.destroy();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.listen.port, o.listen.host, resolve);
  });
  const a = server.address() as AddressInfo;
  o.log.info({ hostname: o.hostname, listen: `${a.address}:${a.port}` }, 'Start Websocket listener');
  return server;
}
