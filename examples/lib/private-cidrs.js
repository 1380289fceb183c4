/**
 * Private and local address ranges, as a node:net BlockList. Override the list with
 * OXY_PRIVATE_CIDRS="10.0.0.0/8,fc00::/7,…" (comma-separated).
 */
import { BlockList, isIP } from 'node:net';

export const DEFAULT_PRIVATE_CIDRS = [
  '10.0.0.0/8',
  '172.16.0.0/12',
  '192.168.0.0/16',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '100.64.0.0/10',
  '::1/128',
  'fc00::/7',
  'fe80::/10',
];

/** A matcher for `cidrs` (default: OXY_PRIVATE_CIDRS, else DEFAULT_PRIVATE_CIDRS). */
export function privateCidrs(
  cidrs = process.env.OXY_PRIVATE_CIDRS?.split(',')
    .map((s) => s.trim())
    .filter(Boolean) ?? DEFAULT_PRIVATE_CIDRS,
) {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [net, bits] = cidr.split('/');
    const type = isIP(net) === 6 ? 'ipv6' : 'ipv4';
    list.addSubnet(net, Number(bits ?? (type === 'ipv6' ? 128 : 32)), type);
  }
  return {
    cidrs,
    /** Whether `ip` is inside one of the ranges (IPv4-mapped IPv6 counts as IPv4). */
    has(ip) {
      const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
      if (mapped) return list.check(mapped[1], 'ipv4');
      return list.check(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4');
    },
  };
}
