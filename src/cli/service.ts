/**
 * The system service: systemd units for the connector (`oxyctl.service`) and the edge
 * (`oxyctl-edge.service`), as `oxyctl service install` writes them and as the .deb/.rpm
 * ship them (packaging/ renders the packaged units with `unitText`).
 *
 * A token never lands in a world-readable file or in the process arguments: it goes to
 * /etc/oxyctl/tunnel.env (0600) as TUNNEL_TOKEN, which `tunnel run --token` reads from
 * the environment. Units are 0644, as systemd expects.
 *
 * `root` (the `--root` flag or OXY_SERVICE_ROOT) writes into another tree, for images and
 * tests: paths in the unit stay absolute on the target system, and enabling is done
 * offline with `systemctl --root`. On the live system systemctl is called only when
 * systemd is running (/run/systemd/system exists, as sd_booted() checks).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { findConfigFile, loadConfig } from '../engine/connector/config.js';
import { cloudflaredNotice } from './config-file.js';
import { decodeToken } from '../core/credentials.js';
import { OxyError } from '../core/errors.js';

export type ServiceKind = 'connector' | 'edge';

/** Where the packages install the CLI; the units run it from here. */
export const PACKAGED_BIN = '/usr/bin/oxyctl';
/** The services' data directory (systemd StateDirectory=oxyctl). */
export const SERVICE_HOME = '/var/lib/oxyctl';
export const SERVICE_CONFIG_DIR = '/etc/oxyctl';
/** Holds TUNNEL_TOKEN=… for a token-run connector; mode 0600. */
export const TOKEN_ENV_FILE = `${SERVICE_CONFIG_DIR}/tunnel.env`;
/** The config file the packaged connector unit runs with. */
export const PACKAGED_CONFIG_FILE = `${SERVICE_CONFIG_DIR}/config.yml`;
/** Units written by `service install` (they take precedence over the packaged ones). */
export const ADMIN_UNIT_DIR = '/etc/systemd/system';

export const unitName = (kind: ServiceKind): string => (kind === 'edge' ? 'oxyctl-edge.service' : 'oxyctl.service');

/** How the connector unit finds its tunnel. */
export type ConnectorSource = { token: string } | { configFile: string };

export interface UnitOptions {
  kind: ServiceKind;
  /** Connector only. */
  source?: ConnectorSource;
  /** argv[0..] that runs oxyctl; default /usr/bin/oxyctl. */
  exec?: string[];
  /** Who wrote it, for the comment at the top. */
  origin?: 'service install' | 'package';
}

/** Quotes one ExecStart word for systemd: specifiers (%) and variables ($) taken literally. */
export function systemdQuote(word: string): string {
  const escaped = word.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? escaped : `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** The unit file text. */
export function unitText(opts: UnitOptions): string {
  const exec = (opts.exec ?? [PACKAGED_BIN]).map(systemdQuote).join(' ');
  const header =
    opts.origin === 'package'
      ? `# Shipped by the oxyctl package. Not enabled on install: ${
          opts.kind === 'edge'
            ? 'systemctl enable --now oxyctl-edge.service'
            : `put the tunnel's config in ${PACKAGED_CONFIG_FILE} and run systemctl enable --now oxyctl.service,\n# or run oxyctl service install --token TOKEN (writes ${ADMIN_UNIT_DIR}/oxyctl.service, which takes precedence)`
        }.\n`
      : `# Written by \`oxyctl service install\`; remove it with \`oxyctl service uninstall${opts.kind === 'edge' ? ' --edge' : ''}\`.\n`;
  const lines = [header.trimEnd(), '[Unit]'];
  if (opts.kind === 'edge') {
    lines.push('Description=oxyctl edge (tunnel, HTTP and metrics listeners)', 'Documentation=man:oxyctl-edge-run(1)');
  } else {
    lines.push('Description=oxyctl tunnel connector', 'Documentation=man:oxyctl-tunnel-run(1)');
  }
  lines.push('After=network-online.target', 'Wants=network-online.target');
  const source = opts.source;
  if (source && 'configFile' in source && opts.origin === 'package') lines.push(`ConditionPathExists=${source.configFile}`);
  lines.push('', '[Service]', 'Type=simple', `Environment=OXY_HOME=${SERVICE_HOME}`);
  let execStart: string;
  if (opts.kind === 'edge') {
    execStart = `${exec} edge run`;
  } else if (source && 'token' in source) {
    lines.push(`EnvironmentFile=${TOKEN_ENV_FILE}`);
    // --token without a value would be a parse error: the flag reads TUNNEL_TOKEN itself.
    execStart = `${exec} tunnel run`;
  } else {
    execStart = `${exec} tunnel run --config ${systemdQuote(source?.configFile ?? PACKAGED_CONFIG_FILE)}`;
  }
  lines.push(
    `ExecStart=${execStart}`,
    'Restart=on-failure',
    'RestartSec=5s',
    // tunnel run drains in-flight requests for --grace-period (30s) on SIGTERM.
    'TimeoutStopSec=40s',
    'StateDirectory=oxyctl',
    'StateDirectoryMode=0700',
  );
  if (opts.kind === 'connector') lines.push('NoNewPrivileges=yes', 'ProtectSystem=full');
  lines.push('', '[Install]', 'WantedBy=multi-user.target', '');
  return lines.join('\n');
}

