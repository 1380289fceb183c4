/**
 * A policy per virtual network: the same addresses reachable from one vnet and not from
 * another. Each vnet (by name) may list the CIDRs it may reach (`allow`: nothing else) and
 * the CIDRs it may not (`deny`); a vnet without rules gets the engine's default egress.
 *
 *   OXY_VNET_POLICY='{"lab": {"allow": ["198.18.0.0/24"]}, "guest": {"deny": ["198.18.0.0/24"]}}' \
 *     oxyctl edge run --proxy-listen 127.0.0.1:3128 --hooks ./examples/vnet-policy.js
 *   curl -p -x http://127.0.0.1:3128 --proxy-header 'Oxy-Vnet: lab' http://198.18.0.10/     # through
 *   curl -p -x http://127.0.0.1:3128 --proxy-header 'Oxy-Vnet: guest' http://198.18.0.10/   # 403
 *
 * The vnet is the one the on-ramp resolved once (`ctx.vnet`, `flow.vnet`: ID and name): the
 * forward proxy's `Oxy-Vnet` header or the default vnet, a device's context for IP flows.
 * Requests through the proxy are blocked (403, Proxy-Status destination_ip_prohibited);
 * device flows are dropped, TCP with a reset.
 */
import { privateCidrs as cidrMatcher } from './lib/private-cidrs.js';

/**
 * The rules of each vnet, from JSON (default: OXY_VNET_POLICY): `{"<vnet name>": {"allow": [CIDR…], "deny": [CIDR…]}}`.
 * @param {string} [text]
 */
export function loadPolicy(text = process.env.OXY_VNET_POLICY ?? '{}') {
  /** @type {Record<string, { allow?: string[]; deny?: string[] }>} */
  const raw = JSON.parse(text);
  return new Map(
    Object.entries(raw).map(([vnet, rules]) => [vnet, { allow: rules.allow && cidrMatcher(rules.allow), deny: rules.deny && cidrMatcher(rules.deny) }]),
  );
}

/**
 * What the policy says of `ip` in `vnet`: 'deny', 'allow', or undefined (no rules: the engine's default).
 * @param {ReturnType<typeof loadPolicy>} policy
 * @param {import('oxyctl/hooks').VirtualNetwork | undefined} vnet
 * @param {string} ip
 */
export function decide(policy, vnet, ip) {
  const rules = vnet && policy.get(vnet.name);
  if (!rules) return undefined;
  if (rules.deny?.has(ip)) return 'deny';
  if (rules.allow) return rules.allow.has(ip) ? 'allow' : 'deny';
  return undefined;
}

/** @type {import('oxyctl/hooks').HooksModuleStart} */
export function start(settings) {
  const policy = loadPolicy();
  settings.log.info({ vnets: [...policy.keys()].join(',') }, 'Per-vnet egress policy');
  return {
    egress: {
      handleConnection(target, ctx) {
        if (decide(policy, ctx.vnet, target.ip) !== 'deny') return undefined;
        return { action: 'block', reason: `${target.ip} is not reachable from virtual network ${ctx.vnet?.name}` };
      },
    },
    ipFlow: {
      handleFlow(flow) {
        if (decide(policy, flow.vnet, flow.dst.address) === 'deny') return { action: 'drop', reset: true };
        return undefined;
      },
    },
  };
}
