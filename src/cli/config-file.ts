/**
 * A connector config file as cloudflared reads it: found where cloudflared looks (our
 * directories first), its top-level keys taken as the values of `tunnel run`'s flags unless
 * the command line or the environment set them, and every key that will not act said once
 * on stderr — unknown keys named, known-but-ineffective ones too. Never a silent ignore.
 */
import { OxyError } from '../core/errors.js';
import { findConfigFile, readRawConfig, parseConfig, STRUCTURE_KEYS, type ConnectorConfig, type RawConfig } from '../engine/connector/config.js';
import { NO_EFFECT_FLAGS, saidNoEffect } from './argv.js';

/** The part of an oclif flag definition a config value needs. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type FlagDef = { type: 'boolean' | 'option'; multiple?: boolean; options?: readonly string[]; parse?: (input: any, ...rest: any[]) => unknown };
type FlagDefs = Record<string, FlagDef>;

export interface ConfigFileUse {
  home: string;
  /** --config */
  explicit?: string;
  /** The flags the file's keys stand for (tunnel run's), and the parsed values to fill. */
  flagDefs: FlagDefs;
  flags: Record<string, unknown>;
  explicitFlags: Set<string>;
  requireIngress?: boolean;
  /** Where notices go (stderr); tests and `ingress validate` may collect them. */
  notice?: (line: string) => void;
}

export interface AppliedConfig {
  file?: string;
  config?: ConnectorConfig;
  /** Top-level keys that set a flag's value. */
  applied: string[];
  unknown: string[];
  noEffect: string[];
}

const stderr = (line: string): void => void process.stderr.write(`${line}\n`);

export function cloudflaredNotice(path: string): string {
  return `Using cloudflared's config file ${path} (no config.yml in oxyctl's directories)`;
}

/** Finds, reads and applies the config file; returns nothing found as `{}` with empty lists. */
export async function applyConfigFile(u: ConfigFileUse): Promise<AppliedConfig> {
  const notice = u.notice ?? stderr;
  const file = findConfigFile(u.home, u.explicit, (p) => notice(cloudflaredNotice(p)));
  if (!file) return { applied: [], unknown: [], noEffect: [] };
  const raw = readRawConfig(file);
  const result = await applyRawConfig(raw, file, u);
  for (const line of configWarnings(result)) notice(line);
  return result;
}

export async function applyRawConfig(raw: RawConfig, file: string, u: Omit<ConfigFileUse, 'home' | 'explicit'>): Promise<AppliedConfig> {
  const config = parseConfig(raw, file, { requireIngress: u.requireIngress });
  const applied: string[] = [];
  const unknown: string[] = [];
  const noEffect: string[] = [];
  for (const [key, value] of Object.entries(raw)) {
    if (STRUCTURE_KEYS.has(key) || key === 'config') continue;
    const def = u.flagDefs[key];
    if (def) {
      if (!u.explicitFlags.has(key)) u.flags[key] = await flagValue(def, key, value, file);
      applied.push(key);
    } else if (key in NO_EFFECT_FLAGS) {
      if (!saidNoEffect.has(key)) noEffect.push(key);
    } else unknown.push(key);
  }
  return { file, config, applied, unknown: [...unknown, ...config.notes.unknown], noEffect: [...noEffect, ...config.notes.noEffect] };
}

export function configWarnings(a: Pick<AppliedConfig, 'file' | 'unknown' | 'noEffect'>): string[] {
  const lines: string[] = [];
  if (a.unknown.length > 0) lines.push(`Warning: ${a.file} has keys oxyctl does not know, ignored: ${a.unknown.join(', ')}`);
  if (a.noEffect.length > 0)
    lines.push(
      `Note: ${a.file}: ${a.noEffect.join(', ')} ha${a.noEffect.length === 1 ? 's' : 've'} no effect in oxyctl (accepted for cloudflared compatibility)`,
    );
  return lines;
}

/** A YAML value as the flag would have parsed it from the command line. */
async function flagValue(def: FlagDef, key: string, value: unknown, file: string): Promise<unknown> {
  const bad = (why: string): never => {
    throw new OxyError('OXY_ERR_CONFIG', `${file}: ${key}: ${why}`);
  };
  if (def.type === 'boolean') {
    if (typeof value === 'boolean') return value;
    if (typeof value === 'string' && /^(true|false)$/i.test(value)) return value.toLowerCase() === 'true';
    return bad(`expected true or false, got ${JSON.stringify(value)}`);
  }
  // cloudflared's list-valued flags (`edge: [a, b]`): every value for a repeatable flag, else the first.
  if (Array.isArray(value) && value.length >= 1 && value.every((v) => typeof v !== 'object')) {
    if (def.multiple) return Promise.all(value.map((v) => flagValue({ ...def, multiple: false }, key, v, file)));
    value = value[0];
  }
  if (value === null || typeof value === 'object') return bad(`expected a single value, got ${JSON.stringify(value)}`);
  const text = String(value);
  if (def.options && !def.options.includes(text)) bad(`expected one of ${def.options.join(', ')}, got ${text}`);
  try {
    return def.parse ? await def.parse(text, undefined, def) : text;
  } catch (err) {
    return bad((err as Error).message);
  }
}
