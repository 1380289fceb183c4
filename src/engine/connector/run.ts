/**
 * Everything `oxyctl tunnel run` resolves before the supervisor starts: which tunnel and
 * secret (token, credentials file, config, or the local store), which edge and how to
 * trust it, which ingress rules, and how to dial (http2, quic, auto).
 */
import { X509Certificate } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join } from 'node:path';
import tls from 'node:tls';
import { arch } from 'node:os';
import { OxyError } from '../../core/errors.js';
import { isUuid } from '../../core/common.js';
import { credentialsPath, decodeToken, readCredentialsFile, tokenToCredentials, type TunnelCredentials } from '../../core/credentials.js';
import type { Store } from '../../store/index.js';
import { DEFAULT_TUNNEL_PORT, localEdgeTrust } from '../transport/identity-files.js';
import { spkiPin } from '../transport/identity.js';
import type { Logger } from '../observe/log.js';
import { splitHostPort } from '../../core/address.js';
import { dialHttp2Tunnel } from '../transport/http2/index.js';
import { dialQuic } from '../transport/quic/index.js';
import { dialAuto } from '../transport/auto.js';
import type { TunnelConnection } from '../transport/types.js';
import { Ingress, type OriginRequest } from './ingress.js';
import type { ConnectorConfig } from './config.js';
import type { Dialer } from './supervisor.js';

export type ProtocolChoice = 'http2' | 'quic' | 'auto';

export interface EdgeTarget {
  host: string;
  port: number;
  /** The edge's name when `host` was resolved from it: SNI and the certificate check use it. */
  servername?: string;
  ca?: string;
  caPin?: string;
}

export interface CredentialSources {
  home: string;
  /** The store (opened only when the credentials must come from it). */
  store?: () => Promise<Store>;
  tunnelRef?: string;
  token?: string;
  /** A file holding the token (--token-file). */
  tokenFile?: string;
  credentialsFile?: string;
  /** The credentials JSON itself (--credentials-contents). */
  credentialsContents?: string;
  config?: ConnectorConfig;
}

/**
 * cloudflared's order: --token (or --token-file), --credentials-contents, --credentials-file,
 * the config's credentials-file, `<TunnelID>.json` next to the config file, then the tunnel's
 * file or the store.
 */
export async function resolveCredentials(s: CredentialSources): Promise<{ creds: TunnelCredentials; caPin?: string }> {
  const tokenText = s.token ?? (s.tokenFile ? readTokenFile(s.tokenFile) : undefined);
  if (tokenText) {
    const token = decodeToken(tokenText);
    return { creds: tokenToCredentials(token), caPin: token.p };
  }
  if (s.credentialsContents) return { creds: parseCredentials(s.credentialsContents, '--credentials-contents') };
  const file = s.credentialsFile ?? s.config?.credentialsFile;
  if (file) return { creds: readCredentialsFile(file) };
  const configRef = s.tunnelRef ?? s.config?.tunnel;
  if (configRef && isUuid(configRef) && s.config?.source && existsSync(join(dirname(s.config.source), `${configRef.toLowerCase()}.json`))) {
    return { creds: readCredentialsFile(join(dirname(s.config.source), `${configRef.toLowerCase()}.json`)) };
  }
  const ref = s.tunnelRef ?? s.config?.tunnel;
  if (!ref) {
    throw new OxyError(
      'OXY_ERR_TUNNEL_NOT_GIVEN',
      '"oxyctl tunnel run" requires the ID or name of the tunnel to run as the last argument, or --token, or --credentials-file, or a config file naming the tunnel.',
    );
  }
  if (isUuid(ref) && existsSync(credentialsPath(s.home, ref.toLowerCase()))) return { creds: readCredentialsFile(credentialsPath(s.home, ref.toLowerCase())) };
  const store = await s.store?.();
  const tunnel = store && (isUuid(ref) ? await store.tunnels.byId(ref.toLowerCase()) : await store.tunnels.byLiveName(ref));
  if (!store || !tunnel || tunnel.deletedAt) {
    throw new OxyError('OXY_ERR_TUNNEL_NOT_FOUND', `${ref} is neither the ID nor the name of any of your tunnels`);
  }
  const path = credentialsPath(s.home, tunnel.id);
  if (existsSync(path)) return { creds: readCredentialsFile(path) };
  return { creds: { AccountTag: store.accountTag, TunnelSecret: tunnel.secret, TunnelID: tunnel.id, Endpoint: '' } };
}

