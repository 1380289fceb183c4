/**
 * Connected IP tunnels: a Unix SOCK_SEQPACKET listener. On each connection the first
 * datagram is the context (JSON: `{"tenant": "...", "vnet": "...", ...app fields}`),
 * every later datagram exactly one raw IPv4 or IPv6 packet, no other framing. Packets
 * for the client go back on the same connection. A connection whose context is not
 * valid is closed (`badContext`); malformed packets are counted by the edge and dropped.
 */
import { EventEmitter } from 'node:events';

import { SeqpacketServer, closeFd, type SeqpacketSocket } from '../../native/index.js';
import type { IpEdge, IpSession } from './edge.js';
import { parseContext } from './context.js';
import { soon } from '../../util/soon.js';
import type { OxyError } from '../../../core/errors.js';
import type { IpContext } from '../../flow/types.js';

export interface SeqpacketOnRampOptions {
  /** Largest datagram (context or packet). Default 65535 + 64. */
  maxMessageSize?: number;
  backlog?: number;
  /**
   * SO_SNDBUF of each client's socket: the packets it has not read yet. Default 4 MiB (as the
   * device's relay asks for its side), capped by net.core.wmem_max. The kernel's default (~200 KiB)
   * held three of the edge's 64 KB TCP segments: a device reading a bulk download filled it at
   * every burst and the rest of the burst went through JS (a copy and a queue per packet) instead
   * of the addon's fast path (docs/decisions.md "The -R window … (session 12)").
   */
  sendBufferSize?: number;
  /**
   * Checks and completes a client's context (the edge resolves its vnet); throwing an
   * OxyError refuses the client: it reads one datagram `{"error":{"code","message"}}`
   * (never an IP packet: the first byte is `{`) and the connection closes.
   */
  resolveContext?(context: IpContext): IpContext;
}

/**
 * OXY_IP_PARTIAL_SENDS=0: a client's partialSends is not taken up (its TCP packets come whole, as
 * from a client that does not offer them). Read per client.
 */
const partialSendsTaken = (): boolean => process.env.OXY_IP_PARTIAL_SENDS !== '0';

/**
 * OXY_IP_TUN_HANDOFF=0: a client's tunHandoff is not taken up (its packets keep coming over the
 * socket, relayed by its process, as from a client that does not offer its TUN). Read per client.
 */
const tunHandoffTaken = (): boolean => process.env.OXY_IP_TUN_HANDOFF !== '0';

export interface SeqpacketOnRampEvents {
  session: [session: IpSession];
  error: [err: Error];
}

export class SeqpacketOnRamp extends EventEmitter<SeqpacketOnRampEvents> {
  /** tunsTaken: clients' TUNs read and written here (tunHandoff); tunsRefused: fds handed over that were not such a TUN. */
  readonly stats = { connections: 0, badContext: 0, refused: 0, sendErrors: 0, tunsTaken: 0, tunsRefused: 0 };
  private readonly server: SeqpacketServer;
  private readonly sockets = new Set<SeqpacketSocket>();
  /** Set while the flow clock is fresh for the current batch of messages (see clock()). */
  private clocked = false;

  constructor(
    private readonly edge: IpEdge,
    readonly path: string,
    private readonly options: SeqpacketOnRampOptions = {},
  ) {
    super();
    this.server = SeqpacketServer.listen(path, {
      backlog: options.backlog,
      socketOptions: { maxMessageSize: options.maxMessageSize ?? 65535 + 64, batchSize: 128, sendBufferSize: options.sendBufferSize ?? 4 * 1024 * 1024 },
    });
    this.server.on('connection', (socket) => this.connection(socket));
    this.server.on('error', (err) => this.emit('error', err));
  }

