/**
 * SSH with command logging on IP flows. TCP flows to port 22 are upgraded to a stream at
 * the edge (ipFlow.handleFlow); the edge terminates SSH there (an ssh2 server on the
 * client's stream) and opens its own SSH connection to the flow's destination over the
 * upstream stream, which leaves as IP packets again (egress `downgrade` to an IP
 * off-ramp). Between the two, sessions travel in clear and are logged:
 *
 *   SSH login         flow=198.18.1.1:42022 to=198.18.3.3:22 user=root key=SHA256:…
 *   SSH command       … user=root command="id -un" channel=0          (ssh host 'id -un')
 *   SSH shell         … user=root term=xterm channel=0                (ssh host)
 *   SSH typed line    … user=root line="ls -l /etc" channel=0         (each line typed)
 *   SSH exit          … user=root channel=0 status=0                  (or signal=TERM)
 *   SSH session ended … bytesIn=… bytesOut=… commands=1 lines=3 reason=fin
 *
 * Authentication
 *   user → edge: public key. The key must be in the authorized_keys the example is given,
 *     and its signature is checked; other keys are refused (`SSH login refused … reason=…`).
 *   edge → destination: as the same user, with a fresh ed25519 key per session and an
 *     OpenSSH user certificate for it (principal: the user, valid 2 minutes, only pty
 *     allowed) signed by the session CA. The destination's sshd trusts that CA
 *     (TrustedUserCAKeys), so users need no key of their own there. The user's login
 *     succeeds only once the destination has accepted the certificate.
 *
 * Operator setup, as a --hooks module (`npm install ssh2` next to it, then
 * `oxyctl edge run … --hooks ./ssh-sessions.js`): the first start creates
 * ${OXY_HOME}/ssh-sessions/ with host_key(.pub) and ca_key (mode 0600), ca.pub and an empty
 * authorized_keys, and logs the CA's public key. Then:
 *   - add your users' public keys to authorized_keys (read at every login);
 *   - on each destination: copy ca.pub to /etc/ssh/oxy_ca.pub and add
 *     `TrustedUserCAKeys /etc/ssh/oxy_ca.pub` to sshd_config;
 *   - users trust host_key.pub for the destinations behind the edge (known_hosts:
 *     `198.18.3.* ssh-ed25519 AAAA…`): the edge answers for them.
 * As a --hooks module the destination leg is downgraded into the edge's own IP network
 * (settings.vnetOffRamp: the edge needs its IP path, e.g. --ip-tunnel-listen): its packets
 * follow the route of the connection's vnet to the tunnel that serves the destination. Embed
 * `sshHooks({ offRamp, hostKey, caKey, authorizedKeys })` to downgrade toward an IP network
 * of your own.
 *
 * Limits: typed lines are rebuilt from keystrokes, so tab completion, history and cursor
 * keys are not resolved (such lines carry `approximate=true`); a line typed after a
 * password or passphrase prompt is logged as `[redacted]`. Subsystems (sftp) are relayed
 * and logged by name; port forwarding is refused and logged; agent and X11 forwarding are
 * refused.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import ssh2 from 'ssh2';
import { certificateKey, fingerprint, presentCertificate, publicKeyLine, userCertificate } from './lib/ssh-certificate.js';

const SSH_PORT = 22;
const { utils } = ssh2;

function parseKey(text, what) {
  const parsed = utils.parseKey(text);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (key instanceof Error) throw new Error(`${what}: ${key.message}`);
  return key;
}

/**
 * A new ed25519 key pair in OpenSSH format. ssh2 1.17 drops a leading zero byte of the
 * public key about once in 250 keys (it then cannot parse its own key): draw again.
 */
function ed25519Pair(comment) {
  for (;;) {
    const pair = utils.generateKeyPairSync('ed25519', comment ? { comment } : undefined);
    if (!(utils.parseKey(pair.private) instanceof Error)) return pair;
  }
}

