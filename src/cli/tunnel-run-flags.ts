import { Flags } from '@oclif/core';
import { logFilePath, logFlags } from './log-flags.js';
import { parseDuration } from '../engine/connector/duration.js';
import { DEFAULT_ORIGIN_REQUEST, type OriginRequest } from '../engine/connector/ingress.js';
import type { ProtocolChoice } from '../engine/connector/run.js';
import type { ConnectorOptions } from '../engine/connector/start.js';

/** Origin flags (cloudflared's): they shape the single origin of --url / --hello-world / --unix-socket / --bastion. */
export const originFlags = {
  'unix-socket': Flags.string({ description: 'Path to unix socket to use instead of --url', env: 'TUNNEL_UNIX_SOCKET' }),
  bastion: Flags.boolean({ description: 'Runs as jump host: each stream names its destination (Cf-Access-Jump-Destination)', env: 'TUNNEL_BASTION' }),
  'no-tls-verify': Flags.boolean({ description: 'Disables TLS verification of the certificate presented by your origin', env: 'NO_TLS_VERIFY' }),
  'origin-ca-pool': Flags.string({ description: 'Path to the CA for the certificate of your origin', env: 'TUNNEL_ORIGIN_CA_POOL' }),
  'origin-server-name': Flags.string({
    description: 'Hostname that oxyctl should expect from your origin server certificate',
    env: 'TUNNEL_ORIGIN_SERVER_NAME',
  }),
  'match-sni-to-host': Flags.boolean({
    description: 'Match the TLS SNI sent to your origin to the Host header of each request (an origin with a certificate per host)',
  }),
  'http-host-header': Flags.string({ description: 'Sets the HTTP Host header for the local webserver', env: 'TUNNEL_HTTP_HOST_HEADER' }),
  'proxy-connect-timeout': Flags.string({
    aliases: ['connect-timeout'],
    description: 'HTTP proxy timeout for establishing a new connection',
    env: 'TUNNEL_PROXY_CONNECT_TIMEOUT',
  }),
  'proxy-tls-timeout': Flags.string({ description: 'HTTP proxy timeout for completing a TLS handshake', env: 'TUNNEL_PROXY_TLS_TIMEOUT' }),
  'proxy-tcp-keepalive': Flags.string({ description: 'HTTP proxy TCP keepalive duration', env: 'TUNNEL_PROXY_TCP_KEEPALIVE' }),
  'proxy-no-happy-eyeballs': Flags.boolean({
    description: 'HTTP proxy should disable "happy eyeballs" for IPv4/v6 fallback',
    env: 'TUNNEL_PROXY_NO_HAPPY_EYEBALLS',
  }),
  'proxy-keepalive-connections': Flags.integer({ description: 'HTTP proxy maximum keepalive connection pool size', env: 'TUNNEL_PROXY_KEEPALIVE_CONNECTIONS' }),
  'proxy-keepalive-timeout': Flags.string({ description: 'HTTP proxy timeout for closing an idle connection', env: 'TUNNEL_PROXY_KEEPALIVE_TIMEOUT' }),
  'no-chunked-encoding': Flags.boolean({
    description: 'Disables chunked transfer encoding; useful if you are running a WSGI server',
    env: 'TUNNEL_NO_CHUNKED_ENCODING',
  }),
  'http2-origin': Flags.boolean({ description: 'Enables HTTP/2 origin servers', env: 'TUNNEL_ORIGIN_ENABLE_HTTP2' }),
};

