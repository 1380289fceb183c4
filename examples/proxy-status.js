/**
 * RFC 9209 `Proxy-Status` with the `next-hop` parameter on CONNECT responses: the
 * address the edge really connected to (after DNS, upstream-IP hooks and tunnel
 * routing), saved by egress.handleConnectionEstablished in the connection's context and
 * written by http.handleProxyConnectResponse.
 *
 *   oxyctl edge run --proxy-listen 127.0.0.1:3128 --proxy-allow 127.0.0.1:8080 --hooks ./examples/proxy-status.js
 *   curl -sv -p -x http://127.0.0.1:3128 http://localhost:8080/ 2>&1 | grep -i proxy-status
 *   < Proxy-Status: oxyctl; next-hop="127.0.0.1:8080"
 *
 * Proxy name: OXY_PROXY_NAME (default `oxyctl`).
 */
/** @type {import('oxyctl/hooks').HooksModuleStart<{ upstream?: import('oxyctl/hooks').SocketAddress; via?: string }>} */
export function start() {
  const name = process.env.OXY_PROXY_NAME ?? 'oxyctl';
  const hostPort = ({ address, port }) => (address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`);
  return {
    newCtx: () => ({ upstream: undefined, via: undefined }),
    egress: {
      handleConnectionEstablished(info, ctx) {
        ctx.ext.upstream = info.upstream;
        ctx.ext.via = info.via;
      },
    },
    http: {
      handleProxyConnectResponse(res, ctx) {
        if (!ctx.ext.upstream) return;
        res.headers.push(['Proxy-Status', `${name}; next-hop="${hostPort(ctx.ext.upstream)}"`]);
      },
    },
  };
}
