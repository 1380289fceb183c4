/**
 * Who may use the dashboard. A browser logs in once with the token `oxyctl edge
 * dashboard-token` printed and gets a session cookie (HttpOnly, SameSite=Strict) plus a CSRF
 * token it must echo in `X-CSRF-Token` on every state-changing call; API clients send the
 * token itself as `Authorization: Bearer …` (a header no other site can make a browser send,
 * so those calls need no CSRF token). A session lives as long as the token it logged in with
 * is current: a new token ends it.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { dashboardTokenCurrent, verifyDashboardToken } from '../../../core/dashboard.js';
import type { Store } from '../../../store/index.js';

/**
 * The session cookie's name: per listening port, since browsers scope cookies by host and not
 * by port, so two dashboards on one host would otherwise overwrite each other's sessions.
 */
export const sessionCookie = (req: IncomingMessage): string => `oxy_dashboard_${req.socket.localPort ?? 0}`;
/** A session ends this long after login even while its token is current. */
const SESSION_TTL_MS = 12 * 3600_000;
/** Oldest sessions are dropped beyond this many. */
const MAX_SESSIONS = 1000;

export interface Session {
  tokenHash: string;
  csrf: string;
  expires: number;
}

/** Who a request is: a browser session, or an API client with the token. */
export type Principal = { kind: 'session'; id: string; session: Session } | { kind: 'bearer'; tokenHash: string };

export class DashboardAuth {
  readonly #sessions = new Map<string, Session>();

  constructor(
    private readonly store: Store,
    private readonly secureCookies: boolean,
  ) {}

  /** Checks a login token; a new session and its cookie (for the port `req` came to), or undefined. */
  async login(req: IncomingMessage, token: string): Promise<{ id: string; session: Session; cookie: string } | undefined> {
    const tokenHash = await verifyDashboardToken(this.store, token);
    if (!tokenHash) return undefined;
    if (this.#sessions.size >= MAX_SESSIONS) this.#sessions.delete(this.#sessions.keys().next().value!);
    const id = randomBytes(32).toString('base64url');
    const session = { tokenHash, csrf: randomBytes(24).toString('base64url'), expires: Date.now() + SESSION_TTL_MS };
    this.#sessions.set(id, session);
    return { id, session, cookie: this.#cookie(req, id, SESSION_TTL_MS / 1000) };
  }

  logout(req: IncomingMessage, id: string): string {
    this.#sessions.delete(id);
    return this.#cookie(req, '', 0);
  }

  #cookie(req: IncomingMessage, value: string, maxAge: number): string {
    return `${sessionCookie(req)}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${this.secureCookies ? '; Secure' : ''}`;
  }

  /** The request's principal, or undefined (answer 401). */
  async authenticate(req: IncomingMessage): Promise<Principal | undefined> {
    const auth = req.headers.authorization;
    if (auth !== undefined) {
      const m = /^Bearer\s+(\S+)$/i.exec(auth);
      const tokenHash = m ? await verifyDashboardToken(this.store, m[1]) : undefined;
      return tokenHash ? { kind: 'bearer', tokenHash } : undefined;
    }
    const id = cookieValue(req.headers.cookie, sessionCookie(req));
    const session = id ? this.#sessions.get(id) : undefined;
    if (!id || !session) return undefined;
    if (!(await this.stillValid(session))) {
      this.#sessions.delete(id);
      return undefined;
    }
    return { kind: 'session', id, session };
  }

  /** Whether a principal may go on (an open event stream): its token not replaced, its session not expired. */
  async stillAllowed(p: Principal): Promise<boolean> {
    return p.kind === 'bearer' ? dashboardTokenCurrent(this.store, p.tokenHash) : this.#sessions.has(p.id) && (await this.stillValid(p.session));
  }

  /** Whether a session may go on: not expired, and its token not replaced. */
  async stillValid(session: Session): Promise<boolean> {
    return session.expires > Date.now() && (await dashboardTokenCurrent(this.store, session.tokenHash));
  }

  /**
   * Whether a state-changing request is safe from cross-site forgery: a bearer token, or a
   * session whose CSRF token came back in the header, from a page not on another site.
   */
  csrfSafe(req: IncomingMessage, p: Principal): boolean {
    if (p.kind === 'bearer') return true;
    if (req.headers['sec-fetch-site'] === 'cross-site') return false;
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== 'null') {
      let host: string | undefined;
      try {
        host = new URL(origin).host;
      } catch {
        return false;
      }
      if (host !== req.headers.host) return false;
    }
    const sent = req.headers['x-csrf-token'];
    if (typeof sent !== 'string') return false;
    const a = Buffer.from(sent);
    const b = Buffer.from(p.session.csrf);
    return a.length === b.length && timingSafeEqual(a, b);
  }
}

export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