/** Flags `tunnel run` and the quick tunnel share, with cloudflared's names. */
export const tunnelRunFlags = {
  protocol: Flags.option({
    char: 'p',
    options: ['http2', 'quic', 'auto'] as const,
    default: 'auto',
    description: 'Protocol implementation to connect with the edge',
    env: 'TUNNEL_TRANSPORT_PROTOCOL',
  })(),
  edge: Flags.string({
    multiple: true,
    description:
      'HOST:PORT of the edge; repeatable, or several comma-separated (HA connections spread over them) [default: from the token or credentials, else the local edge]',
    env: 'TUNNEL_EDGE',
  }),
  'edge-ca': Flags.string({ description: "PEM file of the edge's CA [default: the local edge's]" }),
  'edge-ip-version': Flags.option({
    options: ['4', '6', 'auto'] as const,
    default: '4',
    description: 'Which IP version to dial the edge with when its address is a name',
    env: 'TUNNEL_EDGE_IP_VERSION',
  })(),
  'edge-bind-address': Flags.string({ description: 'Local IP address to dial the edge from', env: 'TUNNEL_EDGE_BIND_ADDRESS' }),
  url: Flags.string({ description: 'Connect to the local webserver at URL', env: 'TUNNEL_URL' }),
  'hello-world': Flags.boolean({ description: 'Run Hello World Server', env: 'TUNNEL_HELLO_WORLD' }),
  'ha-connections': Flags.integer({ default: 4, min: 1, max: 16, description: 'Number of HA connections to the edge' }),
  retries: Flags.integer({
    default: 5,
    min: 0,
    description: 'Maximum number of retries for connection/protocol errors before giving up',
    env: 'TUNNEL_RETRIES',
  }),
  'grace-period': Flags.string({
    default: '30s',
    description: 'When oxyctl receives SIGINT/SIGTERM it waits this long for in-flight requests to finish',
    env: 'TUNNEL_GRACE_PERIOD',
  }),
  metrics: Flags.string({
    default: '127.0.0.1:0',
    description:
      'HOST:PORT of the metrics server (/metrics, /ready, /healthcheck); the default takes the first free of 127.0.0.1:20241-20245, else a random port, as cloudflared',
    env: 'TUNNEL_METRICS',
  }),
  pidfile: Flags.string({ description: "Write the application's PID to this file after the first successful connection", env: 'TUNNEL_PIDFILE' }),
  label: Flags.string({ description: 'A label for this connector, shown in its logs and registration', env: 'TUNNEL_LABEL' }),
  'max-active-flows': Flags.integer({
    min: 0,
    description: 'Overrides warp-routing maxActiveFlows: the most private-network flows at once (0: no limit)',
    env: 'TUNNEL_MAX_ACTIVE_FLOWS',
  }),
  'icmpv4-src': Flags.string({ description: 'Source address for ICMPv4 messages to private networks', env: 'TUNNEL_ICMPV4_SRC' }),
  'icmpv6-src': Flags.string({ description: 'Source address for ICMPv6 messages to private networks', env: 'TUNNEL_ICMPV6_SRC' }),
  ...originFlags,
  ...logFlags,
};

/** `tunnel run`'s own flags beyond the shared ones: where the tunnel's identity comes from. */
export const namedTunnelFlags = {
  config: Flags.string({
    description:
      "Path to the config file (YAML) [default: config.yml in the data directory, then ~/.oxyctl, /etc/oxyctl, /usr/local/etc/oxyctl, then cloudflared's]",
    env: 'TUNNEL_CONFIG',
  }),
  'credentials-file': Flags.string({ aliases: ['cred-file'], description: 'File path of tunnel credentials', env: 'TUNNEL_CRED_FILE' }),
  'credentials-contents': Flags.string({ description: 'Contents of the tunnel credentials JSON file', env: 'TUNNEL_CRED_CONTENTS' }),
  token: Flags.string({ description: "The tunnel token, from 'oxyctl tunnel token'", env: 'TUNNEL_TOKEN' }),
  'token-file': Flags.string({ description: 'File holding the tunnel token', env: 'TUNNEL_TOKEN_FILE' }),
};

/** The flags a config file's top-level keys stand for (cloudflared's config is tunnel run's flags). */
export const configFileFlags = { ...tunnelRunFlags, ...namedTunnelFlags };