export interface ServiceEnv {
  /** Runs a command; returns its exit status and stderr. */
  run(cmd: string, args: string[]): { status: number | null; stderr: string; error?: Error };
  /** Whether systemd is PID 1 on the live system. */
  systemdRunning(): boolean;
  uid(): number;
  /** The live system's root: '/' (tests point it elsewhere). */
  systemRoot: string;
}

export const defaultServiceEnv: ServiceEnv = {
  run(cmd, args) {
    const r = spawnSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'ignore', 'pipe'] });
    return { status: r.status, stderr: r.stderr ?? '', error: r.error };
  },
  systemdRunning: () => existsSync('/run/systemd/system'),
  uid: () => process.getuid?.() ?? 0,
  systemRoot: '/',
};

export interface ServiceOptions {
  kind: ServiceKind;
  /** Another root to write into instead of the live system (`--root`, OXY_SERVICE_ROOT). */
  root?: string;
}

export interface InstallOptions extends ServiceOptions {
  token?: string;
  configFile?: string;
  /** The data directory whose config.yml is the default connector config. */
  home: string;
}

/** What happened, for the human text and `--output json`. */
export interface ServiceResult {
  unit: string;
  /** Absolute paths on the machine that ran the command (under --root when given). */
  files: string[];
  /** systemctl invocations that ran, in order. */
  systemctl: string[][];
  /** Whether the unit is now enabled (started too on a live system). */
  enabled: boolean;
  /** Why systemctl did not run, when it did not. */
  notice?: string;
}

/** Where the files go: the live system (no --root, or --root /), or another tree, enabled offline. */
interface Target {
  live: boolean;
  base: string;
}
function targetOf(root: string | undefined, env: ServiceEnv): Target {
  const live = root === undefined || resolve(root) === '/';
  return { live, base: live ? env.systemRoot : resolve(root) };
}
const under = (t: Target, path: string): string => join(t.base, path);

/** The command line the unit runs: the packaged CLI, or this process's when the package is not installed. */
function execFor(t: Target): string[] {
  if (!t.live || existsSync(under(t, PACKAGED_BIN))) return [PACKAGED_BIN];
  return [process.execPath, realpathSync(process.argv[1])];
}