/** The public keys of an authorized_keys text; options before a key are ignored. */
function authorizedKeyList(text) {
  const keys = [];
  for (const line of text.split('\n')) {
    if (/^\s*(#|$)/.test(line)) continue;
    const m = /(?:^|\s)((?:ssh|ecdsa-sha2)-[\w@.-]+)\s+([A-Za-z0-9+/]+=*)/.exec(line);
    const key = m && utils.parseKey(`${m[1]} ${m[2]}`);
    if (key && !(key instanceof Error)) keys.push(key);
  }
  return keys;
}

/** The first line of a stream, once it is complete (the SSH identification string). */
function firstLine(onLine) {
  let buf = '';
  let done = false;
  return (chunk) => {
    if (done) return;
    buf += chunk.toString('latin1');
    const end = buf.indexOf('\n');
    if (end < 0 && buf.length < 255) return;
    done = true;
    onLine(buf.slice(0, end < 0 ? 255 : end).replace(/\r$/, ''));
  };
}

const MAX_LINE = 4096;
const PASTE = new Set(['200~', '201~']);

/**
 * Lines a user typed, rebuilt from keystrokes: CR or LF ends a line, backspace/^H, ^U and
 * ^W edit it, ^C drops it. Escape sequences (cursor keys) and other control keys mark the
 * line approximate, as does tab (the shell completes what we cannot see); bracketed paste
 * does not.
 */
function typedLines(onLine) {
  const decoder = new StringDecoder('utf8');
  let line = '';
  let approximate = false;
  let esc = ''; // '' | 'esc' | 'ss3' | 'csi:<params>'
  let afterCr = false;
  return (chunk) => {
    for (const ch of decoder.write(chunk)) {
      if (esc) {
        if (esc === 'esc') esc = ch === '[' ? 'csi:' : ch === 'O' ? 'ss3' : '';
        else if (esc === 'ss3') esc = '';
        else if (ch >= '@' && ch <= '~') {
          if (!PASTE.has(esc.slice(4) + ch)) approximate = true;
          esc = '';
        } else esc += ch;
        continue;
      }
      const crlf = afterCr && ch === '\n';
      afterCr = ch === '\r';
      if (ch === '\r' || ch === '\n') {
        if (line && !crlf) onLine(line, approximate);
        if (!crlf) [line, approximate] = ['', false];
      } else if (ch === '\x7f' || ch === '\b') line = [...line].slice(0, -1).join('');
      else if (ch === '\x15') line = '';
      else if (ch === '\x17') line = line.replace(/\S*\s*$/, '');
      else if (ch === '\x03') [line, approximate] = ['', false];
      else if (ch === '\x1b') esc = 'esc';
      else if (ch === '\x04' && !line) continue;
      else if (ch < ' ' && ch !== '\t') approximate = true;
      else if (line.length < MAX_LINE) {
        line += ch;
        if (ch === '\t') approximate = true;
      }
    }
  };
}

const SECRET_PROMPT = /(password|passphrase)[^\n]*:\s*$/i;

/** ssh2's exit arguments (`code`, or null and `SIGTERM`, core dumped, message) → log fields. */
const exitFields = (code, signal) => (code != null ? { status: code } : signal ? { signal: signal.replace(/^SIG/, '') } : {});

/**
 * Joins the user's channel (`local`, ssh2 server side) to the destination's (`remote`):
 * input with its EOF, stdout and stderr, then the exit status and the close, in that order
 * (the user closing `local` first is the caller's to handle).
 */
function relayChannel(local, remote, onExit) {
  local.pipe(remote);
  remote.pipe(local, { end: false });
  remote.stderr.pipe(local.stderr, { end: false });
  remote.once('close', (code, signal, coreDumped, message) => {
    const finish = () => {
      try {
        if (code != null) local.exit(code);
        else if (signal) local.exit(signal, coreDumped, message);
      } catch {
        // A signal name ssh2 does not know: the user's client sees no exit status (ssh: 255).
      }
      onExit(code, signal);
      local.end();
    };
    if (remote.stderr.readableEnded) finish();
    else remote.stderr.once('end', finish);
  });
}

/** What the session logs and how it counts (ctx.ext). */
const newCtx = () => ({ ssh: false, user: undefined, clientId: undefined, serverId: undefined, commands: 0, lines: 0 });

/** @typedef {ReturnType<typeof newCtx>} SshCtx */

/**
 * @param {object} options
 * @param {import('oxyctl/hooks').IpOffRamp | ((ctx: import('oxyctl/hooks').HookContext<SshCtx>) => import('oxyctl/hooks').IpOffRamp)} [options.offRamp] where the destination leg is downgraded to (an IpOffRamp of docs/hooks.md), or a function of the connection that returns one (default: the engine's egress)
 * @param {string|Buffer} options.hostKey the edge's SSH host key (OpenSSH private key)
 * @param {string|Buffer} options.caKey the session CA (ed25519, OpenSSH private key)
 * @param {string|(() => string)} options.authorizedKeys an authorized_keys text, or a function that reads one (at each login)
 * @param {(key: Buffer) => boolean} [options.verifyDestination] checks a destination's host key blob (default: any; its fingerprint is logged)
 * @param {import('oxyctl/hooks').HookSettings['log']} [options.log] where sessions are logged (default: each connection's logger)
 * @param {number} [options.port] the SSH port whose flows are terminated (default 22)
 * @param {number} [options.certificateTtlSeconds] lifetime of the certificates the session CA signs
 * @param {number} [options.loginTimeoutMs] how long a user has to log in
 * @returns {import('oxyctl/hooks').Hooks<SshCtx>}
 */
export function sshHooks({
  offRamp,
  log,
  port = SSH_PORT,
  hostKey,
  caKey,
  authorizedKeys,
  certificateTtlSeconds = 120,
  loginTimeoutMs = 60_000,
  verifyDestination,
}) {
  const host = parseKey(hostKey, 'hostKey');
  const ca = parseKey(caKey, 'caKey');
  const readAuthorized = typeof authorizedKeys === 'function' ? authorizedKeys : () => authorizedKeys ?? '';

  function terminate(socket, upstream, ctx) {
    const s = ctx.ext;
    const l = log ?? ctx.log;
    const where = () => ({ flow: `${ctx.client.address}:${ctx.client.port}`, to: `${ctx.local.address}:${ctx.local.port}`, user: s.user });
    const closed = Promise.all([socket, upstream].map((stream) => (stream.destroyed ? undefined : new Promise((resolve) => stream.once('close', resolve)))));

    // Destination leg: starts its key exchange now; logs in once the user has.
    let loggedIn;
    const userLogin = new Promise((resolve, reject) => (loggedIn = { resolve, reject }));
    const destination = new ssh2.Client();
    const destinationReady = new Promise((resolve, reject) => {
      destination.once('ready', resolve);
      destination.on('error', (err) => {
        reject(err);
        l.debug({ ...where(), err }, 'SSH destination connection error');
      });
      destination.once('close', () => reject(new Error('connection closed')));
    });
    destinationReady.catch(() => undefined);
    userLogin.catch(() => undefined);
    socket.once('close', () => loggedIn.reject(new Error('client gone')));
    let tried = false;
    destination.connect({
      sock: upstream,
      username: 'unused', // the authHandler names the user
      readyTimeout: loginTimeoutMs,
      hostVerifier: (key) => {
        s.destinationKey = fingerprint(key);
        return verifyDestination ? verifyDestination(key) : true;
      },
      authHandler: (_methodsLeft, _partial, next) => {
        if (tried) return next(false);
        tried = true;
        userLogin.then(
          (user) => {
            const key = parseKey(ed25519Pair().private, 'session key');
            const cert = userCertificate({
              ca,
              key,
              principals: [user],
              keyId: `oxyctl ssh-sessions user=${user} flow=${where().flow}`,
              ttlSeconds: certificateTtlSeconds,
            });
            next({ type: 'publickey', username: user, key: certificateKey(key, cert) });
          },
          () => next(false),
        );
      },
    });
    presentCertificate(destination);
    upstream.on(
      'data',
      firstLine((id) => (s.serverId = id)),
    );

    // User leg: an SSH server on the client's stream.
    const server = new ssh2.Server({ hostKeys: [{ key: host }], ident: 'oxyctl-ssh-sessions' }, (conn, info) => {
      s.clientId = info.header.identRaw;
      conn.on('error', (err) => l.debug({ ...where(), err }, 'SSH client connection error'));
      conn.on('authentication', (auth) => {
        if (auth.method !== 'publickey') return auth.reject(['publickey']);
        const fields = { ...where(), user: auth.username, key: fingerprint(auth.key.data) };
        const refuse = (reason) => {
          l.info({ ...fields, reason }, 'SSH login refused');
          auth.reject(['publickey']);
        };
        const key = authorizedKeyList(readAuthorized()).find((k) => k.getPublicSSH().equals(auth.key.data));
        if (!key) return refuse('key not in authorized_keys');
        if (!auth.signature) return auth.accept(); // "would this key do?": yes
        if (key.verify(auth.blob, auth.signature, auth.hashAlgo) !== true) return refuse('bad signature');
        if (s.user !== undefined) return refuse('one login per connection');
        s.user = auth.username;
        loggedIn.resolve(auth.username);
        destinationReady.then(
          () => {
            l.info({ ...fields, destinationKey: s.destinationKey }, 'SSH login');
            auth.accept();
          },
          (err) => {
            refuse(`destination refused the session certificate: ${err.message}`);
            conn.end();
          },
        );
      });
      conn.on('ready', () => {
        let channels = 0;
        conn.on('session', (accept) => relaySession(accept(), channels++));
        const refuseForwarding = (kind, target, reject) => {
          l.info({ ...where(), kind, target }, 'SSH port forwarding refused');
          reject?.();
        };
        conn.on('tcpip', (_accept, reject, i) => refuseForwarding('direct-tcpip', `${i.destIP}:${i.destPort}`, reject));
        conn.on('openssh.streamlocal', (_accept, reject, i) => refuseForwarding('direct-streamlocal', i.socketPath, reject));
        conn.on('request', (_accept, reject, name, i) => refuseForwarding(name, i?.socketPath ?? `${i?.bindAddr}:${i?.bindPort}`, reject));
      });
      conn.on('close', () => destination.end());
      userConn = conn;
    });
    let userConn;
    destination.on('close', () => (userConn ? userConn.end() : socket.end()));

    /** One session channel: requests before the start are kept and replayed on the destination. */
    function relaySession(session, channel) {
      const env = {};
      let pty;
      let remote;
      session.on('env', (accept, _reject, { key, val }) => {
        env[key] = val;
        accept?.();
      });
      session.on('pty', (accept, _reject, info) => {
        pty = info;
        accept?.();
      });
      session.on('window-change', (accept, _reject, i) => {
        if (pty) Object.assign(pty, { rows: i.rows, cols: i.cols, height: i.height, width: i.width });
        remote?.setWindow(i.rows, i.cols, i.height, i.width);
        accept?.();
      });
      session.on('signal', (accept, reject, { name }) => {
        try {
          remote?.signal(name);
          accept?.();
        } catch {
          reject?.(); // not a signal name ssh2 knows
        }
      });
      // Accepted at once: the user's client may send its EOF right after the request, and
      // ssh2 takes no late accept then. Input waits in `local` until the destination answers.
      const start = (what, open, typed) => (accept) => {
        const local = accept();
        if (!local) return;
        let closed = false;
        local.once('close', () => {
          closed = true;
          remote?.close();
        });
        open((err, stream) => {
          if (closed) return stream?.close(); // the user gave up meanwhile
          if (err) {
            l.info({ ...where(), ...what, channel, err }, 'SSH destination refused the channel');
            local.stderr.write(`oxyctl: the destination refused: ${err.message}\r\n`);
            return local.end(); // no exit status: ssh exits 255
          }
          remote = stream;
          relayChannel(local, stream, (code, signal) => l.info({ ...where(), channel, ...exitFields(code, signal) }, 'SSH exit'));
          if (typed) watchTyping(local, stream);
        });
      };
      session.on('exec', (accept, _reject, { command }) => {
        s.commands++;
        l.info({ ...where(), command, channel, ...(pty ? { pty: true } : {}) }, 'SSH command');
        start({ command }, (cb) => destination.exec(command, { env, pty }, cb), Boolean(pty))(accept);
      });
      session.on('shell', (accept) => {
        l.info({ ...where(), ...(pty ? { term: pty.term } : {}), channel }, 'SSH shell');
        start({ shell: true }, (cb) => destination.shell(pty ?? false, { env }, cb), true)(accept);
      });
      session.on('subsystem', (accept, _reject, { name }) => {
        l.info({ ...where(), subsystem: name, channel }, 'SSH subsystem');
        start({ subsystem: name }, (cb) => destination.subsys(name, cb), false)(accept);
      });

      /** Logs what the user types, redacting a line typed after a password prompt. */
      function watchTyping(local, stream) {
        let tail = '';
        stream.on('data', (chunk) => (tail = (tail + chunk.toString('latin1')).slice(-256)));
        local.on(
          'data',
          typedLines((line, approximate) => {
            s.lines++;
            const text = SECRET_PROMPT.test(tail) ? '[redacted]' : line;
            l.info({ ...where(), line: text, channel, ...(approximate ? { approximate } : {}) }, 'SSH typed line');
          }),
        );
      }
    }

    server.injectSocket(socket);
    return closed.then(() => undefined);
  }

  return {
    newCtx,
    ipFlow: {
      handleFlow(flow, _packet, ctx) {
        if (flow.protocol !== 6 || flow.dst.port !== port) return undefined;
        ctx.ext.ssh = true;
        return { action: 'upgrade' };
      },
    },
    egress: {
      handleConnection(_target, ctx) {
        if (ctx.ext.ssh && offRamp) return { action: 'downgrade', offRamp: typeof offRamp === 'function' ? offRamp(ctx) : offRamp };
        return undefined;
      },
    },
    tunnel: {
      appTunnelPipeline(client, upstream, _info, ctx) {
        if (ctx.ext.ssh) return terminate(client, upstream, ctx);
        // Not SSH (e.g. a CONNECT tunnel): splice, as the engine would.
        client.pipe(upstream);
        upstream.pipe(client);
        return new Promise((resolve) => client.once('close', resolve));
      },
    },
    ingress: {
      handleConnectionClose(stats, ctx) {
        const s = ctx.ext;
        if (!s.ssh) return;
        (log ?? ctx.log).info(
          {
            flow: `${ctx.client.address}:${ctx.client.port}`,
            to: `${ctx.local.address}:${ctx.local.port}`,
            user: s.user,
            client: s.clientId,
            server: s.serverId,
            bytesIn: stats.bytesIn,
            bytesOut: stats.bytesOut,
            commands: s.commands,
            lines: s.lines,
            reason: stats.reason,
          },
          'SSH session ended',
        );
      },
    },
  };
}

/** A key file of the example's own: read, or generated (ed25519, mode 0600) with its .pub. */
function keyFile(path, comment) {
  if (!existsSync(path)) {
    const pair = ed25519Pair(comment);
    writeFileSync(path, pair.private, { mode: 0o600 });
    writeFileSync(`${path}.pub`, `${pair.public}\n`, { mode: 0o644 });
  }
  chmodSync(path, 0o600);
  return readFileSync(path, 'utf8');
}

/** @type {import('oxyctl/hooks').HooksModuleStart} */
export function start(settings) {
  const dir = join(settings.home, 'ssh-sessions');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const hostKey = keyFile(join(dir, 'host_key'), 'oxyctl ssh-sessions host key');
  const caKey = keyFile(join(dir, 'ca_key'), 'oxyctl ssh-sessions CA');
  const caPub = publicKeyLine(parseKey(caKey, 'ca_key'), 'oxyctl-ssh-sessions-ca');
  writeFileSync(join(dir, 'ca.pub'), caPub, { mode: 0o644 });
  const authorized = join(dir, 'authorized_keys');
  if (!existsSync(authorized)) writeFileSync(authorized, "# Users' public keys, one per line, as in ~/.ssh/authorized_keys\n", { mode: 0o600 });
  settings.log.info(
    { ca: caPub.trim(), trustedUserCaKeys: join(dir, 'ca.pub'), authorizedKeys: authorized },
    'SSH sessions: destinations trust this CA (TrustedUserCAKeys)',
  );
  return sshHooks({ log: settings.log, offRamp: (ctx) => settings.vnetOffRamp(ctx), hostKey, caKey, authorizedKeys: () => readFileSync(authorized, 'utf8') });
}
