import { Flags } from '@oclif/core';
import { exitOnCrash } from '../../cli/crash.js';
import { BaseCommand } from '../../cli/base-command.js';
import { logFlags, loggerFrom } from '../../cli/log-flags.js';
import { shutdownSignal } from '../../cli/signals.js';
import { runEdge } from '../../engine/edge/run.js';
import { edgeCanForward } from '../../engine/transport/identity-files.js';
import { EDGE_DEFAULTS, httpTimeouts, loadEdgeConfig } from '../../engine/edge/config.js';
import { defaultWorkers, EdgePrimary, WorkerLink, workerSpec } from '../../engine/edge/workers.js';
import { availableParallelism } from 'node:os';

export default class EdgeRun extends BaseCommand<typeof EdgeRun> {
  static summary = 'Run the edge in the foreground';
  static description =
    'Starts the edge: the tunnel listener where connectors register (TLS + HTTP/2), the public HTTP listener that ' +
    "routes requests by Host to the tunnel named by 'oxyctl tunnel route dns', and the metrics listener (/metrics, " +
    '/ready, /healthcheck). Routes and hostnames changed with the CLI apply within a second, without a restart. ' +
    'Creates the edge identity on first run (see oxyctl edge init).';
  static examples = [
    '<%= config.bin %> edge run',
    '<%= config.bin %> edge run --dashboard-listen 127.0.0.1:7846',
    '<%= config.bin %> edge run --workers 4',
    '<%= config.bin %> edge run --tunnel-listen 0.0.0.0:7844 --http-listen 0.0.0.0:80 --metrics 127.0.0.1:7845',
    '<%= config.bin %> edge run --location edge2 --tunnel-listen 0.0.0.0:7846 --advertise 203.0.113.10:7846',
    '<%= config.bin %> edge run --proxy-listen 127.0.0.1:3128 --hooks ./examples/preshared-key.js --trace-hooks',
    '<%= config.bin %> edge run --proxy-listen 127.0.0.1:3128 --proxy-allow 198.18.0.0/15:80,443',
    '<%= config.bin %> edge run --http-listen 0.0.0.0:8080 --proxy-listen 10.0.0.5:3128 --proxy-allow 10.0.0.0/8 --proxy-protocol',
  ];
  static flags = {
    'tunnel-listen': Flags.string({ description: 'HOST:PORT of the tunnel listener connectors dial (TLS on TCP, QUIC on UDP) [default: 0.0.0.0:7844]' }),
    'http-listen': Flags.string({ description: 'HOST:PORT of the public HTTP listener [default: 127.0.0.1:8080]' }),
    metrics: Flags.string({ description: 'HOST:PORT of the metrics listener [default: 127.0.0.1:7845]' }),
    location: Flags.string({ description: "This edge's location name, shown in tunnel list [default: local]" }),
    advertise: Flags.string({
      description:
        "HOST:PORT connectors dial to reach this edge, recorded in the edge registry and so named in tokens (tunnel token, warp enroll): each edge its own, where several share a data directory [default: edge init's --advertise on a wildcard listener, else the listener's address]",
    }),
    'proxy-listen': Flags.string({
      description: 'HOST:PORT of the HTTP CONNECT forward proxy (egress direct, or through the tunnel whose route covers the destination)',
    }),
    'proxy-allow': Flags.string({
      multiple: true,
      description:
        "A destination the forward proxy may connect to: CIDR or CIDR:PORTS (198.18.0.0/15:80,443, [2001:db8::/32]:8000-8999); repeatable. Without it the proxy refuses every destination unless --hooks decide. The edge host's own addresses open only to entries that name them (127.0.0.1:8080); the edge's own listeners never",
    }),
    'proxy-protocol': Flags.boolean({
      allowNo: true,
      description:
        'Expect a PROXY protocol v1/v2 header (from a load balancer in front) on every connection to the forward proxy and the public HTTP listener; the client is the address it names, and a connection without one is closed',
    }),
    hooks: Flags.string({ description: 'An ES module whose start(settings, parentState) returns the hooks that steer traffic (see docs/hooks.md)' }),
    'trace-hooks': Flags.boolean({ description: 'Log the order in which hooks fired, once per connection' }),
    quic: Flags.boolean({ allowNo: true, description: 'Also listen for QUIC on UDP at the tunnel port (--no-quic: HTTP/2 over TLS only) [default: true]' }),
    config: Flags.string({
      description:
        "Edge YAML file: the same settings under the flags' names, plus ip-limits (max-flows, max-flows-per-tenant, max-flows-per-session, reassembly-bytes, reassembly-bytes-per-tenant, reassembly-timeout-ms) and http-timeouts of the HTTP listeners (headers-ms, request-ms, idle-ms, keep-alive-ms); flags win",
    }),
    'ip-tunnel-listen': Flags.string({ description: 'Unix SEQPACKET path for connected IP tunnels from devices (oxyctl warp connect)' }),
    'gue-listen': Flags.string({
      description:
        "HOST:PORT for unconnected IP tunnels (GUE). Every datagram must be authenticated with an enrolled device's key (oxyctl warp enroll; format in docs/gue.md); a non-loopback address needs at least one enrolled device",
    }),
    'dashboard-listen': Flags.string({
      description: "HOST:PORT of the web dashboard and its JSON API (/api/v1); log in with the token from 'oxyctl edge dashboard-token' [default: off]",
    }),
    'dashboard-tls': Flags.boolean({ description: "Serve the dashboard over HTTPS with the edge's certificate (needed to bind it beyond loopback)" }),
    'dashboard-insecure': Flags.boolean({ description: 'Allow the dashboard on a non-loopback address without TLS (e.g. behind a TLS proxy)' }),
    workers: Flags.integer({
      min: 1,
      env: 'OXY_EDGE_WORKERS',
      description:
        'Worker processes, restarted when one dies: public listeners and QUIC shared with SO_REUSEPORT, tunnel TCP connections placed by this process in the least-loaded worker; 1 runs the edge in this process [default: the number of cores]',
    }),
    ...logFlags,
  };

