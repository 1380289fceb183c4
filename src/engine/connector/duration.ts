import { OxyError } from '../../core/errors.js';

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * A Go duration ("30s", "1m30s", "500ms", "1h") in milliseconds, as cloudflared's config and
 * flags spell durations. A bare number is taken as seconds, as YAML configs often write them.
 */
export function parseDuration(value: string | number, what = 'duration'): number {
  if (typeof value === 'number' && Number.isFinite(value) && value >= 0) return value * 1000;
  const text = String(value).trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) {
    total += Number(m[1]) * UNIT_MS[m[2]];
    end = re.lastIndex;
  }
  if (text === '' || end !== text.length) {
    throw new OxyError('OXY_ERR_INVALID_DURATION', `Invalid ${what} ${JSON.stringify(value)}: use a duration like 30s, 1m30s or 500ms`);
  }
  return total;
}
