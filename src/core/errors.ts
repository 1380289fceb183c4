/**
 * Every error a user or a caller can meet carries a stable `code`; callers branch on the
 * code, never on the message. The codes are declared once, here (ERROR_CODES): OxyError
 * takes only a catalogued code, so a typo or an undeclared code fails to compile. Code
 * refers to them by their literal (`new OxyError('OXY_ERR_VNET_NOT_FOUND', …)`,
 * `isOxyError(err, 'OXY_ERR_NO_ROUTE')`). The CLI prints the code with `--output json`
 * (`{"error":{"code","message"}}`) and, in text, after the message with `--loglevel debug`.
 * `apiCode` is cloudflared's numeric API error code where cloudflared has one (so
 * `Failed to add route: code: 1014, …` reads the same).
 */
export const ERROR_CODES = {
  // ─── General ──────────────────────────────────────────────────────────────────
  OXY_ERR_ABORTED: 'The operation was aborted (its AbortSignal, or a declined confirmation).',
  OXY_ERR_CONFIRMATION_REQUIRED: 'A destructive command needs --yes (or a terminal to confirm on).',
  OXY_ERR_INTERNAL: 'A bug: a state the code should never reach. Please report it.',
  OXY_ERR_USAGE: 'The command line does not parse: an unknown flag, a missing or extra argument.',
  OXY_ERR_INVALID_ARGUMENT: 'An argument or option has a value the engine cannot use.',
  OXY_ERR_INVALID_DURATION: 'A duration flag is not like 30s, 1m30s or 500ms.',
  OXY_ERR_INVALID_NAME: 'A name is empty or a UUID (names and IDs share arguments).',
  OXY_ERR_INVALID_URL: 'A URL without a hostname.',
  OXY_ERR_INVALID_HOSTNAME: 'Not a valid DNS hostname.',
  OXY_ERR_INVALID_IP: 'Not an IPv4 or IPv6 address.',
  OXY_ERR_INVALID_CIDR: 'Not a network in CIDR notation, or host bits set.',
  OXY_ERR_CONFIG: 'A config file (connector or edge) cannot be read, is not YAML, or has a wrong key or value.',
  OXY_ERR_STORE_TOO_NEW: 'The data directory was written by a newer oxyctl: refuse rather than corrupt it.',
  OXY_ERR_STORE_UNREADABLE: 'The store file is empty, unreadable, not SQLite or damaged: refused rather than taken for an empty store.',
  OXY_ERR_STORE_READ_ONLY: 'A command that changes the store ran on a read-only data directory (reading works).',
  OXY_ERR_STORE_BUSY: 'Another process holds the store locked longer than this one waits (the edge waits ~0.1 s, never stalling traffic): retry.',
  OXY_ERR_STORE_DISK_FULL: 'The disk holding the data directory is full; the store was not changed.',
  OXY_ERR_STORE_WRITER: "The edge's background store writer could not open the store or died.",
  OXY_ERR_STORE_URL: 'A store URL that is neither sqlite:PATH nor postgres://USER@HOST/DB.',
  OXY_ERR_STORE_UNREACHABLE: 'The PostgreSQL store cannot be reached or refuses the user (server down, wrong URL, authentication).',
  OXY_ERR_STORE_NOT_EMPTY: 'store copy into a store that already holds data: it copies only into a new, empty one.',
  // ─── Tunnels, credentials, tokens ────────────────────────────────────────────
  OXY_ERR_TUNNEL_NOT_FOUND: 'No tunnel with that ID or name.',
  OXY_ERR_TUNNEL_NOT_GIVEN: 'tunnel run without a tunnel (argument, config, --token or credentials).',
  OXY_ERR_TUNNEL_EXISTS: 'A tunnel with that name already exists (cloudflared API code 1013).',
  OXY_ERR_TUNNEL_ACTIVE: 'The tunnel has connectors connected: tunnel delete needs --force.',
  OXY_ERR_TUNNEL_HAS_ROUTES: 'The tunnel still serves routes or hostnames.',
  OXY_ERR_CREDENTIALS_EXIST: 'The credentials file already exists.',
  OXY_ERR_CREDENTIALS_READ: 'The tunnel credentials file cannot be read or parsed.',
  OXY_ERR_CREDENTIALS_WRITE: 'The tunnel credentials file cannot be written.',
  OXY_ERR_INVALID_SECRET: 'A tunnel secret that is not base64 of at least 32 bytes.',
  OXY_ERR_INVALID_TOKEN: 'A tunnel or device token that does not decode.',
  OXY_ERR_INGRESS_INVALID: "Ingress rules that cloudflared would refuse (texts are cloudflared's).",
  OXY_ERR_TUNNEL_UNREACHABLE: 'tunnel run gave up: the edge was not reached within --retries attempts.',
  OXY_ERR_EDGE_ADDRESS: 'The edge address does not resolve in the IP version --edge-ip-version asks for.',
  OXY_ERR_ORIGIN_ADDRESS: 'A TCP service without a port, for a scheme with no default one (ftp://host).',
  OXY_ERR_LOGFILE: 'The --logfile / --log-directory file cannot be opened.',
  OXY_ERR_CONNECTOR_UNREACHABLE: "tunnel ready / tunnel diag cannot reach the connector's metrics server.",
  OXY_ERR_TUNNEL_NOT_READY: 'tunnel ready: the connector has no registered connection (/ready is not 200).',
  // ─── Virtual networks, routes, hostnames, devices ─────────────────────────────
  OXY_ERR_VNET_NOT_FOUND: 'No virtual network with that ID or name.',
  OXY_ERR_VNET_EXISTS: 'A virtual network with that name already exists (cloudflared API code 1000).',
  OXY_ERR_VNET_DEFAULT_REQUIRED: 'The default virtual network cannot be un-defaulted; make another one the default.',
  OXY_ERR_VNET_IS_DEFAULT: 'The default virtual network cannot be deleted.',
  OXY_ERR_VNET_IN_USE: 'The virtual network still has routes.',
  OXY_ERR_ROUTE_EXISTS: 'That network is already routed in that virtual network.',
  OXY_ERR_ROUTE_NOT_FOUND: 'No such route.',
  OXY_ERR_ROUTE_CONFLICT: 'Two routes for the same network in one virtual network (route table build).',
  OXY_ERR_HOSTNAME_EXISTS: 'The public hostname is already routed.',
  OXY_ERR_DEVICE_EXISTS: 'A device with that name is already enrolled.',
  OXY_ERR_DEVICE_NOT_FOUND: 'No enrolled device with that ID or name.',
  // ─── Service install ──────────────────────────────────────────────────────────
  OXY_ERR_SERVICE_EXISTS: 'The systemd unit is already installed.',
  OXY_ERR_SERVICE_NOT_INSTALLED: 'No systemd unit to uninstall.',
  OXY_ERR_SERVICE_NO_TUNNEL: 'service install without a token or a config to run the connector with.',
  OXY_ERR_SERVICE_CONFIG: 'The config file cannot be run by the service (missing tunnel or credentials-file).',
  OXY_ERR_SERVICE_ROOT: 'service install needs root (or --root for a staging directory).',
  OXY_ERR_SERVICE_SYSTEMCTL: 'systemctl failed.',
  // ─── Edge identity and trust ──────────────────────────────────────────────────
  OXY_ERR_EDGE_EXISTS: 'edge init found an identity already.',
  OXY_ERR_EDGE_IDENTITY: 'No edge identity: run oxyctl edge init.',
  OXY_ERR_EDGE_ADVERTISE: 'An --advertise address (edge init, edge run, advertise: in edge.yml) that is not a HOST:PORT connectors can dial.',
  OXY_ERR_EDGE_TRUST: 'The connector or device has no way to trust the edge (no pin, no local edge, no address).',
  OXY_ERR_EDGE_WORKER: 'An edge worker process (edge run --workers N) exited before it was ready.',
  OXY_ERR_QUICK_CONNECTOR: "The quick tunnel's connector thread ended before it registered.",
  // ─── Tunnel protocol and transports ───────────────────────────────────────────
  OXY_ERR_PROTOCOL_BAD_MAGIC: 'The first bytes are not the protocol magic: not an oxy tunnel peer, or garbage.',
  OXY_ERR_PROTOCOL_UNSUPPORTED_VERSION: 'A version this build does not speak.',
  OXY_ERR_PROTOCOL_OVERSIZE: 'A declared length above the limit; refused before the payload is read.',
  OXY_ERR_PROTOCOL_MALFORMED: 'The frame is structurally wrong (bad type, bad lengths, bad UTF-8/JSON, missing fields).',
  OXY_ERR_PROTOCOL_TRUNCATED: 'The stream ended in the middle of a frame.',
  OXY_ERR_PROTOCOL_UNEXPECTED_MESSAGE: 'A message that is valid but not expected in this state (e.g. `registered` before `register`).',
  OXY_ERR_PROTOCOL_TIMEOUT: 'A peer did not answer in time.',
  OXY_ERR_TUNNEL_UNAUTHORIZED: "The registration proof did not verify against the tunnel's secret, or no such tunnel.",
  OXY_ERR_TUNNEL_CLOSED: 'The connection closed (locally or by the peer); the close info is in `cause`.',
  OXY_ERR_TUNNEL_DRAINING: 'The peer announced a drain: no new streams toward it.',
  OXY_ERR_TUNNEL_HANDSHAKE: 'TLS or ALPN failed while dialing or accepting.',
  OXY_ERR_TUNNEL_PIN_MISMATCH: "The edge's CA public key does not match the configured pin.",
  OXY_ERR_TUNNEL_DATAGRAMS_UNSUPPORTED: 'Datagrams on a connection that does not carry them.',
  OXY_ERR_PEER_REFUSED: 'A client certificate on the tunnel listener that is not an edge peer certificate of the edge CA (peer links between edges).',
  OXY_ERR_PEER_UNAVAILABLE: 'The edge that holds the tunnel could not be reached over a peer link (forwarding), or holds no connection for it any more.',
  OXY_ERR_STREAM_RESET: 'The peer reset the stream, or the stream was destroyed before it ended cleanly.',
  OXY_ERR_PROXY_PROTOCOL: 'A PROXY protocol header that is missing, malformed or too slow to arrive.',
  // ─── Edge: hooks, egress, routing ─────────────────────────────────────────────
  OXY_ERR_HOOK: 'An application hook threw or rejected.',
  OXY_ERR_HOOKS_MODULE: 'The --hooks module cannot be loaded or exports the wrong shape.',
  OXY_ERR_EGRESS_BLOCKED: 'Egress refused by policy (a hook, or a private address without a route).',
  OXY_ERR_EGRESS_DNS: 'The destination name does not resolve.',
  OXY_ERR_EGRESS_CONNECT: 'The destination refused or did not answer.',
  OXY_ERR_PROXY_ALLOW: 'A --proxy-allow entry (or proxy-allow in edge.yml) that is not CIDR[:PORTS].',
  OXY_ERR_PROXY_DENIED: "The forward proxy's policy refuses the destination (no allow list, not in it, the edge host, or the edge's own listener).",
  OXY_ERR_NO_ROUTE: 'No route matches the destination IP in the virtual network.',
  OXY_ERR_NO_CONNECTOR: 'The tunnel serving the route has no connector connected.',
  OXY_ERR_DIAL_FAILED: 'The connector could not reach the private destination.',
  OXY_ERR_ORIGIN_TIMEOUT: 'The connector timed out dialing an origin.',
  OXY_ERR_ACCESS_REFUSED: 'The edge refused an access tcp stream.',
  // ─── Edge dashboard API ───────────────────────────────────────────────────────
  OXY_ERR_DASHBOARD_BAD_REQUEST: 'A dashboard API call with a missing or wrongly typed field.',
  OXY_ERR_DASHBOARD_CSRF: 'A state-changing browser call without its X-CSRF-Token.',
  OXY_ERR_DASHBOARD_INSECURE: 'The dashboard would listen in plain HTTP beyond loopback.',
  OXY_ERR_DASHBOARD_INTERNAL: 'The dashboard could not answer (the edge log says why).',
  OXY_ERR_DASHBOARD_METHOD: 'An HTTP method the dashboard API does not allow there.',
  OXY_ERR_DASHBOARD_NOT_FOUND: 'No such dashboard API call.',
  OXY_ERR_DASHBOARD_UNAUTHORIZED: "Not logged in, or not the dashboard's token.",
  // ─── IP path: namespaces, native addon, devices ───────────────────────────────
  OXY_ERR_NATIVE_UNAVAILABLE: 'The native addon is not built or the platform is not Linux.',
  OXY_ERR_NETNS_ASYNC: 'withNetns was given a function that returned a promise (it would run in the wrong namespace).',
  OXY_ERR_NETNS_RESTORE: 'The thread could not switch back to its namespace: sockets created now land in the wrong one.',
  OXY_ERR_NETNS_CREATE: 'The network namespace for upgraded flows could not be created.',
  OXY_ERR_NETNS_CHILD: 'The namespace child process failed or exited.',
  OXY_ERR_DOWNGRADE_EXHAUSTED: 'No NAT slot left to downgrade a flow.',
  OXY_ERR_GUE_NO_KEYS: 'GUE on a non-loopback address with no enrolled device: no sender could authenticate.',
  OXY_ERR_VNET_NOT_ALLOWED: 'The device was enrolled for other virtual networks (warp enroll --vnet).',
  OXY_ERR_WARP_CONNECT: "The device cannot reach the edge's IP tunnel on-ramp, or the edge refused it.",
  OXY_ERR_WARP_DISCONNECTED: 'The edge closed the IP tunnel.',
  OXY_ERR_WARP_ROUTES: "The device's TUN routes could not be configured.",
  OXY_ERR_NO_ROUTES: 'No routes came for the virtual network in time.',
  OXY_ERR_LISTEN_IN_USE: 'A listen path or address is in use by a live process, or a path is not a socket (a stale socket file is reused).',
} as const satisfies Record<`OXY_ERR_${string}`, string>;

/** A catalogued error code. */
export type ErrorCode = keyof typeof ERROR_CODES;
/** A system error code (`EADDRINUSE`, `EBADF`) carried by errors of the native addon. */
export type SystemErrorCode = `E${Uppercase<string>}`;

/** Whether a string (from a peer, a file) is a catalogued code. */
export const isErrorCode = (code: string): code is ErrorCode => Object.hasOwn(ERROR_CODES, code);

export class OxyError extends Error {
  readonly code: ErrorCode | SystemErrorCode;
  readonly apiCode?: number;
  /** Process exit code when this error ends a command. */
  readonly exitCode: number;

  constructor(code: ErrorCode | SystemErrorCode, message: string, options: { cause?: unknown; apiCode?: number; exitCode?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'OxyError';
    this.code = code;
    this.apiCode = options.apiCode;
    this.exitCode = options.exitCode ?? 1;
  }
}

export function isOxyError(err: unknown, code?: ErrorCode | SystemErrorCode): err is OxyError {
  return err instanceof OxyError && (code === undefined || err.code === code);
}
