import { Flags } from '@oclif/core';
import { exitOnCrash } from '../../cli/crash.js';
import { BaseCommand } from '../../cli/base-command.js';
import { logFlags, loggerFrom } from '../../cli/log-flags.js';
import { shutdownSignal } from '../../cli/signals.js';
import { nowRfc3339 } from '../../core/common.js';
import { parseNetworkArg } from '../../core/routes.js';
import { resolveVnet } from '../../core/vnets.js';
import { clearWarpState, writeWarpState } from '../../core/warp-state.js';
import { DEFAULT_WARP_ADDRESS, DEFAULT_WARP_ADDRESS6, DEFAULT_WARP_MTU, startWarp, streamChannel } from '../../engine/device/warp.js';
import { decodeDeviceToken } from '../../core/devices.js';
import { createDialer, resolveEdges } from '../../engine/connector/run.js';
import { failoverChannel } from '../../engine/device/failover.js';
import { edgeList } from '../../cli/tunnel-run-flags.js';
import type { Logger } from '../../engine/observe/log.js';

const DEFAULT_ON_RAMP = '/run/oxyctl/ip-tunnel.sock';
/** How often a local device looks for route changes in the store (the edge polls at 250 ms). */
const STORE_POLL_MS = 500;
import { OxyError } from '../../core/errors.js';

export default class WarpConnect extends BaseCommand<typeof WarpConnect> {
  static summary = "Send this host's private traffic to the edge, in a virtual network";
  static description =
    "Creates a TUN on this host, routes the CIDRs of the virtual network's IP routes into it (or those given with --route), " +
    'and carries its packets to the edge as a connected IP tunnel whose context names the account and the virtual network. ' +
    'Without --vnet the default virtual network is used. Connecting again with another --vnet switches networks: TCP ' +
    'connections made in the old one break, as they would with WARP. Needs root (or CAP_NET_ADMIN).';
  static examples = ['<%= config.bin %> warp connect --vnet vnet-sydney', '<%= config.bin %> warp connect --route 198.18.0.0/24'];
  static flags = {
    vnet: Flags.string({ description: 'ID or name of the virtual network [default: the default one]' }),
    route: Flags.string({
      multiple: true,
      description: 'CIDR to send through the tunnel (repeatable) [default: the routes of the vnet, followed as they change]',
    }),
    edge: Flags.string({
      multiple: true,
      description:
        'The edge: the path of its SEQPACKET IP tunnel on-ramp (same host) [default: /run/oxyctl/ip-tunnel.sock], or with --token HOST:PORT of its tunnel listener; with --token repeatable or comma-separated, the device moving to another edge when its edge goes away [default: from the token]',
    }),
    token: Flags.string({ description: "A device token from 'oxyctl warp enroll': connect to a remote edge over the tunnel transport", env: 'WARP_TOKEN' }),
    protocol: Flags.option({ options: ['http2', 'quic', 'auto'] as const, default: 'auto', description: 'Transport to a remote edge (with --token)' })(),
    tun: Flags.string({ default: 'oxywarp0', description: 'Name of the TUN device' }),
    address: Flags.string({ default: DEFAULT_WARP_ADDRESS, description: "This device's address on the TUN" }),
    address6: Flags.string({ default: DEFAULT_WARP_ADDRESS6, description: "This device's IPv6 address on the TUN (the source of its IPv6 private traffic)" }),
    mtu: Flags.integer({ default: DEFAULT_WARP_MTU, min: 1280, max: 65535, description: 'MTU of the TUN' }),
    ...logFlags,
  };

