/**
 * The edge's web dashboard (`edge run --dashboard-listen HOST:PORT`): the single-page front
 * end, the JSON API under /api/v1 and its live event stream, on a listener of its own. Off
 * by default; a bind beyond loopback needs TLS (`--dashboard-tls`, with the edge's own
 * certificate) or an explicit `--dashboard-insecure`, since the login token and session
 * cookie would otherwise cross the network in the clear.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { OxyError, type ErrorCode } from '../../../core/errors.js';
import type { Logger } from '../../observe/log.js';
import { splitHostPort } from '../../../core/address.js';
import { createHttpServer, type HttpTimeouts } from '../../util/http-server.js';
import { errorBody, handleApi } from './api.js';
import { DashboardAuth, type Principal } from './auth.js';
import { LiveFeed, type LiveSources } from './live.js';
import { loadStaticFiles, type StaticFile } from './static.js';

export interface DashboardOptions extends LiveSources {
  /** HOST:PORT (port 0: any). */
  listen: string;
  log: Logger;
  /** Serve HTTPS with this key and certificate chain (PEM). */
  tls?: { key: string; cert: string };
  /** Allow a non-loopback bind without TLS. */
  insecure?: boolean;
  /** Client timeouts (edge.yml http-timeouts; the TLS handshake counts as the head); default HTTP_TIMEOUTS. */
  timeouts?: Partial<HttpTimeouts>;
  /** Where the built front end is (default: dist/dashboard in the package). */
  assetsDir?: string;
}

/** Largest JSON body the API reads. */
const MAX_BODY = 64 * 1024;

