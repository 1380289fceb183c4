import { renderTable, timeCell } from './output.js';
import type { RouteDocument } from './documents.js';

export const renderRoutes = (routes: RouteDocument[]): Promise<string> =>
  renderTable(
    ['ID', 'NETWORK', 'VIRTUAL NET ID', 'COMMENT', 'TUNNEL ID', 'TUNNEL NAME', 'CREATED', 'DELETED'],
    routes.map((r) => [r.id, r.network, r.virtual_network_id, r.comment, r.tunnel_id, r.tunnel_name, r.created_at, timeCell(r.deleted_at)]),
  );