  async run(): Promise<void> {
    const log = loggerFrom(this.flags);
    exitOnCrash(log);
    if (this.flags.token) return this.remote(log);
    if ((this.flags.edge?.length ?? 0) > 1)
      throw new OxyError('OXY_ERR_USAGE', 'Several --edge are for a device with --token (edges on other hosts); a local device takes one on-ramp path.');
    const store = await this.store;
    const vnet = this.flags.vnet === undefined ? await store.vnets.defaultVnet() : await resolveVnet(store, this.flags.vnet);
    if (!vnet) throw new OxyError('OXY_ERR_VNET_NOT_FOUND', "There is no virtual network yet: add one with 'oxyctl vnet add', or pass --route.");
    const given = this.flags.route?.map((r) => parseNetworkArg(r).network) ?? [];
    const vnetRoutes = async () => (await store.routes.liveInVnet(vnet.id)).map((r) => r.network).sort();
    if (given.length === 0 && (await vnetRoutes()).length === 0) {
      throw new OxyError(
        'OXY_ERR_NO_ROUTES',
        `Virtual network ${vnet.name} has no IP routes to send anywhere. Add one with 'oxyctl tunnel route ip add --vnet ${vnet.name} CIDR TUNNEL'.`,
      );
    }
    const edgePath = this.flags.edge?.[0] ?? DEFAULT_ON_RAMP;
    const save = this.stateSaver({ vnetId: vnet.id, vnetName: vnet.name, edge: edgePath });
    // The store's change feed holds a connection of its own (PostgreSQL LISTEN): stopped on the way out, or the process never exits.
    let unwatch: Promise<(() => Promise<void>) | undefined> = Promise.resolve(undefined);
    const warp = await startWarp({
      onRoutesUpdated: save,
      seqpacketPath: edgePath,
      context: { tenant: store.accountTag, vnet: vnet.id },
      routes: given,
      // Without --route: the vnet's routes, followed as the store changes (same host as the edge).
      routeFeed: (handler) => {
        let last = '';
        const look = () =>
          vnetRoutes().then(
            (networks) => {
              if (networks.join(',') === last) return;
              last = networks.join(',');
              handler(networks);
            },
            (err: Error) => log.warn({ err }, 'Cannot read the routes of the virtual network'),
          );
        void look();
        unwatch = store
          .watch(() => void look(), { pollMs: STORE_POLL_MS, onError: (err) => log.warn({ err }, 'Store connection lost; reconnecting') })
          .catch((err: Error) => void log.warn({ err }, 'Cannot follow store changes'));
      },
      tunName: this.flags.tun,
      address: this.flags.address,
      address6: this.flags.address6,
      mtu: this.flags.mtu,
      log,
    });
    save(warp.routes);
    try {
      await this.untilDone(warp, log);
    } finally {
      await (await unwatch)?.();
    }
  }

  /** A device on another host: the edges' tunnel listeners, with the enrolled identity; an edge that goes away is left for the next. */
  private async remote(log: Logger): Promise<void> {
    const token = decodeDeviceToken(this.flags.token!);
    // Without --route: the vnet's routes as the edge sends them, kept in step with its store.
    const routes = this.flags.route?.map((r) => parseNetworkArg(r).network) ?? [];
    const list = edgeList(this.flags.edge) ?? token.e;
    if (!list || list.split(',').some((a) => !a.includes(':')))
      throw new OxyError('OXY_ERR_EDGE_TRUST', 'With --token, --edge must be HOST:PORT (or the token must carry the edge address).');
    const edges = resolveEdges(this.home, { AccountTag: token.a, TunnelID: token.d, TunnelSecret: token.s, Endpoint: list }, { edge: list, caPin: token.p });
    const dialers = edges.map((edge) => createDialer(this.flags.protocol, edge, log));
    const vnet = this.flags.vnet ?? '';
    // warp status names the edge in use now; rewritten when the device moves.
    const state: { vnetId: string; vnetName: string; edge: string; protocol?: string } = { vnetId: vnet, vnetName: vnet || '(default)', edge: list };
    let save: ((routes: string[]) => void) | undefined;
    let routesNow: () => string[] = () => [];
    const channel = await failoverChannel({
      edges: list
        .split(',')
        .map((a) => a.trim())
        .filter(Boolean),
      dial: (i, signal) => dialers[i](0, signal),
      attach: (conn) => streamChannel(conn, { deviceId: token.d, secret: Buffer.from(token.s, 'base64'), vnet, version: this.config.version }),
      log,
      onEdge: (edge, protocol) => {
        state.edge = edge;
        state.protocol = protocol;
        save?.(routesNow());
      },
    });
    save = this.stateSaver(state);
    const warp = await startWarp({
      channel,
      context: { tenant: token.a, vnet },
      routes,
      onRoutesUpdated: save,
      tunName: this.flags.tun,
      address: this.flags.address,
      address6: this.flags.address6,
      mtu: this.flags.mtu,
      log,
    });
    routesNow = () => warp.routes;
    save(warp.routes);
    await this.untilDone(warp, log);
  }

  /** Writes `warp status`'s state file; called again with the routes after each update. */
  private stateSaver(what: { vnetId: string; vnetName: string; edge: string; protocol?: string }): (routes: string[]) => void {
    const since = nowRfc3339();
    return (routes) => writeWarpState(this.home, { pid: process.pid, ...what, routes, tun: this.flags.tun, since });
  }

  private async untilDone(warp: { close(): void; ended: Promise<string | void> }, log: Logger): Promise<void> {
    let why = '';
    const outcome = await Promise.race([shutdownSignal(), warp.ended.then((reason) => ((why = reason ?? ''), 'edge-closed' as const))]);
    warp.close();
    clearWarpState(this.home);
    log.info({ reason: outcome }, 'Disconnected');
    if (outcome === 'edge-closed') throw new OxyError('OXY_ERR_WARP_DISCONNECTED', `The edge closed the IP tunnel${why ? `: ${why}` : '.'}`);
  }
}