const SECURITY_HEADERS = {
  'content-security-policy': "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

export const isLoopbackHost = (host: string): boolean => host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export class DashboardServer {
  readonly #server: Server;
  readonly #auth: DashboardAuth;
  readonly live: LiveFeed;
  readonly #files: Map<string, StaticFile>;

  static async listen(o: DashboardOptions): Promise<DashboardServer> {
    const { host, port } = splitHostPort(o.listen);
    if (!isLoopbackHost(host) && !o.tls && !o.insecure) {
      throw new OxyError(
        'OXY_ERR_DASHBOARD_INSECURE',
        `The dashboard would listen on ${o.listen} without TLS, where its login token and session cookie cross the network in the clear. ` +
          'Add --dashboard-tls (HTTPS with the edge certificate), bind it to 127.0.0.1, or pass --dashboard-insecure if a TLS proxy sits in front.',
      );
    }
    const dashboard = new DashboardServer(o);
    await new Promise<void>((resolve, reject) => {
      const failed = (err: NodeJS.ErrnoException) =>
        reject(
          err.code === 'EADDRINUSE'
            ? new OxyError('OXY_ERR_LISTEN_IN_USE', `The dashboard cannot listen on ${o.listen}: the address is in use. Choose another --dashboard-listen.`, {
                cause: err,
              })
            : err,
        );
      dashboard.#server.once('error', failed);
      dashboard.#server.listen(port, host, () => {
        dashboard.#server.off('error', failed);
        resolve();
      });
    });
    dashboard.#server.on('error', (err) => o.log.warn({ err }, 'Dashboard listener error'));
    return dashboard;
  }

  private constructor(private readonly o: DashboardOptions) {
    this.#auth = new DashboardAuth(o.store, o.tls !== undefined);
    this.live = new LiveFeed(o);
    this.#files = loadStaticFiles(o.assetsDir);
    // A handler that rejects fails its request (createHttpServer answers 500), never the process.
    const handler = (req: IncomingMessage, res: ServerResponse) => this.#handle(req, res);
    this.#server = createHttpServer(handler, o.timeouts, o.tls);
    this.#server.on('clientError', (_err, socket) => socket.destroy());
  }

  get address(): AddressInfo {
    return this.#server.address() as AddressInfo;
  }

  get url(): string {
    const a = this.address;
    return `${this.o.tls ? 'https' : 'http'}://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/`;
  }

  async close(): Promise<void> {
    this.live.close();
    this.#server.closeAllConnections();
    await new Promise((resolve) => this.#server.close(resolve));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.on('error', () => undefined);
    req.on('error', () => undefined);
    try {
      const url = new URL(req.url ?? '/', 'http://dashboard');
      if (url.pathname === '/api/v1' || url.pathname.startsWith('/api/v1/')) await this.#api(req, res, url);
      else this.#static(req, res, url.pathname);
    } catch (err) {
      if (err instanceof HttpError) this.#json(res, err.status, errorBody(err.code, err.message));
      else {
        // Internals stay in the log, never in the answer.
        this.o.log.warn({ err, path: req.url }, 'Dashboard request failed');
        if (!res.headersSent) this.#json(res, 500, errorBody('OXY_ERR_DASHBOARD_INTERNAL', 'The dashboard could not answer; the edge log says why.'));
        else res.destroy();
      }
    }
  }

  #json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      ...SECURITY_HEADERS,
      'content-type': 'application/json',
      'cache-control': 'no-store',
      'content-length': Buffer.byteLength(text),
      ...headers,
    });
    res.end(text);
  }

  #static(req: IncomingMessage, res: ServerResponse, path: string): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') throw new HttpError(405, 'OXY_ERR_DASHBOARD_METHOD', `${req.method} is not allowed here`);
    // Paths without a file are the single page's own views.
    const file = this.#files.get(path) ?? (path.startsWith('/assets/') ? undefined : this.#files.get('/'));
    if (!file) {
      const text = this.#files.size === 0 ? 'The dashboard front end is not built: run npm run build.\n' : 'Not found\n';
      res.writeHead(404, { ...SECURITY_HEADERS, 'content-type': 'text/plain; charset=utf-8' });
      res.end(text);
      return;
    }
    if (req.headers['if-none-match'] === file.headers.etag) {
      res.writeHead(304, { ...SECURITY_HEADERS, etag: file.headers.etag, 'cache-control': file.headers['cache-control'] });
      res.end();
      return;
    }
    const gzip = file.gzip && /\bgzip\b/.test(String(req.headers['accept-encoding'] ?? '')) ? file.gzip : undefined;
    const body = gzip ?? file.body;
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      ...file.headers,
      vary: 'accept-encoding',
      ...(gzip ? { 'content-encoding': 'gzip' } : {}),
      'content-length': body.length,
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  async #api(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const segments = url.pathname.slice('/api/v1/'.length).split('/').filter(Boolean).map(decodeURIComponent);
    const method = req.method ?? 'GET';
    const changes = method !== 'GET' && method !== 'HEAD';
    if (segments[0] === 'login' && segments.length === 1) {
      if (method !== 'POST') throw new HttpError(405, 'OXY_ERR_DASHBOARD_METHOD', 'Log in with POST');
      const body = await readJson(req);
      const login = typeof body.token === 'string' ? await this.#auth.login(req, body.token.trim()) : undefined;
      if (!login)
        throw new HttpError(401, 'OXY_ERR_DASHBOARD_UNAUTHORIZED', "That is not the dashboard's token. Print a new one with: oxyctl edge dashboard-token");
      this.o.log.info({ client: req.socket.remoteAddress }, 'Dashboard login');
      this.#json(res, 200, { csrf_token: login.session.csrf }, { 'set-cookie': login.cookie });
      return;
    }
    const principal = await this.#auth.authenticate(req);
    if (!principal) {
      throw new HttpError(
        401,
        'OXY_ERR_DASHBOARD_UNAUTHORIZED',
        'Log in first (POST /api/v1/login), or send Authorization: Bearer TOKEN; print a token with: oxyctl edge dashboard-token',
      );
    }
    if (changes && !this.#auth.csrfSafe(req, principal)) {
      throw new HttpError(
        403,
        'OXY_ERR_DASHBOARD_CSRF',
        'A state-changing call from a browser session must send its X-CSRF-Token (from the login answer) from the dashboard page itself',
      );
    }
    if (segments[0] === 'session' && segments.length === 1) return this.#session(req, res, method, principal);
    if (segments[0] === 'events' && segments.length === 1 && method === 'GET') {
      await this.live.watch(res, () => this.#auth.stillAllowed(principal));
      return;
    }
    const body = method === 'POST' ? await readJson(req) : (req.resume(), {});
    const result = await handleApi({ store: this.o.store, view: this.o.view, live: this.live }, { method, segments, query: url.searchParams, body });
    if (changes && result.status < 400) this.o.log.info({ method, path: url.pathname, client: req.socket.remoteAddress }, 'Dashboard change');
    this.#json(res, result.status, result.body);
  }

  #session(req: IncomingMessage, res: ServerResponse, method: string, p: Principal): void {
    req.resume();
    if (method === 'GET') this.#json(res, 200, p.kind === 'session' ? { csrf_token: p.session.csrf } : { csrf_token: null });
    else if (method === 'DELETE') {
      const cookie = p.kind === 'session' ? this.#auth.logout(req, p.id) : undefined;
      res.writeHead(204, { ...SECURITY_HEADERS, 'cache-control': 'no-store', ...(cookie ? { 'set-cookie': cookie } : {}) });
      res.end();
    } else throw new HttpError(405, 'OXY_ERR_DASHBOARD_METHOD', 'GET or DELETE /api/v1/session');
  }
}

/** The request's JSON object body (application/json, at most MAX_BODY bytes); none: {}. */
async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  if (req.headers['content-length'] === '0' || (req.headers['content-length'] === undefined && req.headers['transfer-encoding'] === undefined)) return {};
  const type = req.headers['content-type'] ?? '';
  if (!/^application\/json\b/i.test(type)) {
    req.resume();
    throw new HttpError(415, 'OXY_ERR_DASHBOARD_BAD_REQUEST', 'Send the body as Content-Type: application/json');
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new HttpError(413, 'OXY_ERR_DASHBOARD_BAD_REQUEST', `The body is larger than ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  if (size === 0) return {};
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'OXY_ERR_DASHBOARD_BAD_REQUEST', 'The body is not valid JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new HttpError(400, 'OXY_ERR_DASHBOARD_BAD_REQUEST', 'The body must be a JSON object');
  return body as Record<string, unknown>;
}
