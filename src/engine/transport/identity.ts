/**
 * TLS identity for an edge: a private CA and a server certificate it signs, generated with
 * @peculiar/x509 over Node's WebCrypto (ECDSA P-256, SHA-256). The connector trusts the CA
 * (`ca` option) and may also check `caPin`, the base64 SHA-256 of the CA's
 * SubjectPublicKeyInfo — the same pin format as HPKP / `curl --pinnedpubkey sha256//…`.
 */
import { createHash, X509Certificate as NodeX509Certificate, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import type * as X509 from '@peculiar/x509';
import { OxyError } from '../../core/errors.js';

const crypto = webcrypto as unknown as Crypto;
const EC_ALG: EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGN_ALG: EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };

export interface EdgeIdentityOptions {
  /** DNS names the server certificate is valid for (SAN dNSName). */
  hostnames?: string[];
  /** IP addresses the server certificate is valid for (SAN iPAddress). */
  ips?: string[];
  /** Common name of the CA. Default `oxyctl edge CA`. */
  caName?: string;
  /** Validity in days of both certificates. Default 365. */
  validDays?: number;
}

export interface EdgeIdentity {
  /** PEM of the CA certificate: what connectors trust. */
  caCert: string;
  /** PEM (PKCS#8) of the CA private key. */
  caKey: string;
  /** PEM of the server certificate, signed by the CA. */
  cert: string;
  /** PEM (PKCS#8) of the server private key. */
  key: string;
  /** Server certificate followed by the CA certificate: what the edge presents. */
  certChain: string;
  /** base64(SHA-256(CA SubjectPublicKeyInfo DER)). */
  caPin: string;
}

export async function createEdgeIdentity(options: EdgeIdentityOptions = {}): Promise<EdgeIdentity> {
  const x509 = await loadX509();
  const hostnames = options.hostnames ?? [];
  const ips = options.ips ?? [];
  for (const ip of ips) {
    if (isIP(ip) === 0) throw new OxyError('OXY_ERR_INVALID_ARGUMENT', `Not an IP address: ${ip}`);
  }
  if (hostnames.length === 0 && ips.length === 0) {
    throw new OxyError('OXY_ERR_INVALID_ARGUMENT', 'An edge identity needs at least one hostname or IP');
  }
  const validDays = options.validDays ?? 365;
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(notBefore.getTime() + validDays * 86_400_000);

  const caKeys = (await crypto.subtle.generateKey(EC_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const caName = `CN=${escapeDnValue(options.caName ?? 'oxyctl edge CA')}`;
  const ca = await x509.X509CertificateGenerator.createSelfSigned(
    {
      serialNumber: randomSerial(),
      name: caName,
      notBefore,
      notAfter,
      keys: caKeys,
      signingAlgorithm: SIGN_ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey, false, crypto),
      ],
    },
    crypto,
  );

  const serverKeys = (await crypto.subtle.generateKey(EC_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const sans: X509.JsonGeneralNames = [...hostnames.map((value) => ({ type: 'dns' as const, value })), ...ips.map((value) => ({ type: 'ip' as const, value }))];
  const server = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject: `CN=${escapeDnValue(hostnames[0] ?? ips[0]!)}`,
      issuer: ca.subject,
      notBefore,
      notAfter,
      publicKey: serverKeys.publicKey,
      signingKey: caKeys.privateKey,
      signingAlgorithm: SIGN_ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
        new x509.SubjectAlternativeNameExtension(sans, false),
        await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey, false, crypto),
        await x509.SubjectKeyIdentifierExtension.create(serverKeys.publicKey, false, crypto),
      ],
    },
    crypto,
  );

  const caCert = ca.toString('pem') + '\n';
  const cert = server.toString('pem') + '\n';
  return {
    caCert,
    caKey: await exportKeyPem(caKeys.privateKey),
    cert,
    key: await exportKeyPem(serverKeys.privateKey),
    certChain: cert + caCert,
    caPin: spkiPin(Buffer.from(ca.publicKey.rawData)),
  };
}

/** base64(SHA-256(SPKI DER)): the pin format `caPin` uses. */
export function spkiPin(spkiDer: Uint8Array): string {
  return createHash('sha256').update(spkiDer).digest('base64');
}

/** The pin of a PEM certificate's public key. */
export function certificatePin(pem: string): string {
  const key = new NodeX509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' });
  return spkiPin(key);
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const x509 = await loadX509();
  const der = await crypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY') + '\n';
}

