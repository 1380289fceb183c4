/**
 * The pre-shared key scheme from "How Oxy uses hooks for maximum extensibility": private
 * addresses are blocked at egress, unless the client's CONNECT (or absolute-form request)
 * carried `Proxy-Authorization: Preshared <key>`. The header's verdict lives in the
 * connection's context (ctx.ext), set during the HTTP phase and read during egress.
 *
 *   OXY_PRESHARED_KEY=s3cret oxyctl edge run --proxy-listen 127.0.0.1:3128 --hooks ./examples/preshared-key.js
 *   curl -p -x http://127.0.0.1:3128 --proxy-header 'Proxy-Authorization: Preshared s3cret' http://10.1.2.3/
 *
 * Key: OXY_PRESHARED_KEY (default `oxy-is-a-proxy`, as in the post). Ranges: see block-private.js.
 */
import { timingSafeEqual } from 'node:crypto';
import { privateCidrs } from './lib/private-cidrs.js';

/** @type {import('oxyctl/hooks').HooksModuleStart<{ canAccessPrivateCidrs: boolean }>} */
export function start() {
  const expected = Buffer.from(`Preshared ${process.env.OXY_PRESHARED_KEY ?? 'oxy-is-a-proxy'}`);
  const cidrs = privateCidrs();
  const authorize = (headers, ctx) => {
    const value = headers.find(([name]) => name.toLowerCase() === 'proxy-authorization')?.[1];
    if (value === undefined) return;
    const given = Buffer.from(value);
    if (given.length === expected.length && timingSafeEqual(given, expected)) ctx.ext.canAccessPrivateCidrs = true;
  };
  return {
    /** @returns {{ canAccessPrivateCidrs: boolean }} the per-connection context */
    newCtx: () => ({ canAccessPrivateCidrs: false }),
    http: {
      handleProxyConnectRequest(head, ctx) {
        authorize(head.headers, ctx);
      },
      handleRequest(head, ctx) {
        authorize(head.headers, ctx);
      },
    },
    egress: {
      handleConnection(target, ctx) {
        if (cidrs.has(target.ip) && !ctx.ext.canAccessPrivateCidrs) {
          return { action: 'block', reason: `${target.ip} is private: send Proxy-Authorization: Preshared <key>` };
        }
        return undefined;
      },
    },
  };
}
