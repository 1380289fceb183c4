/**
 * Blocks egress to private and local addresses (RFC 1918, loopback, link-local, CGNAT,
 * ULA): a forward proxy that must not be a way into the networks behind it.
 *
 *   oxyctl edge run --proxy-listen 127.0.0.1:3128 --hooks ./examples/block-private.js
 *   curl -p -x http://127.0.0.1:3128 http://10.1.2.3/   # → 403, Proxy-Status: …error=destination_ip_prohibited
 *
 * The ranges: OXY_PRIVATE_CIDRS (comma-separated), else lib/private-cidrs.js's defaults.
 * Everything else gets the engine's default egress (a tunnel whose route covers the IP,
 * else direct).
 */
import { privateCidrs } from './lib/private-cidrs.js';

/** @type {import('oxyctl/hooks').HooksModuleStart} */
export function start(settings) {
  const cidrs = privateCidrs();
  settings.log.info({ cidrs: cidrs.cidrs.join(',') }, 'Blocking egress to private ranges');
  return {
    egress: {
      handleConnection(target) {
        if (cidrs.has(target.ip)) return { action: 'block', reason: `${target.ip} is a private address` };
        return undefined; // the engine's default
      },
    },
  };
}
