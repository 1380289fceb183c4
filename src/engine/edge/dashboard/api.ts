/**
 * The dashboard's JSON API (`/api/v1`, documented in docs/dashboard-api.md). Every call that
 * reads or changes the store goes through the same core use-case as the CLI command that does
 * the same thing, so the checks and error texts are the CLI's (a route added twice is
 * cloudflared's 1014 here too). After a write the edge's view of the store reloads at once,
 * so connectors, devices and the next update see it.
 */
import { isOxyError, OxyError, type ErrorCode } from '../../../core/errors.js';
import { routeDocument, vnetDocument } from '../../../core/documents.js';
import { addRoute, deleteRoute, getRouteForIp, listRoutes } from '../../../core/routes.js';
import { addVnet, deleteVnet, listVnets } from '../../../core/vnets.js';
import { revokeDevice } from '../../../core/devices.js';
import type { Store } from '../../../store/index.js';
import type { StoreView } from '../store-view.js';
import type { LiveFeed } from './live.js';

/** A JSON answer: status and body. */
export interface ApiResult {
  status: number;
  body: unknown;
}

export interface ApiRequest {
  method: string;
  /** Path segments after /api/v1/, decoded. */
  segments: string[];
  query: URLSearchParams;
  /** The parsed JSON body of a POST (an object), else {}. */
  body: Record<string, unknown>;
}

export interface ApiDeps {
  store: Store;
  view: StoreView;
  live: LiveFeed;
}

const ok = (body: unknown, status = 200): ApiResult => ({ status, body });

/** An error as the API answers it: `{ error: { code, message, api_code? } }`. */
export function errorBody(code: ErrorCode | string, message: string, apiCode?: number): { error: { code: string; message: string; api_code?: number } } {
  return { error: { code, message, ...(apiCode === undefined ? {} : { api_code: apiCode }) } };
}

/** HTTP status of a use-case's OxyError, by its code. */
export function statusOf(err: OxyError): number {
  // The store cannot take the change (read-only, disk full): the request was fine.
  if (err.code.startsWith('OXY_ERR_STORE_')) return 503;
  if (err.code.endsWith('_NOT_FOUND')) return 404;
  if (err.code === 'OXY_ERR_STORE_BUSY') return 503;
  if (err.code.endsWith('_EXISTS') || /_(IN_USE|IS_DEFAULT|DEFAULT_REQUIRED|ACTIVE|HAS_ROUTES)$/.test(err.code)) return 409;
  return 400;
}

const optionalString = (body: Record<string, unknown>, key: string): string | undefined => {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string') throw new OxyError('OXY_ERR_DASHBOARD_BAD_REQUEST', `${key} must be a string`);
  return v;
};

const requiredString = (body: Record<string, unknown>, key: string): string => {
  const v = optionalString(body, key);
  if (v === undefined || v === '') throw new OxyError('OXY_ERR_DASHBOARD_BAD_REQUEST', `${key} is required`);
  return v;
};

const flag = (q: URLSearchParams, key: string): boolean => ['1', 'true', 'yes'].includes(q.get(key) ?? '');
const param = (q: URLSearchParams, key: string): string | undefined => q.get(key) || undefined;

/** Runs one API call; a use-case's OxyError becomes its JSON error with a matching status. */
export async function handleApi(d: ApiDeps, r: ApiRequest): Promise<ApiResult> {
  try {
    return await route(d, r);
  } catch (err) {
    if (isOxyError(err)) return { status: statusOf(err), body: errorBody(err.code, err.message, err.apiCode) };
    throw err;
  }
}

/** A write through a core use-case, then the edge's view reloaded so everything sees it now. */
async function write<T>(d: ApiDeps, fn: () => Promise<T>): Promise<T> {
  const result = await fn();
  await d.view.reload();
  return result;
}

async function route(d: ApiDeps, r: ApiRequest): Promise<ApiResult> {
  const [resource, ref, action] = r.segments;
  const m = r.method;
  const q = r.query;
  switch (`${m} ${resource}${ref === undefined ? '' : '/:ref'}${action === undefined ? '' : `/${action}`}`) {
    case 'GET tunnels':
      return ok({ tunnels: await d.live.tunnels() });
    case 'GET vnets':
      return ok({ vnets: (await listVnets(d.store, { showDeleted: flag(q, 'show_deleted') })).map(vnetDocument) });
    case 'POST vnets':
      return ok(
        vnetDocument(
          await write(d, () =>
            addVnet(d.store, { name: requiredString(r.body, 'name'), comment: optionalString(r.body, 'comment'), isDefault: r.body.is_default === true }),
          ),
        ),
        201,
      );
    case 'DELETE vnets/:ref': {
      const { vnet, deletedRoutes } = await write(d, () => deleteVnet(d.store, ref, { force: flag(q, 'force') }));
      return ok({ vnet: vnetDocument(vnet), deleted_routes: deletedRoutes });
    }
    case 'GET routes': {
      const routes = await listRoutes(d.store, {
        isDeleted: flag(q, 'is_deleted'),
        tunnel: param(q, 'tunnel'),
        vnet: param(q, 'vnet'),
        commentIs: q.get('comment') ?? undefined,
        subsetOf: param(q, 'subset_of'),
        supersetOf: param(q, 'superset_of'),
      });
      return ok({ routes: routes.map(routeDocument) });
    }
    case 'POST routes': {
      const input = {
        network: requiredString(r.body, 'network'),
        tunnel: requiredString(r.body, 'tunnel'),
        vnet: optionalString(r.body, 'vnet'),
        comment: optionalString(r.body, 'comment'),
      };
      return ok(routeDocument(await write(d, () => addRoute(d.store, input))), 201);
    }
    case 'DELETE routes/:ref':
      return ok(routeDocument(await write(d, () => deleteRoute(d.store, ref, param(q, 'vnet')))));
    case 'GET route-lookup': {
      const { ip, route: found } = await getRouteForIp(d.store, q.get('ip') ?? '', param(q, 'vnet'));
      return ok({ ip, route: found ? routeDocument(found) : null });
    }
    case 'GET devices':
      return ok({ devices: await d.live.devices() });
    case 'POST devices/:ref/revoke': {
      const device = await write(d, () => revokeDevice(d.store, ref));
      return ok({ id: device.id, name: device.name, deleted_at: device.deletedAt });
    }
    case 'GET traffic':
      return ok(await d.live.traffic());
    default:
      return {
        status: 404,
        body: errorBody('OXY_ERR_DASHBOARD_NOT_FOUND', `There is no API call ${m} /api/v1/${r.segments.join('/')}; see docs/dashboard-api.md`),
      };
  }
}
