/**
 * cloudflared's `originRequest.ipRules`: an ordered access policy over destination IP and
 * port. The first rule whose prefix contains the address (and whose ports, if any, include
 * the port) decides; with no match — and with no rules at all — the destination is refused,
 * as cloudflared's `ipaccess.NewPolicy(false, …)` does.
 */
import { parseCidr, parseIp, type ParsedCidr } from '../../core/cidr.js';
import { OxyError } from '../../core/errors.js';

export interface IpRule {
  prefix: ParsedCidr;
  /** Empty: every port. */
  ports: number[];
  allow: boolean;
}

export class IpAccessPolicy {
  constructor(readonly rules: IpRule[]) {}

  /** Reads a YAML/JSON `ipRules` list; a bad prefix or port is an ingress error naming the rule. */
  static parse(raw: unknown, where: string): IpAccessPolicy {
    if (!Array.isArray(raw)) throw new OxyError('OXY_ERR_INGRESS_INVALID', `${where}.ipRules must be a list of {prefix, ports, allow}`);
    return new IpAccessPolicy(
      raw.map((r: { prefix?: unknown; ports?: unknown; allow?: unknown }, i) => {
        if (typeof r?.prefix !== 'string' || r.prefix === '') {
          throw new OxyError('OXY_ERR_INGRESS_INVALID', `unable to create ip rule for ${where}.ipRules[${i}]: no prefix provided`);
        }
        let prefix: ParsedCidr;
        try {
          prefix = parseCidr(r.prefix);
        } catch {
          throw new OxyError('OXY_ERR_INGRESS_INVALID', `unable to create ip rule for ${where}.ipRules[${i}]: unable to parse cidr: ${r.prefix}`);
        }
        const ports = r.ports === undefined || r.ports === null ? [] : Array.isArray(r.ports) ? r.ports.map(Number) : [NaN];
        for (const p of ports) {
          if (!Number.isInteger(p) || p < 1 || p > 65535) {
            throw new OxyError(
              'OXY_ERR_INGRESS_INVALID',
              `unable to create ip rule for ${where}.ipRules[${i}]: invalid port ${String(p)}, needs to be between 1 and 65535`,
            );
          }
        }
        return { prefix, ports: ports.sort((a, b) => a - b), allow: r.allow === true };
      }),
    );
  }

  /** Whether `ip:port` may be dialled, and the rule that decided (undefined: the default, deny). */
  allowed(ip: string, port: number): { allow: boolean; rule?: IpRule } {
    let addr: Uint8Array;
    try {
      addr = parseIp(ip).bytes;
    } catch {
      return { allow: false };
    }
    for (const rule of this.rules) {
      if (!contains(rule.prefix, addr)) continue;
      if (rule.ports.length === 0 || rule.ports.includes(port)) return { allow: rule.allow, rule };
    }
    return { allow: false };
  }
}

function contains(net: ParsedCidr, addr: Uint8Array): boolean {
  if (net.bytes.length !== addr.length) return false;
  let bits = net.prefixLength;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((net.bytes[i] & mask) !== (addr[i] & mask)) return false;
  }
  return true;
}