  private connection(socket: SeqpacketSocket): void {
    this.stats.connections++;
    this.sockets.add(socket);
    let session: IpSession | undefined;
    // tunHandoff: 'offered' once we answered that we take the client's TUN, 'taken' once it is ours.
    let tun: 'no' | 'offered' | 'taken' = 'no';
    const send = (packet: Buffer): void => {
      try {
        if (tun !== 'taken') socket.send(packet);
        else if (!socket.writeTun(packet)) this.stats.sendErrors++;
      } catch {
        this.stats.sendErrors++;
      }
    };
    const answer = (fields: object) => {
      try {
        socket.send(Buffer.from(JSON.stringify(fields)));
      } catch {
        this.stats.sendErrors++;
      }
    };
    socket.on('message', (data, fds) => {
      // The client's TUN, once we said we take it (one fd, with a JSON message): read and written
      // here from now on; anything else is refused with a message and the client keeps relaying.
      if (session && tun === 'offered' && fds.length === 1 && data[0] === 0x7b) {
        try {
          socket.adoptTun(fds[0]!);
          tun = 'taken';
          this.stats.tunsTaken++;
          answer({ tunTaken: true });
        } catch (err) {
          tun = 'no';
          this.stats.tunsRefused++;
          answer({ tunRefused: `The edge did not take the TUN handed over: ${(err as Error).message}` });
        }
        return;
      }
      // No other fds are expected on an IP tunnel: close any, never leak them.
      for (const fd of fds) closeFd(fd);
      if (session) {
        this.clock();
        session.receive(data);
        return;
      }
      const parsed = parseContext(data);
      if (!parsed) {
        this.stats.badContext++;
        socket.close();
        return;
      }
      let context = parsed;
      try {
        context = this.options.resolveContext?.(parsed) ?? parsed;
      } catch (err) {
        this.stats.refused++;
        const { code, message } = err as OxyError;
        send(Buffer.from(JSON.stringify({ error: { code, message } })));
        socket.close();
        return;
      }
      session = this.edge.openSession(context, send);
      session.nearClient = true;
      // Established TCP flows of this client then pass between its socket and the TUN natively; a
      // client whose context says partialChecksums (warp's relay) gets the kernel's TCP packets
      // with their checksums left partial (it writes them to its TUN as CHECKSUM_PARTIAL). One
      // whose context says partialSends may send its TCP packets so too, once told we take them
      // (`{"partialSends":true}`): the addon sums those that leave the fast path.
      // One whose context says tunHandoff (and partialChecksums: its TUN has the virtio header) may
      // pass its TUN's fd instead, once told we take it (`{"tunHandoff":true}`): we then read and
      // write that TUN here (adoptTun) and the socket is its control channel (its close ends the
      // session, and our fd of the TUN with it).
      if (this.edge.fastPath) {
        const sendsPartial = parsed.partialSends === true && partialSendsTaken();
        session.fastPeer = socket.joinFastNat(this.edge.upgrader.fastNat, parsed.partialChecksums === true, sendsPartial);
        const handoff = parsed.tunHandoff === true && parsed.partialChecksums === true && tunHandoffTaken();
        if (handoff) tun = 'offered';
        if (sendsPartial || handoff) answer({ ...(sendsPartial ? { partialSends: true } : {}), ...(handoff ? { tunHandoff: true } : {}) });
      }
      this.emit('session', session);
    });
    // Flows the fast path started at their SYNs (native SYNs): JS takes them before the batch's packets.
    socket.on('born', () => this.edge.adoptBorn());
    // The TUN handed over failed (its queue detached, the device gone): the session ends with it.
    socket.on('error', () => void (tun === 'taken' && socket.close()));
    socket.on('close', () => {
      this.sockets.delete(socket);
      session?.close();
    });
  }

  /**
   * Advances the edge's flow clock once per batch: the socket hands over a recvmmsg batch as
   * consecutive messages in one turn, so one Date.now() serves them all.
   */
  private clock(): void {
    if (this.clocked) return;
    this.clocked = true;
    this.edge.clock();
    soon(this.unclock);
  }
  private readonly unclock = () => {
    this.clocked = false;
  };

  close(): void {
    this.server.close();
    for (const socket of [...this.sockets]) socket.close();
  }
}