  async run(): Promise<void> {
    const worker = workerSpec();
    const log = worker ? loggerFrom(this.flags).child({ worker: worker.index + 1 }) : loggerFrom(this.flags);
    exitOnCrash(log);
    // Listen for signals before starting: one arriving during start-up must stop us gracefully too.
    // A worker may get two (systemd signals the whole cgroup, then the primary signals it): only
    // the primary's deadline (SIGKILL) cuts its drain short.
    const signalled = worker ? shutdownSignal(() => undefined) : shutdownSignal();
    const file = this.flags.config ? loadEdgeConfig(this.flags.config) : {};
    const pick = <K extends keyof typeof EDGE_DEFAULTS>(key: K): string => this.flags[key] ?? file[key] ?? EDGE_DEFAULTS[key];
    const hooks = this.flags.hooks ?? file.hooks;
    const ipPath = this.flags['ip-tunnel-listen'] ?? file['ip-tunnel-listen'] ?? this.flags['gue-listen'] ?? file['gue-listen'];
    const proxyProtocol = this.flags['proxy-protocol'] ?? file['proxy-protocol'];
    const proxyListen = this.flags['proxy-listen'] ?? file['proxy-listen'];
    const auto = defaultWorkers({
      cores: availableParallelism(),
      needsForwarding: hooks ? '--hooks' : proxyProtocol ? '--proxy-protocol' : proxyListen ? '--proxy-listen' : ipPath ? 'the IP path' : undefined,
      canForward: edgeCanForward(this.home),
    });
    const workers = worker ? 1 : (this.flags.workers ?? file.workers ?? auto.count);
    if (!worker && this.flags.workers === undefined && file.workers === undefined && auto.why) log.info({ workers }, auto.why);
    if (workers > 1) {
      const primary = await EdgePrimary.start({
        count: workers,
        log,
        listen: { tunnel: pick('tunnel-listen'), http: pick('http-listen'), proxy: this.flags['proxy-listen'] ?? file['proxy-listen'] },
        metricsListen: pick('metrics'),
        httpTimeouts: httpTimeouts(file['http-timeouts']),
        quic: (this.flags.quic ?? file.quic) !== false,
      });
      log.info({ metrics: `${primary.metricsAddress?.address}:${primary.metricsAddress?.port}`, workers }, 'Edge running');
      log.info({ signal: await signalled }, 'Shutting down the edge');
      await primary.stop();
      return;
    }
    const limits = file['ip-limits'];
    const link = worker && new WorkerLink(worker);
    const edge = await runEdge({
      worker: link,
      home: this.home,
      store: await this.openStore(file.store),
      log,
      tunnelListen: pick('tunnel-listen'),
      httpListen: pick('http-listen'),
      metricsListen: pick('metrics'),
      location: pick('location'),
      advertise: this.flags.advertise ?? file.advertise,
      quic: this.flags.quic ?? file.quic,
      ipTunnelListen: this.flags['ip-tunnel-listen'] ?? file['ip-tunnel-listen'],
      gueListen: this.flags['gue-listen'] ?? file['gue-listen'],
      ipLimits: limits && {
        maxFlows: limits['max-flows'],
        maxFlowsPerTenant: limits['max-flows-per-tenant'],
        maxFlowsPerSession: limits['max-flows-per-session'],
        reassembly: {
          maxBytes: limits['reassembly-bytes'],
          maxBytesPerTenant: limits['reassembly-bytes-per-tenant'],
          timeoutMs: limits['reassembly-timeout-ms'],
        },
      },
      proxyListen: this.flags['proxy-listen'] ?? file['proxy-listen'],
      proxyAllow: this.flags['proxy-allow'] ?? file['proxy-allow'],
      httpTimeouts: httpTimeouts(file['http-timeouts']),
      proxyProtocol: this.flags['proxy-protocol'] ?? file['proxy-protocol'],
      hooks,
      traceHooks: this.flags['trace-hooks'] || file['trace-hooks'],
      dashboardListen: this.flags['dashboard-listen'] ?? file['dashboard-listen'],
      dashboardTls: this.flags['dashboard-tls'] || file['dashboard-tls'],
      dashboardInsecure: this.flags['dashboard-insecure'] || file['dashboard-insecure'],
    });
    // A worker also stops when its primary is gone (nobody would stop or restart it).
    if (link) log.info({ workerPid: process.pid }, 'Edge worker running');
    else log.info({ metrics: `${edge.metricsAddress?.address}:${edge.metricsAddress?.port}` }, 'Edge running');
    const signal = await (link ? Promise.race([signalled, link.serve(edge)]) : signalled);
    log.info({ signal }, 'Shutting down the edge');
    await edge.stop();
  }
}
