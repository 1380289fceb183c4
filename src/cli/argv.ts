/**
 * cloudflared's command lines, made to parse here before oclif sees them:
 * - flags before the subcommand (`tunnel --protocol quic run NAME`, `tunnel --config F ingress
 *   validate`, `--loglevel debug tunnel run`) move after it, as urfave/cli lets a parent's
 *   flags reach its subcommands;
 * - cloudflared flags that mean nothing here (`--no-autoupdate`, `--region us`, …) are taken
 *   out with their value, and said once on stderr;
 * - Go-style booleans `--flag=true|false` become `--flag` / `--no-flag` (or nothing: false is
 *   a plain boolean's default).
 * Which flags take a value comes from the oclif manifest (our commands' flags), so a flag
 * value that looks like a subcommand word is never mistaken for one.
 */

export interface ManifestFlag {
  type: 'boolean' | 'option';
  char?: string;
  allowNo?: boolean;
  aliases?: string[];
}

/** A command's flag by name, alias, `no-` form or (short) char. */
function findFlag(c: ManifestCommand, name: string, short: boolean): ManifestFlag | undefined {
  const flags = Object.values(c.flags);
  if (short) return flags.find((f) => f.char === name);
  return c.flags[name] ?? flags.find((f) => f.aliases?.includes(name)) ?? (name.startsWith('no-') ? c.flags[name.slice(3)] : undefined);
}

export interface ManifestCommand {
  flags: Record<string, ManifestFlag>;
  aliases?: string[];
}

/** cloudflared flags with no effect in oxyctl (accepted, one notice). `true`: the flag takes a value. */
export const NO_EFFECT_FLAGS: Record<string, boolean> = {
  'no-autoupdate': false,
  'autoupdate-freq': true,
  'is-autoupdated': false,
  'no-prechecks': false,
  'post-quantum': false,
  region: true,
  'metrics-update-freq': true,
  tag: true,
  origincert: true,
  'compression-quality': true,
  'use-reconnect-token': false,
  'dial-edge-timeout': true,
  'stdin-control': false,
  ui: false,
  'api-url': true,
  'api-key': true,
  'api-email': true,
  'api-ca-key': true,
  'lb-pool': true,
  'heartbeat-interval': true,
  'heartbeat-count': true,
  'max-edge-addr-retries': true,
  'trace-output': true,
  'transport-loglevel': true,
  'management-diagnostics': false,
  'management-hostname': true,
  'rpc-timeout': true,
  'write-stream-timeout': true,
  'quic-disable-pmtu-discovery': false,
  'quic-connection-level-flow-control-limit': true,
  'quic-stream-level-flow-control-limit': true,
  features: true,
  'service-op-ip': true,
  'max-fetch-size': true,
  'proxy-address': true,
  'proxy-port': true,
  'proxy-connection-timeout': true,
  'proxy-expect-continue-timeout': true,
  socks5: false,
  'ssh-server': false,
  'local-ssh-port': true,
  'ssh-idle-timeout': true,
  'ssh-max-timeout': true,
  'bucket-name': true,
  'region-name': true,
  's3-url-host': true,
  'host-key-path': true,
};

/** No-effect flags already said on this run's command line: a config key of the same name is not said again. */
export const saidNoEffect = new Set<string>();

export interface RewrittenArgv {
  argv: string[];
  /** One line per ignored flag, for stderr. */
  notices: string[];
}

const isFlag = (t: string): boolean => t.startsWith('-') && t !== '-' && t !== '--';

function flagName(token: string): { name: string; inlineValue?: string; short: boolean } {
  const short = !token.startsWith('--');
  const body = token.replace(/^--?/, '');
  const eq = body.indexOf('=');
  return eq < 0 ? { name: body, short } : { name: body.slice(0, eq), inlineValue: body.slice(eq + 1), short };
}

export function rewriteArgv(input: string[], commands: Record<string, ManifestCommand>): RewrittenArgv {
  // cloudflared's -v / --version anywhere before a command: the version.
  if (input.length === 1 && input[0] === '-v') return { argv: ['--version'], notices: [] };
  const byId = new Map<string, ManifestCommand>();
  for (const [id, cmd] of Object.entries(commands)) {
    byId.set(id, cmd);
    for (const alias of cmd.aliases ?? []) byId.set(alias, cmd);
  }
  const end = input.indexOf('--');
  const head = end < 0 ? [...input] : input.slice(0, end);
  const tail = end < 0 ? [] : input.slice(end);

  // The command: the longest run of non-flag words (skipping flags and their values) that names one.
  const words: string[] = [];
  const moved: string[] = [];
  const rest: string[] = [];
  let command: ManifestCommand | undefined;
  const takesValue = (name: string, short: boolean): boolean => {
    if (name in NO_EFFECT_FLAGS) return NO_EFFECT_FLAGS[name];
    // The command's own flag first, else any command's (a parent's flag meant for a subcommand).
    for (const c of command ? [command, ...byId.values()] : byId.values()) {
      const f = findFlag(c, name, short);
      if (f) return f.type === 'option';
    }
    return false;
  };
  let i = 0;
  let inCommand = true;
  while (i < head.length) {
    const token = head[i];
    if (isFlag(token)) {
      const { name, inlineValue, short } = flagName(token);
      const group = [token];
      if (inlineValue === undefined && takesValue(name, short) && i + 1 < head.length) group.push(head[++i]);
      (inCommand && words.length > 0 ? moved : rest).push(...group);
      i++;
      continue;
    }
    if (inCommand && byId.has([...words, token].join(':'))) {
      words.push(token);
      command = byId.get(words.join(':'));
    } else if (inCommand && [...byId.keys()].some((id) => id.startsWith(`${[...words, token].join(':')}:`))) {
      words.push(token); // a topic on the way to a command (tunnel route ip …)
    } else {
      inCommand = false;
      rest.push(token);
    }
    i++;
  }
  // Flags seen before the command's last word go after it; positionals keep their order.
  const cleaned = cleanFlags([...words, ...rest, ...moved], command);
  return { argv: [...cleaned.argv, ...tail], notices: cleaned.notices };
}

/** Drops no-effect flags (with a notice) and turns `--flag=true|false` into oclif's booleans. */
function cleanFlags(argv: string[], command: ManifestCommand | undefined): RewrittenArgv {
  const stopAt = argv.length;
  const out: string[] = [];
  const notices: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i];
    if (i >= stopAt || !token.startsWith('--')) {
      out.push(token);
      continue;
    }
    const { name, inlineValue } = flagName(token);
    const own = command && findFlag(command, name, false);
    if (!own && name in NO_EFFECT_FLAGS) {
      if (inlineValue === undefined && NO_EFFECT_FLAGS[name] && i + 1 < stopAt) i++;
      const line = `--${name} has no effect in oxyctl (accepted for cloudflared compatibility)`;
      if (!notices.includes(line)) notices.push(line);
      saidNoEffect.add(name);
      continue;
    }
    if (own?.type === 'boolean' && inlineValue !== undefined && /^(true|false|1|0|t|f)$/i.test(inlineValue)) {
      const on = /^(true|1|t)$/i.test(inlineValue);
      if (on) out.push(`--${name}`);
      else if (own.allowNo) out.push(`--no-${name}`);
      continue;
    }
    out.push(token);
  }
  return { argv: out, notices };
}
