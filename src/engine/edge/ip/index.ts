/**
 * The edge's IP layer: {@link IpEdge} (flows, upgrade, off-ramp) and its on-ramps
 * ({@link SeqpacketOnRamp}: connected IP tunnels; {@link GueOnRamp}: unconnected ones).
 */
export { IpEdge, IpSession, UdpFlow, defaultDecision, type IpEdgeOptions, type IpEdgeStats } from './edge.js';
export { SeqpacketOnRamp, type SeqpacketOnRampOptions } from './seqpacket-onramp.js';
export { parseContext, MAX_CONTEXT_BYTES } from './context.js';
export { GueOnRamp, encodeGueHeader, decodeGueContext, GUE_CONTEXT_MAGIC, GUE_CONTEXT_VERSION, type GueOnRampOptions, type GueStats } from './gue.js';
