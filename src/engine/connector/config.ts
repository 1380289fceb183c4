/**
 * The connector's config.yml, as cloudflared reads it: tunnel, credentials-file, ingress
 * rules with originRequest defaults, and warp-routing for private-network traffic.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { OxyError } from '../../core/errors.js';
import { parseDuration } from './duration.js';
import { Ingress, type UnvalidatedRule } from './ingress.js';

export interface WarpRouting {
  enabled: boolean;
  connectTimeoutMs: number;
  maxActiveFlows: number;
  tcpKeepAliveMs: number;
}

export const DEFAULT_WARP_ROUTING: WarpRouting = {
  enabled: true,
  connectTimeoutMs: 5_000,
  maxActiveFlows: 0,
  tcpKeepAliveMs: 30_000,
};

export interface RawConfig {
  tunnel?: string;
  'credentials-file'?: string;
  ingress?: UnvalidatedRule[];
  originRequest?: Record<string, unknown>;
  'warp-routing'?: Record<string, unknown>;
  [key: string]: unknown;
}

export interface ConnectorConfig {
  source: string;
  raw: RawConfig;
  tunnel?: string;
  credentialsFile?: string;
  /** Undefined when the file has no ingress rules (then --url / --hello-world decide). */
  ingress?: Ingress;
  warpRouting: WarpRouting;
  /** Keys this version does not know, for cloudflared's "unused keys" warning. */
  unknownKeys: string[];
}

const KNOWN_TOP_LEVEL = new Set([
  'tunnel', 'credentials-file', 'ingress', 'originRequest', 'warp-routing', 'protocol', 'loglevel', 'logfile',
  'metrics', 'ha-connections', 'grace-period', 'edge', 'no-autoupdate', 'url', 'hello-world', 'token',
]);

/** `--config`, else config.yml / config.yaml in the data directory. */
export function findConfigFile(home: string, explicit?: string): string | undefined {
  if (explicit) return explicit;
  return ['config.yml', 'config.yaml'].map((f) => join(home, f)).find((f) => existsSync(f));
}

export function readRawConfig(path: string): RawConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new OxyError('OXY_ERR_CONFIG', `Cannot read the config file ${path}: ${(err as Error).message}`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new OxyError('OXY_ERR_CONFIG', `The config file ${path} is not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  if (raw === null || raw === undefined) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new OxyError('OXY_ERR_CONFIG', `The config file ${path} must be a YAML mapping (key: value), not ${Array.isArray(raw) ? 'a list' : typeof raw}`);
  }
  return raw as RawConfig;
}

export function parseConfig(raw: RawConfig, source: string, options: { requireIngress?: boolean } = {}): ConnectorConfig {
  const unknownKeys = Object.keys(raw).filter((k) => !KNOWN_TOP_LEVEL.has(k));
  const ingress =
    raw.ingress !== undefined || options.requireIngress ? Ingress.parse(raw.ingress, raw.originRequest, unknownKeys) : undefined;
  const wr = raw['warp-routing'] ?? {};
  const warpRouting: WarpRouting = {
    enabled: wr.enabled === undefined ? true : wr.enabled === true,
    connectTimeoutMs: wr.connectTimeout === undefined ? DEFAULT_WARP_ROUTING.connectTimeoutMs : parseDuration(wr.connectTimeout as string, 'warp-routing.connectTimeout'),
    maxActiveFlows: wr.maxActiveFlows === undefined ? 0 : Number(wr.maxActiveFlows),
    tcpKeepAliveMs: wr.tcpKeepAlive === undefined ? DEFAULT_WARP_ROUTING.tcpKeepAliveMs : parseDuration(wr.tcpKeepAlive as string, 'warp-routing.tcpKeepAlive'),
  };
  for (const k of Object.keys(wr)) if (!['enabled', 'connectTimeout', 'maxActiveFlows', 'tcpKeepAlive'].includes(k)) unknownKeys.push(`warp-routing.${k}`);
  return {
    source,
    raw,
    tunnel: raw.tunnel,
    credentialsFile: raw['credentials-file'],
    ingress,
    warpRouting,
    unknownKeys,
  };
}

export const loadConfig = (path: string, options?: { requireIngress?: boolean }): ConnectorConfig =>
  parseConfig(readRawConfig(path), path, options);