function connectorSource(opts: InstallOptions): ConnectorSource {
  if (opts.token !== undefined && opts.configFile !== undefined) {
    throw new OxyError('OXY_ERR_SERVICE_NO_TUNNEL', 'Give either --token or --config, not both.');
  }
  if (opts.token !== undefined) {
    const token = opts.token.trim();
    decodeToken(token);
    // Only base64 goes into the environment file: no newline can smuggle in another variable.
    if (!/^[A-Za-z0-9+/=_-]+$/.test(token)) {
      throw new OxyError('OXY_ERR_INVALID_TOKEN', 'Provided Tunnel token is not valid. Get a new one with: oxyctl tunnel token TUNNEL');
    }
    return { token };
  }
  // Where tunnel run looks (cloudflared's directories last, with a notice): a cloudflared host's
  // /etc/cloudflared/config.yml becomes the service's config as it is.
  const configFile = findConfigFile(opts.home, opts.configFile, (p) => process.stderr.write(`${cloudflaredNotice(p)}\n`));
  if (configFile === undefined) {
    throw new OxyError(
      'OXY_ERR_SERVICE_NO_TUNNEL',
      `Cannot determine which tunnel the service should run: no --token, no --config, and no config.yml in ${opts.home} or where tunnel run looks.\n` +
        "Run 'oxyctl service install --token TOKEN' with the token from 'oxyctl tunnel token TUNNEL', or " +
        "'oxyctl service install --config FILE' with a config file naming 'tunnel' and 'credentials-file'.",
    );
  }
  const path = resolve(configFile);
  const config = loadConfig(path);
  if (!config.tunnel || !config.credentialsFile) {
    throw new OxyError(
      'OXY_ERR_SERVICE_CONFIG',
      `Configuration file ${path} must contain entries 'tunnel' and 'credentials-file': the service runs with its own ` +
        `data directory (${SERVICE_HOME}) and cannot read the tunnel store in ${opts.home}.`,
    );
  }
  if (!isAbsolute(config.credentialsFile)) {
    throw new OxyError('OXY_ERR_SERVICE_CONFIG', `The credentials-file in ${path} must be an absolute path for the service: ${config.credentialsFile}`);
  }
  return { configFile: path };
}

function requireRootUser(t: Target, env: ServiceEnv, verb: string): void {
  if (t.live && env.uid() !== 0) {
    throw new OxyError(
      'OXY_ERR_SERVICE_ROOT',
      `oxyctl service ${verb} must be run as root (sudo oxyctl service ${verb} …), or with --root DIR to write into another tree.`,
    );
  }
}

function systemctl(env: ServiceEnv, ran: string[][], args: string[]): void {
  const r = env.run('systemctl', args);
  ran.push(['systemctl', ...args]);
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : r.stderr.trim() || `exit status ${r.status}`;
    throw new OxyError('OXY_ERR_SERVICE_SYSTEMCTL', `systemctl ${args.join(' ')} failed: ${why}`);
  }
}

const offlineNotice = (unit: string, t: Target, reason: string): string =>
  `${reason}, so ${unit} was not enabled or started. On the target system run: systemctl daemon-reload && systemctl enable --now ${unit}` +
  (t.live ? '' : ` (or systemctl --root=${t.base} enable ${unit} to enable it offline)`);

