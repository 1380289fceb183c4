/**
 * RFC 9209 `Proxy-Status` for the answers oxyctl makes itself (public error pages, the
 * connector's 502s): the error type tells a client what went wrong in a standard word; the
 * page says what a visitor needs. Internals (tunnel IDs, addresses, transport errors) go to
 * the log, never into either.
 */
export type ProxyErrorType =
  | 'destination_not_found'
  | 'destination_unavailable'
  | 'destination_ip_prohibited'
  | 'destination_ip_unroutable'
  | 'dns_error'
  | 'connection_refused'
  | 'connection_timeout'
  | 'connection_terminated'
  | 'http_request_error'
  | 'http_protocol_error'
  | 'http_response_timeout'
  | 'proxy_internal_error';

export const PROXY_NAME = 'oxyctl';

export const proxyStatus = (error: ProxyErrorType, name = PROXY_NAME): string => `${name}; error=${error}`;

/** A forwarded answer's Proxy-Status value: the edge (its location) that served it, as RFC 9209's `next-hop`. */
export const nextHopStatus = (location: string, name = PROXY_NAME): string => `${name}; next-hop=${JSON.stringify(location.replace(/[^\x20-\x7e]/g, '?'))}`;

/** The error type for a failed dial to an origin (a Node/undici error code). */
export function dialErrorType(err: unknown): ProxyErrorType {
  const code = (err as { code?: string })?.code ?? '';
  if (code === 'ECONNREFUSED') return 'connection_refused';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'dns_error';
  if (/TIMEOUT/i.test(code)) return 'connection_timeout';
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') return 'connection_terminated';
  return 'destination_unavailable';
}

/** A plain-text error page: status, Proxy-Status and a body of `text`. */
export function errorPage(status: number, error: ProxyErrorType, text: string): { status: number; headers: [string, string][]; body: Buffer } {
  const body = Buffer.from(text.endsWith('\n') ? text : `${text}\n`);
  return {
    status,
    headers: [
      ['content-type', 'text/plain; charset=utf-8'],
      ['proxy-status', proxyStatus(error)],
      ['content-length', String(body.length)],
    ],
    body,
  };
}
