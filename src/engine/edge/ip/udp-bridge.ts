/**
 * Joins an upgraded UDP flow to a UDP association that is still being made (a tunnel
 * stream, a socket, an app's override): datagrams that arrive meanwhile wait (64 at most,
 * the rest are dropped as a full link would), then both directions flow; the flow's end
 * closes the association and the association's end (when it can tell) ends the flow.
 * The maker may answer `'blocked'` (the flow is closed) or `'engine'` (`fallback` wires the
 * flow its own way; the waiting datagrams are replayed into it).
 */
import type { UdpAssociation } from '../../hooks/types.js';
import type { UdpFlow } from './edge.js';

const MAX_PENDING = 64;

type Association = UdpAssociation & { onClose?(fn: () => void): void };

export function bridgeUdp<R>(udp: UdpFlow<R>, making: Promise<Association | 'blocked' | 'engine'>, fallback: () => void, onError: (err: Error) => void): void {
  const pending: Buffer[] = [];
  udp.onDatagram = (payload) => void (pending.length < MAX_PENDING && pending.push(Buffer.from(payload)));
  let ended = false;
  udp.onEnd = () => void (ended = true);
  making.then(
    (assoc) => {
      if (assoc === 'blocked') return udp.close();
      if (assoc === 'engine') {
        udp.onEnd = undefined;
        if (ended) return;
        fallback();
        for (const p of pending.splice(0)) udp.onDatagram?.(p, udp);
        return;
      }
      if (ended) return assoc.close();
      assoc.onMessage((payload) => udp.send(payload));
      udp.onDatagram = (payload) => assoc.send(Buffer.from(payload));
      udp.onEnd = () => assoc.close();
      assoc.onClose?.(() => udp.close());
      for (const p of pending.splice(0)) assoc.send(p);
    },
    (err: Error) => {
      onError(err);
      udp.close();
    },
  );
}