/** Writes the unit (and the token file), then enables and starts it where systemd runs. */
export function installService(opts: InstallOptions, env: ServiceEnv = defaultServiceEnv): ServiceResult {
  const t = targetOf(opts.root, env);
  const unit = unitName(opts.kind);
  const source = opts.kind === 'connector' ? connectorSource(opts) : undefined;
  requireRootUser(t, env, 'install');

  const unitPath = under(t, `${ADMIN_UNIT_DIR}/${unit}`);
  if (existsSync(unitPath)) {
    throw new OxyError(
      'OXY_ERR_SERVICE_EXISTS',
      `oxyctl service is already installed at ${unitPath}; if you are running an oxyctl tunnel, you can point it to multiple ` +
        'origins, avoiding the need to run more than one oxyctl service on the same machine; otherwise if you are really sure, ' +
        `you can do \`oxyctl service uninstall${opts.kind === 'edge' ? ' --edge' : ''}\` to clean up the existing service and then try again this command`,
    );
  }
  const files: string[] = [];
  if (source && 'token' in source) {
    const envPath = under(t, TOKEN_ENV_FILE);
    mkdirSync(dirname(envPath), { recursive: true, mode: 0o755 });
    // Created afresh ('wx') so the token is never readable through an older file's mode.
    rmSync(envPath, { force: true });
    writeFileSync(envPath, `# The tunnel token for oxyctl.service (oxyctl service install).\nTUNNEL_TOKEN=${source.token}\n`, { mode: 0o600, flag: 'wx' });
    chmodSync(envPath, 0o600);
    files.push(envPath);
  }
  mkdirSync(dirname(unitPath), { recursive: true, mode: 0o755 });
  writeFileSync(unitPath, unitText({ kind: opts.kind, source, exec: execFor(t), origin: 'service install' }), { mode: 0o644 });
  chmodSync(unitPath, 0o644);
  files.push(unitPath);

  const ran: string[][] = [];
  if (!t.live) {
    const r = env.run('systemctl', [`--root=${t.base}`, 'enable', unit]);
    if (!r.error && r.status === 0) {
      ran.push(['systemctl', `--root=${t.base}`, 'enable', unit]);
      return { unit, files, systemctl: ran, enabled: true, notice: `Enabled ${unit} offline in ${t.base}: it starts when that system boots.` };
    }
    return { unit, files, systemctl: ran, enabled: false, notice: offlineNotice(unit, t, `systemctl could not enable it offline in ${t.base}`) };
  }
  if (!env.systemdRunning()) {
    return { unit, files, systemctl: ran, enabled: false, notice: offlineNotice(unit, t, 'systemd is not running on this system (a container?)') };
  }
  systemctl(env, ran, ['daemon-reload']);
  systemctl(env, ran, ['enable', '--now', unit]);
  return { unit, files, systemctl: ran, enabled: true };
}

/** Stops and disables the unit where systemd runs, then removes what install wrote. */
export function uninstallService(opts: ServiceOptions, env: ServiceEnv = defaultServiceEnv): ServiceResult {
  const t = targetOf(opts.root, env);
  const unit = unitName(opts.kind);
  requireRootUser(t, env, 'uninstall');
  const unitPath = under(t, `${ADMIN_UNIT_DIR}/${unit}`);
  if (!existsSync(unitPath)) {
    throw new OxyError(
      'OXY_ERR_SERVICE_NOT_INSTALLED',
      `oxyctl service is not installed: ${unitPath} does not exist (a unit shipped by the package is managed with systemctl disable --now ${unit}).`,
    );
  }
  const ran: string[][] = [];
  let notice: string | undefined;
  if (!t.live) {
    const r = env.run('systemctl', [`--root=${t.base}`, 'disable', unit]);
    if (!r.error && r.status === 0) ran.push(['systemctl', `--root=${t.base}`, 'disable', unit]);
  } else if (env.systemdRunning()) {
    systemctl(env, ran, ['disable', '--now', unit]);
  } else {
    notice = `systemd is not running on this system (a container?): removed ${unit} without stopping it.`;
  }
  const files = [unitPath];
  rmSync(unitPath, { force: true });
  // Offline `systemctl --root disable` may be unavailable: never leave a dangling enable link behind.
  rmSync(under(t, `${ADMIN_UNIT_DIR}/multi-user.target.wants/${unit}`), { force: true });
  if (opts.kind === 'connector' && existsSync(under(t, TOKEN_ENV_FILE))) {
    rmSync(under(t, TOKEN_ENV_FILE));
    files.push(under(t, TOKEN_ENV_FILE));
  }
  if (t.live && env.systemdRunning()) systemctl(env, ran, ['daemon-reload']);
  return { unit, files, systemctl: ran, enabled: false, notice };
}

/** The human report: what was written and run (stdout), and why systemctl did not run (stderr). */
export function serviceReport(result: ServiceResult, verb: 'installed' | 'uninstalled'): { text: string; notice?: string } {
  const lines = result.files.map((f) => `${verb === 'installed' ? 'Wrote' : 'Removed'} ${f}`);
  for (const cmd of result.systemctl) lines.push(cmd.join(' '));
  lines.push(`Linux service for oxyctl ${verb} successfully (${result.unit})`);
  return { text: `${lines.join('\n')}\n`, notice: result.notice };
}
