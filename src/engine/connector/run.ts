/**
 * Everything `oxyctl tunnel run` resolves before the supervisor starts: which tunnel and
 * secret (token, credentials file, config, or the local store), which edge and how to
 * trust it, which ingress rules, and how to dial (http2, quic, auto).
 */
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import tls from 'node:tls';
import { arch } from 'node:os';
import { OxyError } from '../../core/errors.js';
import { isUuid } from '../../core/common.js';
import { credentialsPath, decodeToken, readCredentialsFile, tokenToCredentials, type TunnelCredentials } from '../../core/credentials.js';
import type { Store } from '../../store/index.js';
import { DEFAULT_TUNNEL_PORT, localEdgeTrust } from '../transport/identity-files.js';
import { spkiPin } from '../transport/identity.js';
import type { Logger } from '../observe/log.js';
import { splitHostPort } from '../observe/metrics.js';
import { dialHttp2Tunnel } from '../transport/http2/index.js';
import { dialQuic } from '../transport/quic/index.js';
import { dialAuto } from '../transport/auto.js';
import type { TunnelConnection } from '../transport/types.js';
import { Ingress } from './ingress.js';
import type { ConnectorConfig } from './config.js';
import type { Dialer } from './supervisor.js';

export type ProtocolChoice = 'http2' | 'quic' | 'auto';

export interface EdgeTarget {
  host: string;
  port: number;
  ca?: string;
  caPin?: string;
}

export interface CredentialSources {
  home: string;
  store?: () => Store;
  tunnelRef?: string;
  token?: string;
  credentialsFile?: string;
  config?: ConnectorConfig;
}

/** cloudflared's order: --token, --credentials-file, the config's credentials-file, then the tunnel's file or the store. */
export function resolveCredentials(s: CredentialSources): { creds: TunnelCredentials; caPin?: string } {
  if (s.token) {
    const token = decodeToken(s.token);
    return { creds: tokenToCredentials(token), caPin: token.p };
  }
  const file = s.credentialsFile ?? s.config?.credentialsFile;
  if (file) return { creds: readCredentialsFile(file) };
  const ref = s.tunnelRef ?? s.config?.tunnel;
  if (!ref) {
    throw new OxyError(
      'OXY_ERR_TUNNEL_NOT_GIVEN',
      '"oxyctl tunnel run" requires the ID or name of the tunnel to run as the last argument, or --token, or --credentials-file, or a config file naming the tunnel.',
    );
  }
  if (isUuid(ref) && existsSync(credentialsPath(s.home, ref.toLowerCase()))) return { creds: readCredentialsFile(credentialsPath(s.home, ref.toLowerCase())) };
  const store = s.store?.();
  const tunnel = store && (isUuid(ref) ? store.tunnels.byId(ref.toLowerCase()) : store.tunnels.byLiveName(ref));
  if (!store || !tunnel || tunnel.deletedAt) {
    throw new OxyError('OXY_ERR_TUNNEL_NOT_FOUND', `${ref} is neither the ID nor the name of any of your tunnels`);
  }
  const path = credentialsPath(s.home, tunnel.id);
  if (existsSync(path)) return { creds: readCredentialsFile(path) };
  return { creds: { AccountTag: store.accountTag, TunnelSecret: tunnel.secret, TunnelID: tunnel.id, Endpoint: '' } };
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

export function buildIngress(o: { config?: ConnectorConfig; url?: string; helloWorld?: boolean }): Ingress {
  if (o.helloWorld) return Ingress.singleOrigin('hello_world');
  if (o.url) {
    if (o.config?.ingress) throw new OxyError('OXY_ERR_INGRESS_INVALID', "You can't set the --url flag (or $TUNNEL_URL) when using multiple-origin ingress rules");
    return Ingress.singleOrigin(/^[a-z][a-z0-9+.-]*:/i.test(o.url) ? o.url : `http://${o.url}`);
  }
  if (o.config?.ingress) return o.config.ingress;
  // cloudflared's default origin when nothing is configured.
  return Ingress.singleOrigin('http://localhost:8080');
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
      fail(new OxyError('OXY_ERR_TUNNEL_PIN_MISMATCH', `The edge at ${host}:${port} presented no certificate with the pinned CA key (wrong token or wrong edge?)`));
    });
  });
}

/** How each HA connection dials the edge: http2 (TLS over TCP), quic (UDP) or auto (quic, falling back to http2). */
export function createDialer(protocol: ProtocolChoice, edge: EdgeTarget, log: Logger): Dialer {
  let ca: Promise<string> | undefined = edge.ca ? Promise.resolve(edge.ca) : undefined;
  const trustAnchor = (): Promise<string> => {
    ca ??= fetchPinnedCa(edge.host, edge.port, edge.caPin!).catch((err) => {
      ca = undefined; // retry the fetch on the next dial
      throw err;
    });
    return ca;
  };
  const http2 = async (signal?: AbortSignal): Promise<TunnelConnection> =>
    dialHttp2Tunnel({ host: edge.host, port: edge.port, ca: await trustAnchor(), caPin: edge.caPin, signal });
  const quic = async (signal?: AbortSignal, timeoutMs?: number): Promise<TunnelConnection> =>
    dialQuic({ host: edge.host, port: edge.port, ca: await trustAnchor(), caPin: edge.caPin, signal, timeoutMs });
  if (protocol === 'http2') return (_i, signal) => http2(signal);
  if (protocol === 'quic') return (_i, signal) => quic(signal);
  // auto: QUIC first, HTTP/2 when UDP is blocked or the handshake times out; shared by all HA slots.
  const state = {};
  return (connIndex, signal) =>
    dialAuto({ quic: (q) => quic(q.signal, q.timeoutMs), http2: (h) => http2(h.signal), log, state, signal, fields: { connIndex } });
}
