/**
 * HTTP request and response heads as stream-header metadata, in cloudflared's naming:
 * `HttpMethod`, `HttpHost`, `HttpHeader:<Name>` (repeated for repeated headers) and
 * `HttpStatus`. The edge encodes requests and decodes responses; the connector the reverse.
 */
import type { Metadata, MetadataEntry } from './stream-header.js';

/** Header pairs in order, names as received; repeated names stay repeated. */
export type HeaderPairs = [string, string][];

export interface HttpRequestHead {
  method: string;
  host: string;
  /** Path and query, e.g. `/a?b=1`. */
  path: string;
  headers: HeaderPairs;
}

export interface HttpResponseHead {
  status: number;
  headers: HeaderPairs;
}

const HEADER_PREFIX = 'HttpHeader:';

/** Hop-by-hop headers (RFC 9110 §7.6.1) never cross a proxy. */
export const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
]);

export const headerValue = (headers: HeaderPairs, name: string): string | undefined => headers.find(([k]) => k.toLowerCase() === name)?.[1];

const headerEntries = (headers: HeaderPairs): MetadataEntry[] => headers.map(([k, v]) => [`${HEADER_PREFIX}${k}`, v] as const);

function headersOf(metadata: Metadata): HeaderPairs {
  const out: HeaderPairs = [];
  for (const [k, v] of metadata) if (k.startsWith(HEADER_PREFIX)) out.push([k.slice(HEADER_PREFIX.length), v]);
  return out;
}

export const encodeRequestHead = (head: HttpRequestHead): Metadata => [
  ['HttpMethod', head.method],
  ['HttpHost', head.host],
  ['HttpPath', head.path],
  ...headerEntries(head.headers),
];

export function decodeRequestHead(metadata: Metadata): HttpRequestHead {
  const get = (k: string) => metadata.find(([key]) => key === k)?.[1];
  return { method: get('HttpMethod') ?? 'GET', host: get('HttpHost') ?? '', path: get('HttpPath') ?? '/', headers: headersOf(metadata) };
}

export const encodeResponseHead = (head: HttpResponseHead): Metadata => [['HttpStatus', String(head.status)], ...headerEntries(head.headers)];

export function decodeResponseHead(metadata: Metadata): HttpResponseHead {
  const status = Number(metadata.find(([k]) => k === 'HttpStatus')?.[1] ?? 502);
  return { status: Number.isInteger(status) && status >= 100 && status <= 999 ? status : 502, headers: headersOf(metadata) };
}

/** `rawHeaders` of a Node request as pairs. */
export function pairsFromRaw(raw: string[]): HeaderPairs {
  const out: HeaderPairs = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i], raw[i + 1]]);
  return out;
}