function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f; // positive INTEGER
  if (bytes[0] === 0) bytes[0] = 1;
  return Buffer.from(bytes).toString('hex');
}

function escapeDnValue(value: string): string {
  return value.replace(/([,+"\\<>;=#])/g, '\\$1');
}

/**
 * @peculiar/x509 registers its algorithm providers through tsyringe, which refuses to load
 * without the Reflect metadata API (normally the `reflect-metadata` package, not a dependency
 * here). Install the three functions tsyringe calls, unless a real polyfill is present, then
 * import the library.
 */
let x509Module: Promise<typeof X509> | undefined;
function loadX509(): Promise<typeof X509> {
  x509Module ??= (async () => {
    installReflectMetadata();
    return import('@peculiar/x509');
  })();
  return x509Module;
}

function installReflectMetadata(): void {
  const R = Reflect as unknown as Record<string, unknown>;
  if (typeof R.getMetadata === 'function') return;
  const store = new WeakMap<object, Map<unknown, Map<unknown, unknown>>>();
  const table = (target: object, prop: unknown, create: boolean): Map<unknown, unknown> | undefined => {
    let byProp = store.get(target);
    if (!byProp) {
      if (!create) return undefined;
      byProp = new Map();
      store.set(target, byProp);
    }
    let entries = byProp.get(prop);
    if (!entries && create) {
      entries = new Map();
      byProp.set(prop, entries);
    }
    return entries;
  };
  const getOwn = (key: unknown, target: object, prop?: unknown): unknown => table(target, prop, false)?.get(key);
  R.defineMetadata = (key: unknown, value: unknown, target: object, prop?: unknown): void => {
    table(target, prop, true)!.set(key, value);
  };
  R.getOwnMetadata = getOwn;
  R.getMetadata = (key: unknown, target: object, prop?: unknown): unknown => {
    for (let t: object | null = target; t !== null; t = Object.getPrototypeOf(t) as object | null) {
      const entries = table(t, prop, false);
      if (entries?.has(key)) return entries.get(key);
    }
    return undefined;
  };
}

/** The subject prefix of the client certificates edges mint for their peer links (edge-to-edge forwarding). */
export const PEER_SUBJECT_PREFIX = 'oxyctl edge peer ';
const CLIENT_AUTH_OID = '1.3.6.1.5.5.7.3.2';

/**
 * A client certificate for this edge's peer links, signed by the shared edge CA (every edge
 * of a store holds the CA key: `edge init` on the first, its directory copied to the others).
 * Short-lived and kept in memory only: minted again at every start. A connector never holds
 * one (it has no CA key), so it cannot open a peer link.
 */
export async function createPeerCertificate(caCertPem: string, caKeyPem: string, edgeId: string, validDays = 30): Promise<{ cert: string; key: string }> {
  const x509 = await loadX509();
  const ca = new x509.X509Certificate(caCertPem);
  const caKey = await crypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(caKeyPem), EC_ALG, false, ['sign']);
  const keys = (await crypto.subtle.generateKey(EC_ALG, true, ['sign', 'verify'])) as CryptoKeyPair;
  const notBefore = new Date(Date.now() - 60_000);
  const cert = await x509.X509CertificateGenerator.create(
    {
      serialNumber: randomSerial(),
      subject: `CN=${escapeDnValue(`${PEER_SUBJECT_PREFIX}${edgeId}`)}`,
      issuer: ca.subject,
      notBefore,
      notAfter: new Date(notBefore.getTime() + validDays * 86_400_000),
      publicKey: keys.publicKey,
      signingKey: caKey,
      signingAlgorithm: SIGN_ALG,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth], false),
      ],
    },
    crypto,
  );
  return { cert: `${cert.toString('pem')}\n${caCertPem}`, key: await exportKeyPem(keys.privateKey) };
}

/**
 * The edge id a verified client certificate names, when it is a peer certificate (chain to
 * the CA checked by TLS; here: clientAuth usage and the peer subject), else undefined.
 */
export function peerEdgeId(der: Buffer | undefined): string | undefined {
  if (!der?.length) return undefined;
  const cert = new NodeX509Certificate(der);
  const usage = cert.keyUsage ?? [];
  const cn = /(?:^|\n)CN=(.*)/.exec(cert.subject)?.[1] ?? '';
  if (!usage.includes(CLIENT_AUTH_OID) || !cn.startsWith(PEER_SUBJECT_PREFIX)) return undefined;
  return cn.slice(PEER_SUBJECT_PREFIX.length);
}
