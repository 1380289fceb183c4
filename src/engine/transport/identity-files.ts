/**
 * The edge's identity in the data directory (`<home>/edge/`): CA and server certificate
 * with their keys (keys mode 0400, written atomically), plus edge.json with the address
 * connectors dial, which `tunnel token` puts into tokens together with the CA pin.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { domainToASCII } from 'node:url';
import { addressBytes } from '../../core/address.js';
import { OxyError } from '../../core/errors.js';
import { writeSecretFileAtomic } from '../../core/credentials.js';
import { certificatePin, createEdgeIdentity, type EdgeIdentity } from './identity.js';

export const DEFAULT_TUNNEL_PORT = 7844;

export interface EdgeSettings {
  /** HOST:PORT connectors dial, put into tokens. */
  advertise: string;
  hostnames: string[];
  ips: string[];
}

const dir = (home: string) => join(home, 'edge');
const files = (home: string) => ({
  caCert: join(dir(home), 'ca.pem'),
  caKey: join(dir(home), 'ca-key.pem'),
  cert: join(dir(home), 'cert.pem'),
  key: join(dir(home), 'key.pem'),
  settings: join(dir(home), 'edge.json'),
});

const DNS_NAME_RE = /^([a-z0-9_]([a-z0-9-_]{0,61}[a-z0-9_])?\.)*[a-z0-9_]([a-z0-9-_]{0,61}[a-z0-9_])?$/;

/**
 * An address connectors can dial, as tokens carry it: HOST:PORT with a DNS name, an IPv4
 * address or a bracketed IPv6 one, never a wildcard (0.0.0.0, ::), port 1–65535. `where`
 * names the flag or file key in the error. Returns the text as given.
 */
export function checkAdvertise(text: string, where = '--advertise'): string {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  const host = m && (m[1] ?? m[2]);
  const port = m ? Number(m[3]) : 0;
  const ip = host ? addressBytes(host) : undefined;
  const problem = !m
    ? 'is not HOST:PORT'
    : !host
      ? 'has no host'
      : port < 1 || port > 65535
        ? 'has a port outside 1-65535'
        : m[1] !== undefined && ip?.length !== 16
          ? 'has brackets around something that is not an IPv6 address'
          : ip
            ? ip.every((b) => b === 0)
              ? 'is a wildcard address, which no connector can dial'
              : undefined
            : /^[\d.]+$/.test(host) || !DNS_NAME_RE.test(domainToASCII(host.toLowerCase()))
              ? 'has a host that is neither an IP address nor a DNS name'
              : undefined;
  if (problem) {
    throw new OxyError(
      'OXY_ERR_EDGE_ADVERTISE',
      `${where} ${JSON.stringify(text)} ${problem}: give the HOST:PORT connectors dial to reach this edge, e.g. edge1.example.com:7844, 203.0.113.10:7844 or [2001:db8::10]:7844`,
    );
  }
  return text;
}

export const edgeIdentityExists = (home: string): boolean => existsSync(files(home).key);

/** Whether an edge of this data directory can mint peer certificates (forwarding): it has the CA key, or will create it on first run. */
export const edgeCanForward = (home: string): boolean => !edgeIdentityExists(home) || existsSync(files(home).caKey);

export async function initEdgeIdentity(
  home: string,
  options: { hostnames?: string[]; ips?: string[]; advertise?: string; force?: boolean } = {},
): Promise<{ identity: EdgeIdentity; settings: EdgeSettings }> {
  if (edgeIdentityExists(home) && !options.force) throw identityExists(home);
  const hostnames = options.hostnames?.length ? options.hostnames : ['localhost'];
  const ips = options.ips?.length ? options.ips : ['127.0.0.1', '::1'];
  const advertise = options.advertise ? checkAdvertise(options.advertise) : `127.0.0.1:${DEFAULT_TUNNEL_PORT}`;
  const identity = await createEdgeIdentity({ hostnames, ips });
  const settings: EdgeSettings = { advertise, hostnames, ips };
  writeIdentityFiles(home, identity, settings, options.force === true);
  return { identity, settings };
}

/**
 * Two edges started at once on a fresh data directory must not interleave their files (one's
 * certificate with the other's key): the files are written into a fresh directory that is
 * renamed into place in one step, and the loser of the race finds the winner's identity.
 */
function writeIdentityFiles(home: string, identity: EdgeIdentity, settings: EdgeSettings, force: boolean): void {
  const target = dir(home);
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const staged = `${target}.${process.pid}.${randomBytes(4).toString('hex')}.new`;
  const write = (d: string) => {
    const f = files(d);
    writeSecretFileAtomic(f.caKey, identity.caKey);
    writeSecretFileAtomic(f.key, identity.key);
    writeSecretFileAtomic(f.cert, identity.certChain);
    writeSecretFileAtomic(f.caCert, identity.caCert);
    writeSecretFileAtomic(f.settings, `${JSON.stringify(settings, null, 2)}\n`);
  };
  // files() joins 'edge' below its argument: stage under <staged>/edge, move that directory.
  write(staged);
  try {
    if (existsSync(target) && readdirSync(target).length > 0) {
      if (!force && edgeIdentityExists(home)) throw identityExists(home);
      // Other state lives here too (hooks-state.json): replace the identity files one by one.
      for (const [name, path] of Object.entries(files(staged))) renameSync(path, files(home)[name as keyof ReturnType<typeof files>]);
      return;
    }
    try {
      renameSync(join(staged, 'edge'), target);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if ((code === 'ENOTEMPTY' || code === 'EEXIST') && edgeIdentityExists(home)) throw identityExists(home);
      throw err;
    }
  } finally {
    rmSync(staged, { recursive: true, force: true });
  }
}

const identityExists = (home: string) =>
  new OxyError(
    'OXY_ERR_EDGE_EXISTS',
    `The edge identity in ${dir(home)} already exists. Use --force to replace it (connectors pinned to the old CA will stop connecting).`,
  );

export interface LoadedEdgeIdentity {
  caCert: string;
  certChain: string;
  key: string;
  caPin: string;
  settings: EdgeSettings;
  /** The CA's key, to mint peer-link certificates (edge-to-edge forwarding); undefined when not copied here. */
  caKey?: string;
}

export function loadEdgeIdentity(home: string): LoadedEdgeIdentity {
  const f = files(home);
  if (!edgeIdentityExists(home)) {
    throw new OxyError('OXY_ERR_EDGE_IDENTITY', `No edge identity in ${dir(home)}. Create one with: oxyctl edge init`);
  }
  const caCert = readFileSync(f.caCert, 'utf8');
  return {
    caCert,
    certChain: readFileSync(f.cert, 'utf8'),
    key: readFileSync(f.key, 'utf8'),
    caPin: certificatePin(caCert),
    caKey: existsSync(f.caKey) ? readFileSync(f.caKey, 'utf8') : undefined,
    settings: JSON.parse(readFileSync(f.settings, 'utf8')) as EdgeSettings,
  };
}

/** What connectors on this host need to trust the local edge, if there is one. */
export function localEdgeTrust(home: string): { caCert: string; caPin: string; endpoint: string } | undefined {
  if (!edgeIdentityExists(home)) return undefined;
  const { caCert, caPin, settings } = loadEdgeIdentity(home);
  return { caCert, caPin, endpoint: settings.advertise };
}
