/**
 * The connector's config.yml, as cloudflared reads it: tunnel, credentials-file, ingress
 * rules with originRequest defaults, and warp-routing for private-network traffic.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { OxyError } from '../../core/errors.js';
import { parseDuration } from './duration.js';
import { Ingress, newNotes, type ConfigNotes, type UnvalidatedRule } from './ingress.js';

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
  /**
   * Keys nested under ingress/originRequest/warp-routing that this version does not know
   * (cloudflared's "unused keys"), and known ones that have no effect here. Top-level keys
   * are flags: the command that reads the file sorts them (cli/config-file.ts).
   */
  notes: ConfigNotes;
}

/** Top-level keys that are the file's own structure rather than a flag's value. */
export const STRUCTURE_KEYS = new Set(['tunnel', 'credentials-file', 'ingress', 'originRequest', 'warp-routing']);

/** Where a config file is looked for, in cloudflared's order, under oxyctl's names then cloudflared's. */
export function configSearchDirs(home: string): { dir: string; cloudflared: boolean }[] {
  const user = homedir();
  const ours = [home, join(user, '.oxyctl'), '/etc/oxyctl', '/usr/local/etc/oxyctl'];
  const theirs = [join(user, '.cloudflared'), join(user, '.cloudflare-warp'), join(user, 'cloudflare-warp'), '/etc/cloudflared', '/usr/local/etc/cloudflared'];
  return [...new Set(ours)].map((dir) => ({ dir, cloudflared: false })).concat(theirs.map((dir) => ({ dir, cloudflared: true })));
}

/**
 * `--config`, else the first config.yml / config.yaml of the search directories. A file in
 * a cloudflared directory is reported through `onCloudflared` (one notice line), so an
 * existing cloudflared host migrates by installing oxyctl.
 */
export function findConfigFile(home: string, explicit?: string, onCloudflared?: (path: string) => void): string | undefined {
  if (explicit) return explicit;
  for (const { dir, cloudflared } of configSearchDirs(home)) {
    for (const name of ['config.yml', 'config.yaml']) {
      const path = join(dir, name);
      if (!existsSync(path)) continue;
      if (cloudflared) onCloudflared?.(path);
      return path;
    }
  }
  return undefined;
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
  const notes = newNotes();
  const ingress = raw.ingress !== undefined || options.requireIngress ? Ingress.parse(raw.ingress, raw.originRequest, notes) : undefined;
  const wr = raw['warp-routing'] ?? {};
  const warpRouting: WarpRouting = {
    enabled: wr.enabled === undefined ? true : wr.enabled === true,
    connectTimeoutMs:
      wr.connectTimeout === undefined ? DEFAULT_WARP_ROUTING.connectTimeoutMs : parseDuration(wr.connectTimeout as string, 'warp-routing.connectTimeout'),
    maxActiveFlows: wr.maxActiveFlows === undefined ? 0 : Number(wr.maxActiveFlows),
    tcpKeepAliveMs: wr.tcpKeepAlive === undefined ? DEFAULT_WARP_ROUTING.tcpKeepAliveMs : parseDuration(wr.tcpKeepAlive as string, 'warp-routing.tcpKeepAlive'),
  };
  for (const k of Object.keys(wr)) if (!['enabled', 'connectTimeout', 'maxActiveFlows', 'tcpKeepAlive'].includes(k)) notes.unknown.push(`warp-routing.${k}`);
  return {
    source,
    raw,
    tunnel: raw.tunnel,
    credentialsFile: raw['credentials-file'],
    ingress,
    warpRouting,
    notes,
  };
}

export const loadConfig = (path: string, options?: { requireIngress?: boolean }): ConnectorConfig => parseConfig(readRawConfig(path), path, options);