/** tunnel run's flags as oclif parses them (cloudflared's names). */
export interface ConnectorRunFlags {
  protocol: ProtocolChoice;
  logfile?: string;
  'log-directory'?: string;
  /** Repeated flags, or one string (from $TUNNEL_EDGE); each may be a comma-separated list. */
  edge?: string[] | string;
  'edge-ca'?: string;
  'edge-ip-version'?: '4' | '6' | 'auto';
  'edge-bind-address'?: string;
  url?: string;
  'hello-world'?: boolean;
  bastion?: boolean;
  'unix-socket'?: string;
  'ha-connections': number;
  retries?: number;
  'grace-period': string;
  metrics: string;
  pidfile?: string;
  label?: string;
  'max-active-flows'?: number;
  'icmpv4-src'?: string;
  'icmpv6-src'?: string;
  'no-tls-verify'?: boolean;
  'origin-ca-pool'?: string;
  'origin-server-name'?: string;
  'http-host-header'?: string;
  'match-sni-to-host'?: boolean;
  'proxy-connect-timeout'?: string;
  'proxy-tls-timeout'?: string;
  'proxy-tcp-keepalive'?: string;
  'proxy-no-happy-eyeballs'?: boolean;
  'proxy-keepalive-connections'?: number;
  'proxy-keepalive-timeout'?: string;
  'no-chunked-encoding'?: boolean;
  'http2-origin'?: boolean;
}

/** The single origin's settings from cloudflared's origin flags (they do not touch a config's rules). */
export function originRequestFromFlags(f: ConnectorRunFlags): OriginRequest {
  const o: OriginRequest = { ...DEFAULT_ORIGIN_REQUEST };
  const ms = (v: string | undefined, flag: string, fallback: number) => (v === undefined ? fallback : parseDuration(v, `--${flag}`));
  o.connectTimeoutMs = ms(f['proxy-connect-timeout'], 'proxy-connect-timeout', o.connectTimeoutMs);
  o.tlsTimeoutMs = ms(f['proxy-tls-timeout'], 'proxy-tls-timeout', o.tlsTimeoutMs);
  o.tcpKeepAliveMs = ms(f['proxy-tcp-keepalive'], 'proxy-tcp-keepalive', o.tcpKeepAliveMs);
  o.keepAliveTimeoutMs = ms(f['proxy-keepalive-timeout'], 'proxy-keepalive-timeout', o.keepAliveTimeoutMs);
  if (f['proxy-keepalive-connections'] !== undefined) o.keepAliveConnections = f['proxy-keepalive-connections'];
  o.noTLSVerify = f['no-tls-verify'] === true;
  o.matchSNItoHost = f['match-sni-to-host'] === true;
  o.noHappyEyeballs = f['proxy-no-happy-eyeballs'] === true;
  o.disableChunkedEncoding = f['no-chunked-encoding'] === true;
  o.http2Origin = f['http2-origin'] === true;
  o.bastionMode = f.bastion === true;
  if (f['origin-ca-pool']) o.caPool = f['origin-ca-pool'];
  if (f['origin-server-name']) o.originServerName = f['origin-server-name'];
  if (f['http-host-header']) o.httpHostHeader = f['http-host-header'];
  return o;
}

/** --edge given several times (cloudflared's way) or as a comma list: one comma list, or undefined when not given. */
export function edgeList(edge: string[] | string | undefined): string | undefined {
  const list = [edge ?? []]
    .flat()
    .flatMap((e) => e.split(','))
    .map((e) => e.trim())
    .filter(Boolean);
  return list.length === 0 ? undefined : list.join(',');
}

/** The connector's options from tunnel run's flags: names mapped and durations parsed, once. */
export function connectorOptions(f: ConnectorRunFlags): ConnectorOptions {
  return {
    protocol: f.protocol,
    edge: edgeList(f.edge),
    edgeCa: f['edge-ca'],
    edgeIpVersion: f['edge-ip-version'],
    edgeBindAddress: f['edge-bind-address'],
    url: f.url,
    helloWorld: f['hello-world'],
    bastion: f.bastion,
    unixSocket: f['unix-socket'],
    haConnections: f['ha-connections'],
    retries: f.retries,
    gracePeriodMs: parseDuration(f['grace-period'], '--grace-period'),
    metrics: f.metrics,
    pidfile: f.pidfile,
    label: f.label,
    maxActiveFlows: f['max-active-flows'],
    icmpSource: { 4: f['icmpv4-src'], 6: f['icmpv6-src'] },
    originRequest: originRequestFromFlags(f),
    logFile: logFilePath(f),
  };
}
