/**
 * The HTTP request hooks as the on-ramps that proxy HTTP run them (forward proxy,
 * public-hostname listener): `http.handleRequest` before the request leaves, with its local
 * answers, `http.handleResponse` on the answer, and the streaming body rewrites of both.
 * Callers test `runner.httpRequest` / `runner.httpResponse` first: with neither implemented
 * nothing here runs.
 */
import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { HookConnection, HookRunner } from '../../hooks/runner.js';
import type { BodyTransform, HookContext, HttpRequestHead, HttpResponseHead, HttpSynthetic } from '../../hooks/types.js';

const withoutContentLength = (headers: [string, string][]) => headers.filter(([k]) => k.toLowerCase() !== 'content-length');

/**
 * `http.handleRequest` for `head` (mutated in place by the hook): a local answer, or the body
 * rewrite to apply (the head's Content-Length is dropped then: the rewrite changes the length).
 */
export async function requestHook(r: HookRunner, conn: HookConnection, head: HttpRequestHead): Promise<HttpSynthetic | { body?: BodyTransform }> {
  const outcome = r.httpRequest ? await r.call(conn, 'http.handleRequest', r.httpRequest, head, conn as HookContext<unknown>) : undefined;
  if (outcome && 'respond' in outcome) return outcome;
  if (outcome?.body) head.headers = withoutContentLength(head.headers);
  return { body: outcome?.body };
}

/** `http.handleResponse` for `head` (mutated in place): the body rewrite to apply, Content-Length dropped with it. */
export async function responseHook(r: HookRunner, conn: HookConnection, head: HttpResponseHead): Promise<BodyTransform | undefined> {
  const body = r.httpResponse ? (await r.call(conn, 'http.handleResponse', r.httpResponse, head, conn as HookContext<unknown>))?.body : undefined;
  if (body) head.headers = withoutContentLength(head.headers);
  return body;
}

/** A body as it streams, through `transform` when there is one. */
export const rewritten = (body: Readable, transform: BodyTransform | undefined): Readable => (transform ? Readable.from(transform(body)) : body);

/** Writes a hook's `{ respond }` answer. */
export function writeSynthetic(res: ServerResponse, respond: HttpSynthetic['respond']): void {
  const body = respond.body ?? '';
  res.writeHead(respond.status, [...(respond.headers ?? []), ['Content-Length', String(Buffer.byteLength(body))]].flat());
  res.end(body);
}

/** A hook's `{ respond }` answer as raw HTTP/1.1 bytes, for a socket that is no ServerResponse (an upgrade request); the connection closes after it. */
export function syntheticBytes(respond: HttpSynthetic['respond'], statusText: string): Buffer {
  const body = Buffer.from(respond.body ?? '');
  let head = `HTTP/1.1 ${respond.status} ${statusText}\r\n`;
  for (const [k, v] of respond.headers ?? []) head += `${k}: ${v}\r\n`;
  head += `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}
