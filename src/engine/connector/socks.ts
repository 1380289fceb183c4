/**
 * A SOCKS5 server on one tunnel stream (RFC 1928, no authentication, CONNECT only), as
 * cloudflared's `socks-proxy` service and `proxyType: socks` serve it: the client picks each
 * destination, and the rule's `ipRules` decide which ones may be dialled. A name is resolved
 * first, so the policy sees the address that will be dialled.
 */
import { lookup } from 'node:dns/promises';
import { isIP, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../observe/log.js';
import type { IpAccessPolicy } from './ip-access.js';

/** RFC 1928 §6 reply codes. */
export const SocksReply = {
  SUCCEEDED: 0,
  GENERAL_FAILURE: 1,
  NOT_ALLOWED: 2,
  HOST_UNREACHABLE: 4,
  REFUSED: 5,
  COMMAND_NOT_SUPPORTED: 7,
  ADDRESS_NOT_SUPPORTED: 8,
} as const;

export type SocksDial = (host: string, port: number) => Promise<Socket>;

/**
 * Where a client-chosen destination (SOCKS, bastion) may go: a name is resolved first, so the
 * policy judges the address that will be dialled. No policy: anywhere.
 */
export async function checkDestination(
  host: string,
  port: number,
  policy: IpAccessPolicy | undefined,
): Promise<{ ip: string } | { refused: 'dns' } | { refused: 'policy'; ip: string; rule: string }> {
  let ip = host.replace(/^\[|\]$/g, '');
  if (!isIP(ip)) {
    try {
      ip = (await lookup(host)).address;
    } catch {
      return { refused: 'dns' };
    }
  }
  if (policy) {
    const { allow, rule } = policy.allowed(ip, port);
    if (!allow) return { refused: 'policy', ip, rule: rule ? rule.prefix.network : 'default deny' };
  }
  return { ip };
}

/** Reads exactly n bytes (the stream stays paused: leftover bytes remain for the bridge). */
function readExact(s: Duplex, n: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const tryRead = (): boolean => {
      const b = s.read(n) as Buffer | null;
      if (b === null) return false;
      cleanup();
      resolve(b);
      return true;
    };
    const onEnd = () => (cleanup(), reject(new Error('SOCKS client closed the stream during the handshake')));
    const onReadable = () => void tryRead();
    const cleanup = () => {
      s.off('readable', onReadable);
      s.off('end', onEnd);
      s.off('close', onEnd);
      s.off('error', onEnd);
    };
    s.on('readable', onReadable);
    s.on('end', onEnd);
    s.on('close', onEnd);
    s.on('error', onEnd);
    tryRead();
  });
}

const reply = (code: number): Buffer => Buffer.from([5, code, 0, 1, 0, 0, 0, 0, 0, 0]);

/**
 * Runs the handshake; returns the dialled origin socket (the caller bridges it), or null when
 * the request was refused (a reply was written and the stream ended).
 */
export async function socksHandshake(stream: Duplex, policy: IpAccessPolicy | undefined, dial: SocksDial, log: Logger): Promise<Socket | null> {
  const greeting = await readExact(stream, 2);
  if (greeting[0] !== 5) throw new Error(`not a SOCKS5 client (version byte ${greeting[0]})`);
  const methods = await readExact(stream, greeting[1]);
  if (!methods.includes(0)) {
    stream.end(Buffer.from([5, 0xff]));
    return null;
  }
  stream.write(Buffer.from([5, 0]));
  const [ver, cmd, , atyp] = await readExact(stream, 4);
  if (ver !== 5) throw new Error('bad SOCKS5 request');
  let host: string;
  if (atyp === 1) host = [...(await readExact(stream, 4))].join('.');
  else if (atyp === 4) host = ((await readExact(stream, 16)).toString('hex').match(/.{4}/g) ?? []).join(':');
  else if (atyp === 3) host = (await readExact(stream, (await readExact(stream, 1))[0])).toString('utf8');
  else {
    stream.end(reply(SocksReply.ADDRESS_NOT_SUPPORTED));
    return null;
  }
  const port = (await readExact(stream, 2)).readUInt16BE(0);
  if (cmd !== 1) {
    stream.end(reply(SocksReply.COMMAND_NOT_SUPPORTED));
    return null;
  }
  const checked = await checkDestination(host, port, policy);
  if ('refused' in checked) {
    if (checked.refused === 'policy') log.info({ destination: `${host}:${port}`, ip: checked.ip, rule: checked.rule }, 'SOCKS destination refused by ipRules');
    stream.end(reply(checked.refused === 'policy' ? SocksReply.NOT_ALLOWED : SocksReply.HOST_UNREACHABLE));
    return null;
  }
  const ip = checked.ip;
  try {
    const socket = await dial(ip, port);
    stream.write(reply(SocksReply.SUCCEEDED));
    return socket;
  } catch (err) {
    log.debug({ err, destination: `${host}:${port}` }, 'SOCKS dial failed');
    stream.end(reply(SocksReply.REFUSED));
    return null;
  }
}
