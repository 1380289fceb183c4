/**
 * The edge's IP layer.
 *
 *   const edge = await IpEdge.create({            // root: makes an unnamed netns + TUN + listener
 *     decideFlow: (flow, packet) => ({ verdict: 'upgrade', route: lookup(flow.vnet, flow.dst) }),
 *     onTcpStream: (socket, flow) => proxy(socket, flow.decision.route),
 *     onUdpFlow: (udp) => { udp.onDatagram = (payload) => udp.send(answer(payload)); },
 *     onIpPacket: (flow, packet) => offRamp(flow, packet),   // 'forward' flows
 *     onFlowStart, onFlowEnd,                                  // flow events, from one place
 *     limits: { maxFlows, maxFlowsPerTenant }, timeouts: { tcpIdleMs, udpIdleMs, … },
 *     upgrade: { maxSlots, mtu, txQueueLength },
 *   });
 *   new SeqpacketOnRamp(edge, '/run/oxy/ip.sock');           // connected IP tunnels
 *   await GueOnRamp.listen(edge, { port: 6080 });             // unconnected IP tunnels (GUE)
 *   edge.openSession(context, send)                           // any other on-ramp
 *   edge.close();
 *
 * With no callbacks, TCP and UDP are echoed and ICMP echo answered (tests, demos).
 * Downgrade (TCP stream → IP packets) is {@link TcpDowngrader} in ../../netns/, which can
 * share the edge's namespace (`{ ns: edge.ns }`).
 */
export { IpEdge, IpSession, UdpFlow, defaultDecision, type IpEdgeOptions, type IpEdgeStats } from './edge.js';
export { bridgeUdp } from './udp-bridge.js';
export { SeqpacketOnRamp, type SeqpacketOnRampOptions } from './seqpacket-onramp.js';
export { parseContext, MAX_CONTEXT_BYTES } from './context.js';
export {
  GueOnRamp,
  GueClient,
  deriveGueKeys,
  encodeGueHeader,
  GUE_CONTEXT_MAGIC,
  GUE_CONTEXT_VERSION,
  GUE_MAX_SKEW_S,
  type GueCredential,
  type GueDropReason,
  type GueKeys,
  type GueOnRampOptions,
  type GueStats,
} from './gue.js';