function readTokenFile(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err) {
    throw new OxyError('OXY_ERR_INVALID_TOKEN', `Cannot read the token file ${path}: ${(err as Error).message}`, { cause: err });
  }
}

function parseCredentials(text: string, where: string): TunnelCredentials {
  let c: Partial<TunnelCredentials>;
  try {
    c = JSON.parse(text);
  } catch (err) {
    throw new OxyError('OXY_ERR_CREDENTIALS_READ', `${where} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof c.TunnelID !== 'string' || typeof c.TunnelSecret !== 'string') {
    throw new OxyError('OXY_ERR_CREDENTIALS_READ', `${where} must hold TunnelID and TunnelSecret, as a credentials file does`);
  }
  return { AccountTag: c.AccountTag ?? '', TunnelSecret: c.TunnelSecret, TunnelID: c.TunnelID, Endpoint: c.Endpoint ?? '' };
}

/** The edge's host as an address of the family --edge-ip-version asks for ('auto': the resolver's first). */
export async function resolveEdgeHost(host: string, version: '4' | '6' | 'auto' = '4'): Promise<string> {
  const family = isIP(host);
  if (family !== 0) {
    if (version !== 'auto' && String(family) !== version) {
      throw new OxyError('OXY_ERR_EDGE_ADDRESS', `The edge address ${host} is IPv${family}, but --edge-ip-version is ${version}`);
    }
    return host;
  }
  try {
    return (await lookup(host, version === 'auto' ? {} : { family: Number(version) })).address;
  } catch (err) {
    throw new OxyError(
      'OXY_ERR_EDGE_ADDRESS',
      `Cannot resolve the edge ${host} to an IPv${version === 'auto' ? '4/6' : version} address: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** --edge, else the credentials' endpoint, else the local edge's advertised address; trust from the token pin, --edge-ca or the local edge CA. */
export function resolveEdge(home: string, creds: TunnelCredentials, flags: { edge?: string; edgeCa?: string; caPin?: string }): EdgeTarget {
  const local = localEdgeTrust(home);
  const address = flags.edge ?? (creds.Endpoint || local?.endpoint || `127.0.0.1:${DEFAULT_TUNNEL_PORT}`);
  const { host, port } = splitHostPort(address.includes(':') ? address : `${address}:${DEFAULT_TUNNEL_PORT}`);
  const ca = flags.edgeCa ? readFileSync(flags.edgeCa, 'utf8') : local?.caCert;
  const caPin = flags.caPin ?? (flags.edgeCa ? undefined : local?.caPin);
  if (!ca && !caPin) {
    throw new OxyError(
      'OXY_ERR_EDGE_TRUST',
      `No way to trust the edge at ${address}: run on the edge host (its data directory has the edge CA), use a token from 'oxyctl tunnel token' (it carries the CA pin), or pass --edge-ca.`,
    );
  }
  return { host, port, ca, caPin };
}

/**
 * Every edge the connector may use: --edge (or the token's or credentials' endpoint) names one
 * or several, comma-separated (`edge1:7844,edge2:7844`); they share one trust (edges of one
 * deployment share the CA).
 */
export function resolveEdges(home: string, creds: TunnelCredentials, flags: { edge?: string; edgeCa?: string; caPin?: string }): EdgeTarget[] {
  const list = flags.edge ?? (creds.Endpoint || localEdgeTrust(home)?.endpoint || `127.0.0.1:${DEFAULT_TUNNEL_PORT}`);
  const addresses = list
    .split(',')
    .map((a) => a.trim())
    .filter(Boolean);
  return addresses.map((edge) => resolveEdge(home, creds, { ...flags, edge }));
}

export const URL_WITH_INGRESS = "You can't set the --url flag (or $TUNNEL_URL) when using multiple-origin ingress rules";

/**
 * cloudflared's choice: --hello-world, --bastion, --url, --unix-socket (one catch-all rule
 * shaped by the origin flags), else the config's rules, else http://localhost:8080.
 */
export function buildIngress(o: {
  config?: ConnectorConfig;
  url?: string;
  helloWorld?: boolean;
  bastion?: boolean;
  unixSocket?: string;
  originRequest?: OriginRequest;
}): Ingress {
  const single = (service: string) => Ingress.singleOrigin(service, o.originRequest);
  if (o.helloWorld) return single('hello_world');
  if (o.bastion) return single('bastion');
  if (o.url) {
    if (o.config?.ingress) throw new OxyError('OXY_ERR_INGRESS_INVALID', URL_WITH_INGRESS);
    return single(/^[a-z][a-z0-9+.-]*:/i.test(o.url) ? o.url : `http://${o.url}`);
  }
  if (o.unixSocket) return single(`unix:${o.unixSocket}`);
  if (o.config?.ingress) return o.config.ingress;
  // cloudflared's default origin when nothing is configured.
  return single('http://localhost:8080');
}

export const clientVersion = (version: string): string => `${version} linux_${arch() === 'x64' ? 'amd64' : arch()}`;

/**
 * A token carries only the CA's pin. The CA certificate itself is taken from the edge's
 * handshake — the one certificate of the presented chain whose key matches the pin — and
 * then used as the trust anchor, so the chain, the name and the pin are all verified.
 */
export function fetchPinnedCa(host: string, port: number, pin: string, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host, port, rejectUnauthorized: false, ALPNProtocols: ['h2'], servername: isIP(host) ? undefined : host });
    const fail = (err: Error) => {
      socket.destroy();
      reject(err);
    };
    socket.setTimeout(timeoutMs, () => fail(new OxyError('OXY_ERR_TUNNEL_HANDSHAKE', `TLS handshake with ${host}:${port} timed out`)));
    socket.once('error', (err) => fail(new OxyError('OXY_ERR_TUNNEL_HANDSHAKE', `TLS connection to ${host}:${port} failed: ${err.message}`, { cause: err })));
    socket.once('secureConnect', () => {
      const seen = new Set<string>();
      for (let cert = socket.getPeerCertificate(true); cert?.raw && !seen.has(cert.fingerprint256); cert = cert.issuerCertificate) {
        seen.add(cert.fingerprint256);
        const x509 = new X509Certificate(cert.raw);
        if (spkiPin(x509.publicKey.export({ type: 'spki', format: 'der' })) === pin) {
          socket.end();
          resolve(x509.toString());
          return;
        }
      }
      fail(
        new OxyError('OXY_ERR_TUNNEL_PIN_MISMATCH', `The edge at ${host}:${port} presented no certificate with the pinned CA key (wrong token or wrong edge?)`),
      );
    });
  });
}

