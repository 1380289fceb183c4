import { OxyError } from './errors.js';
import { isUuid, newId, nowRfc3339 } from './common.js';
import { parseCidr, parseIp, type ParsedCidr } from './cidr.js';
import { RouteTable } from './route-table.js';
import { defaultVnetForWrite, resolveVnet } from './vnets.js';
import { resolveTunnel } from './tunnels.js';
import { isUniqueViolation, type DetailedRoute, type NetworkRange, type RouteFilter, type Store, type Vnet } from '../store/index.js';

export type { DetailedRoute };

/** cloudflared's API error for the same network twice in one vnet. */
export const ROUTE_EXISTS_API_CODE = 1014;

/** A CIDR argument: parsed, and refused when host bits are set (the user likely meant the network). */
export function parseNetworkArg(text: string): ParsedCidr {
  let cidr: ParsedCidr;
  try {
    cidr = parseCidr(text);
  } catch (err) {
    throw new OxyError('OXY_ERR_INVALID_CIDR', `Invalid network CIDR: ${(err as Error).message.replace(/^Invalid CIDR /, '')}`, {
      cause: err,
    });
  }
  if (cidr.hostBitsSet) {
    throw new OxyError(
      'OXY_ERR_INVALID_CIDR',
      `Invalid network CIDR ${text}: it has host bits set after the /${cidr.prefixLength} prefix; did you mean ${cidr.network}?`,
    );
  }
  return cidr;
}

/** The network's first and last address, for range filters and index scans. */
export function networkRange(cidr: ParsedCidr): NetworkRange {
  const start = Buffer.from(cidr.bytes);
  const end = Buffer.from(cidr.bytes);
  for (let i = 0; i < end.length; i++) {
    const keep = Math.max(0, Math.min(8, cidr.prefixLength - i * 8));
    end[i] |= 0xff >> keep;
  }
  return { family: cidr.family, prefixLen: cidr.prefixLength, start, end };
}

export async function addRoute(store: Store, input: { network: string; tunnel: string; vnet?: string; comment?: string }): Promise<DetailedRoute> {
  const cidr = parseNetworkArg(input.network);
  const exists = () =>
    new OxyError(
      'OXY_ERR_ROUTE_EXISTS',
      `API error: Failed to add route: code: ${ROUTE_EXISTS_API_CODE}, reason: You already have a route defined for this exact IP subnet`,
      { apiCode: ROUTE_EXISTS_API_CODE },
    );
  try {
    return await store.write(async () => {
      const vnet = input.vnet === undefined ? await defaultVnetForWrite(store) : await resolveVnet(store, input.vnet);
      const tunnel = await resolveTunnel(store, input.tunnel);
      if (await store.routes.liveByNetwork(vnet.id, cidr.network)) throw exists();
      const id = newId();
      await store.routes.insert(
        { id, vnetId: vnet.id, tunnelId: tunnel.id, network: cidr.network, comment: input.comment ?? '', createdAt: nowRfc3339() },
        networkRange(cidr),
      );
      return (await store.routes.byId(id))!;
    });
  } catch (err) {
    // The schema's unique index is the last word when writers race (on either backend).
    if (isUniqueViolation(err)) throw exists();
    throw err;
  }
}

export interface RouteListFilter {
  isDeleted?: boolean;
  tunnel?: string;
  vnet?: string;
  commentIs?: string;
  subsetOf?: string;
  supersetOf?: string;
}

/** Filter flags take IDs (also of deleted tunnels and vnets) or live names. */
export async function listRoutes(store: Store, filter: RouteListFilter = {}): Promise<DetailedRoute[]> {
  const rangeOf = (text?: string) => {
    if (text === undefined) return undefined;
    try {
      return networkRange(parseCidr(text));
    } catch (err) {
      throw new OxyError('OXY_ERR_INVALID_CIDR', `Invalid network CIDR in a filter: ${(err as Error).message.replace(/^Invalid CIDR /, '')}`, { cause: err });
    }
  };
  const q: RouteFilter = {
    isDeleted: filter.isDeleted,
    commentIs: filter.commentIs,
    tunnelId: filter.tunnel === undefined ? undefined : isUuid(filter.tunnel) ? filter.tunnel.toLowerCase() : (await resolveTunnel(store, filter.tunnel)).id,
    vnetId: filter.vnet === undefined ? undefined : isUuid(filter.vnet) ? filter.vnet.toLowerCase() : (await resolveVnet(store, filter.vnet)).id,
    subsetOf: rangeOf(filter.subsetOf),
    supersetOf: rangeOf(filter.supersetOf),
  };
  return store.routes.list(q);
}

/** The vnet a read means without --vnet: the default, if any vnet exists at all. */
function vnetForRead(store: Store, ref?: string): Promise<Vnet | undefined> {
  return ref === undefined ? store.vnets.defaultVnet() : resolveVnet(store, ref);
}

/** Deletes a route given its ID, or its CIDR within a vnet (default: the default vnet). */
export function deleteRoute(store: Store, ref: string, vnetRef?: string): Promise<DetailedRoute> {
  return store.write(async () => {
    let route: DetailedRoute | undefined;
    if (isUuid(ref)) {
      route = await store.routes.byId(ref.toLowerCase());
      if (!route || route.deletedAt) throw new OxyError('OXY_ERR_ROUTE_NOT_FOUND', `There is no route with ID ${ref}.`);
    } else {
      const cidr = parseNetworkArg(ref);
      const vnet = await vnetForRead(store, vnetRef);
      route = vnet && (await store.routes.liveByNetwork(vnet.id, cidr.network));
      if (!route) {
        throw new OxyError(
          'OXY_ERR_ROUTE_NOT_FOUND',
          `There is no route for ${cidr.network} in virtual network ${vnet?.name ?? '(none)'}. ` +
            `Run 'oxyctl tunnel route ip show' to see the routes, and pass --vnet for another virtual network.`,
        );
      }
    }
    await store.routes.softDelete(route.id, nowRfc3339());
    return (await store.routes.byId(route.id))!;
  });
}

/** The route that carries traffic to `ip` in a vnet: longest prefix wins. */
export async function getRouteForIp(store: Store, ipText: string, vnetRef?: string): Promise<{ ip: string; route?: DetailedRoute }> {
  let ip;
  try {
    ip = parseIp(ipText);
  } catch (err) {
    throw new OxyError('OXY_ERR_INVALID_IP', `Invalid IP ${ipText}`, { cause: err });
  }
  const vnet = await vnetForRead(store, vnetRef);
  if (!vnet) return { ip: ip.address };
  const table = new RouteTable(await store.routes.liveInVnet(vnet.id));
  return { ip: ip.address, route: table.lookup(vnet.id, ip.bytes) };
}
