/**
 * SSH on IP flows: TCP flows to port 22 are upgraded to a stream at the edge
 * (ipFlow.handleFlow), observed, and downgraded again toward their destination as IP
 * packets (egress `downgrade` to an IP off-ramp). Everything else keeps the engine's
 * defaults.
 *
 * What is logged per session: the client's and the server's SSH identification strings
 * (`SSH-2.0-OpenSSH_9.2p1 …`, sent in clear), the bytes each way, and the client's
 * small writes after the key exchange (one per keystroke in an interactive shell).
 * The commands themselves travel encrypted after the key exchange: logging them needs
 * the edge to terminate SSH (an SSH server and client in the pipeline, e.g. the `ssh2`
 * package with a session CA), which this example does not do.
 *
 * As a --hooks module the off-ramp is the engine's default egress (no downgrade);
 * embed `sshHooks({ offRamp })` to downgrade toward an IP network of your own.
 */
const SSH_PORT = 22;

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

export function sshHooks({ offRamp, log, port = SSH_PORT } = {}) {
  return {
    newCtx: () => ({ ssh: false, clientId: undefined, serverId: undefined, keystrokes: 0 }),
    ipFlow: {
      handleFlow(flow, _packet, ctx) {
        if (flow.protocol !== 6 || flow.dst.port !== port) return undefined;
        ctx.ext.ssh = true;
        return { action: 'upgrade' };
      },
    },
    egress: {
      handleConnection(_target, ctx) {
        if (ctx.ext.ssh && offRamp) return { action: 'downgrade', offRamp };
        return undefined;
      },
    },
    tunnel: {
      appTunnelPipeline(client, upstream, _info, ctx) {
        const l = log ?? ctx.log;
        const clientLine = firstLine((id) => {
          ctx.ext.clientId = id;
          l.info({ flow: `${ctx.client.address}:${ctx.client.port}`, client: id }, 'SSH client identification');
        });
        const serverLine = firstLine((id) => {
          ctx.ext.serverId = id;
          l.info({ flow: `${ctx.client.address}:${ctx.client.port}`, server: id }, 'SSH server identification');
        });
        client.on('data', (chunk) => {
          clientLine(chunk);
          if (ctx.ext.serverId && chunk.length <= 64) ctx.ext.keystrokes++;
        });
        upstream.on('data', serverLine);
        client.pipe(upstream);
        upstream.pipe(client);
        return new Promise((resolve) => client.once('close', resolve));
      },
    },
    ingress: {
      handleConnectionClose(stats, ctx) {
        if (!ctx.ext.ssh) return;
        (log ?? ctx.log).info(
          { flow: `${ctx.client.address}:${ctx.client.port}`, to: `${ctx.local.address}:${ctx.local.port}`, client: ctx.ext.clientId, server: ctx.ext.serverId, bytesIn: stats.bytesIn, bytesOut: stats.bytesOut, keystrokes: ctx.ext.keystrokes, reason: stats.reason },
          'SSH session ended',
        );
      },
    },
  };
}

export function start(settings) {
  return sshHooks({ log: settings.log });
}