/** How each HA connection dials the edge: http2 (TLS over TCP), quic (UDP) or auto (quic, falling back to http2). */
export function createDialer(protocol: ProtocolChoice, edge: EdgeTarget, log: Logger, localAddress?: string): Dialer {
  let ca: Promise<string> | undefined = edge.ca ? Promise.resolve(edge.ca) : undefined;
  const trustAnchor = (): Promise<string> => {
    ca ??= fetchPinnedCa(edge.host, edge.port, edge.caPin!).catch((err) => {
      ca = undefined; // retry the fetch on the next dial
      throw err;
    });
    return ca;
  };
  const http2 = async (signal?: AbortSignal): Promise<TunnelConnection> =>
    dialHttp2Tunnel({ host: edge.host, port: edge.port, ca: await trustAnchor(), caPin: edge.caPin, signal, localAddress, servername: edge.servername });
  const quic = async (signal?: AbortSignal, timeoutMs?: number): Promise<TunnelConnection> =>
    dialQuic({ host: edge.host, port: edge.port, ca: await trustAnchor(), caPin: edge.caPin, signal, timeoutMs, localAddress, servername: edge.servername });
  if (protocol === 'http2') return (_i, signal) => http2(signal);
  if (protocol === 'quic') return (_i, signal) => quic(signal);
  // auto: QUIC first, HTTP/2 when UDP is blocked or the handshake times out; shared by all HA slots.
  const state = {};
  return (connIndex, signal) =>
    dialAuto({ quic: (q) => quic(q.signal, q.timeoutMs), http2: (h) => http2(h.signal), log, state, signal, fields: { connIndex } });
}
