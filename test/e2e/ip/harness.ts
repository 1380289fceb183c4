/**
 * The Oxy way to test the IP edge: plain TCP clients talk to a downgrader (its own
 * unnamed namespace), whose raw IP packets are piped into the edge's SEQPACKET on-ramp;
 * the edge upgrades them and the test sees ordinary TCP streams on the other side.
 */
import { randomBytes } from 'node:crypto';

import { IpEdge, SeqpacketOnRamp, type IpEdgeOptions, type SeqpacketOnRampOptions } from '../../../src/engine/edge/ip/index.js';
import { TcpDowngrader, type DowngradeSession } from '../../../src/engine/netns/index.js';
import { SeqpacketSocket } from '../../../src/engine/native/index.js';
import type { IpContext } from '../../../src/engine/flow/index.js';

export interface Harness {
  edge: IpEdge;
  onRamp: SeqpacketOnRamp;
  downgrader: TcpDowngrader;
  path: string;
  /** A downgrade session whose packets go through a new SEQPACKET connection with `context`. */
  tunnel(context: IpContext): Promise<Tunnel>;
  close(): void;
}

export interface Tunnel {
  socket: SeqpacketSocket;
  session: DowngradeSession;
  /** Raw packets the edge sent back that the test wants to see (besides the downgrader). */
  onPacket?: (packet: Buffer) => void;
  close(): void;
}

export async function createHarness(options: IpEdgeOptions = {}, onRampOptions: SeqpacketOnRampOptions = {}): Promise<Harness> {
  const edge = await IpEdge.create(options);
  let downgrader: TcpDowngrader | undefined;
  let onRamp: SeqpacketOnRamp | undefined;
  try {
    downgrader = await TcpDowngrader.create({ timeouts: { tcpCloseLingerMs: 200 } });
    const path = `\0oxy-ip-test-${process.pid}-${randomBytes(4).toString('hex')}`;
    onRamp = new SeqpacketOnRamp(edge as IpEdge, path, onRampOptions);
    const tunnels = new Set<Tunnel>();
    const dg = downgrader;
    const ramp = onRamp;
    return {
      edge,
      onRamp: ramp,
      downgrader: dg,
      path,
      async tunnel(context) {
        const socket = SeqpacketSocket.connect(path);
        socket.send(Buffer.from(JSON.stringify(context)));
        const tunnel: Tunnel = {
          socket,
          session: dg.session(context, (packet) => {
            try {
              socket.send(packet);
            } catch {
              // The tunnel closed: the packet is lost, as on a real link.
            }
          }),
          close() {
            tunnels.delete(tunnel);
            tunnel.session.close();
            socket.close();
          },
        };
        socket.on('message', (packet) => {
          tunnel.onPacket?.(packet);
          tunnel.session.receive(packet);
        });
        socket.on('error', () => {});
        tunnels.add(tunnel);
        return tunnel;
      },
      close() {
        for (const t of [...tunnels]) t.close();
        ramp.close();
        dg.close();
        edge.close();
      },
    };
  } catch (err) {
    onRamp?.close();
    downgrader?.close();
    edge.close();
    throw err;
  }
}
