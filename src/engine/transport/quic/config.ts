/**
 * quiche configuration for tunnels: ALPN, windows, congestion control, datagrams, idle
 * timeout. Only `@matrixai/quic`'s exported quiche binding is used (never its
 * QUICClient/QUICServer classes); it is imported from the package's `native` entry, which
 * loads in ~10 ms instead of ~85 ms for the package root.
 */
import { BlockList, isIP } from 'node:net';
import { quiche, type Config as QuicheConfig } from '@matrixai/quic/native/index.js';
import { OxyError } from '../../../core/errors.js';
import type { NativeQuicConnSettings } from '../../native/index.js';

export { quiche };
export type { QuicheConfig };
export type {
  Connection as QuicheConnection,
  Host as QuicheHost,
  RecvInfo as QuicheRecvInfo,
  ConnectionError as QuicheConnectionError,
} from '@matrixai/quic/native/index.js';

/** ALPN of the oxy tunnel over QUIC; a peer speaking anything else is refused in the handshake. */
export const QUIC_ALPN = 'oxy-tunnel-quic/1';
/** Our connection IDs are always this long, so short-header packets route by a fixed slice. */
export const CID_LENGTH = 20;

/** Tuning knobs; every one has a default sized for throughput. */
export interface QuicTuningOptions {
  /** initial_max_data: connection receive window. Default 32 MiB. */
  initialMaxData?: number;
  /** initial_max_stream_data_bidi_{local,remote}: per-stream receive window. Default 8 MiB. */
  initialMaxStreamData?: number;
  /** Ceilings for quiche's window auto-tuning. Defaults 24 MiB (stream) / 64 MiB (connection). */
  maxStreamWindow?: number;
  maxConnectionWindow?: number;
  /** initial_max_streams_bidi: streams the peer may have open toward us at once. Default 1000. */
  maxConcurrentStreams?: number;
  /**
   * Largest UDP payload sent (and, unless maxRecvUdpPayloadSize says otherwise, accepted).
   * Default 1350, which fits any path without PMTU discovery; a connector dialing a loopback
   * address and the edge's listener use LOOPBACK_UDP_PAYLOAD (see there); the addon's ngtcp2
   * connector with path MTU discovery PMTUD_UDP_PAYLOAD (its packets start at 1,200 and grow to
   * what its probes find).
   */
  maxUdpPayloadSize?: number;
  /** Largest UDP payload accepted, advertised to the peer (max_udp_payload_size). Default maxUdpPayloadSize. */
  maxRecvUdpPayloadSize?: number;
  /** 'cubic' (default), 'reno' or 'bbr' (the names this quiche build knows). */
  congestionControl?: string;
  /** HyStart++ (leave slow start early on RTT growth). Default true. */
  hystart?: boolean;
  /** DATAGRAM receive/send queue lengths in quiche. Default 4096 each. */
  datagramQueueLength?: number;
}

export interface QuicTimingOptions {
  /**
   * max_idle_timeout: the connection dies after this long without a packet. Default 15 s
   * (a dead edge is noticed that fast: the listener sends no stateless resets).
   */
  idleTimeoutMs?: number;
  /** PING interval that keeps an idle connection (and NAT bindings) alive. Default idle/3 (5 s); 0 disables. */
  keepAliveMs?: number;
}

export const DEFAULT_IDLE_TIMEOUT_MS = 15_000;

/**
 * UDP payload for QUIC over loopback (the quick tunnel, an edge and a connector on one host):
 * the largest packet quiche sends once the handshake is done (it keeps packet lengths within a
 * 2-byte varint; handshake packets stay at 1,200). The binding costs ~5 µs per packet whatever
 * its size, so bulk speed grows with the payload: 2–3× at 16 KB against 1,350 bytes (issue 16,
 * docs/decisions.md). A peer only ever sends up to what the other advertised, so the edge
 * accepts and offers this size to every connector, and a connector asks for it only when it
 * dials a loopback address; elsewhere both stay at 1,350.
 */
export const LOOPBACK_UDP_PAYLOAD = 16_383;

/**
 * The largest UDP payload an ngtcp2 connector offers and probes for with path MTU discovery when
 * its size is left at the default: an Ethernet MTU's 1,500 less an IPv6 and a UDP header. ngtcp2
 * 0.12's probes stop at 1,444 (PPPoE's 1,492 less 48), ~7 % fewer packets than 1,350 for the same
 * bytes; until a probe is acknowledged packets are 1,200 bytes, which every QUIC path carries.
 */
export const PMTUD_UDP_PAYLOAD = 1452;

/**
 * 127.0.0.0/8, ::1 and their IPv4-mapped forms: the path whose MTU is 64 KiB. The addon's
 * ngtcp2 connections decide it per path (cpp/quic-core.cc IsLoopback); this picks what a connector
 * offers for either stack. test/unit/native/address-kind.test.ts holds the two to the same answers.
 */
export const isLoopbackAddress = (address: string): boolean => {
  const family = isIP(address);
  return family !== 0 && LOOPBACK.check(address, family === 4 ? 'ipv4' : 'ipv6');
};
/** Node's BlockList matches an IPv4-mapped IPv6 address against the IPv4 rules, as IsLoopback does. */
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/**
 * The unit (bytes) in which an ngtcp2 connector counts its congestion window toward an edge at a
 * near address (RFC 1918, the benchmarking range 198.18.0.0/15, IPv4 and IPv6 link-local, IPv6
 * unique local fc00::/7, and their IPv4-mapped forms; not loopback, which has its own profile, nor
 * the shared 100.64.0.0/10, which overlay VPNs spread across the internet): the addon decides
 * near per connection from its path (cpp/quic-core.cc IsNearAddress, `nearCwndUnit`). ngtcp2
 * 0.12's CUBIC stops growing the window at 2.89 × max(2 units, max delivery rate × min RTT): on a
 * sub-millisecond path the min RTT comes from an idle moment (~50 µs) and the rate from slow
 * start, so the window a connection keeps for its whole life is
 * what its first bulk transfer happened to reach — 55 KB to 380 KB between runs of the same build
 * — and a small one costs every process on the path up to twice the CPU per MB in wake-ups and
 * system calls (docs/decisions.md "The vnet path's -R: a window frozen by slow start's luck").
 * At 65,000 the cap's floor is ~376 KB and the window starts at 130 KB; packets keep their size
 * (the unit only sizes the window). Also the window's floor after a loss (2 units), hence only
 * toward near addresses: a far edge's min RTT sets a cap far above the floor anyway.
 */
export const NEAR_CWND_UNIT = 65_000;

/**
 * The unit in which an ngtcp2 edge counts its window toward a connector at a near address: the
 * sender of device → host on the vnet path. The edge's window froze the same way (session 18:
 * 300 KB to 1.2 MB between runs, by slow start's rate samples and an idle moment's min RTT), and
 * on a quiet machine that draw set the run's rate: at ~300–450 KB the edge sent a window, then
 * waited while the connector decrypted the whole burst before it acknowledged (its ACK comes
 * ~150–250 µs after the burst's first packet), so the two took turns; at ~1 MB they overlapped
 * (docs/decisions.md "device → host bimodal: the edge's frozen window", session 23). At 200,000
 * the cap's floor is 2.89 × 2 units ≈ 1.16 MB and the window starts at 400 KB; packets keep their
 * size. Larger than a UDP payload, as the loopback profile's 1 MiB unit is: only the window's
 * arithmetic uses it. Also the floor after a loss (2 units), hence only toward near addresses.
 */
export const EDGE_NEAR_CWND_UNIT = 200_000;

export interface TlsMaterial {
  /** Server: certificate chain PEM and key PEM. */
  cert?: string;
  key?: string;
  /** Client: CA certificates (PEM) to verify the server against. */
  ca?: string | string[];
}

const encoder = new TextEncoder();

/**
 * ngtcp2 on a loopback path (decided per connection from the peer's address, so it holds for a
 * quiche peer too, which caps the packets at what it advertises): 64 KB packets; an ACK per 8
 * packets instead of 2; opt-in, a congestion window counted in 1 MiB units — ngtcp2 0.12's CUBIC
 * caps it at 2.89 × max(2 units, delivery rate × min RTT), ~6 packets at loopback RTTs.
 * `OXY_NGTCP2_LOOPBACK` picks the parts (`payload,window,ack`, `all`, or `none`); unset,
 * `payload,ack`: a quarter of the packets for the same bytes cost each side 0.1–0.7 ms/MB less
 * both ways, small requests alike, where the larger window stalled uploads at 1 GiB
 * (docs/decisions.md "QUIC bulk on ngtcp2 (session 8)", "QUIC bulk (session 9)"). Only where the
 * payload is LOOPBACK_UDP_PAYLOAD (not a caller's own tuning).
 */
export const NGTCP2_LOOPBACK = { udpPayloadSize: 65_000, cwndUnit: 1024 * 1024, ackThreshold: 8 };

function ngtcp2Loopback(): Pick<QuicSettings, 'loopbackUdpPayloadSize' | 'loopbackCwndUnit' | 'loopbackAckThreshold'> {
  const value = process.env.OXY_NGTCP2_LOOPBACK || 'payload,ack';
  const parts = value === 'all' ? ['payload', 'window', 'ack'] : value.split(',');
  return {
    loopbackUdpPayloadSize: parts.includes('payload') ? NGTCP2_LOOPBACK.udpPayloadSize : 0,
    loopbackCwndUnit: parts.includes('window') ? NGTCP2_LOOPBACK.cwndUnit : 0,
    loopbackAckThreshold: parts.includes('ack') ? NGTCP2_LOOPBACK.ackThreshold : 0,
  };
}

/** The congestion controllers ngtcp2 0.12 has (quiche checks its own names). */
const NGTCP2_CONGESTION_CONTROLS = ['cubic', 'reno', 'bbr', 'bbr2'];

/**
 * Tuning and timing with every default filled in: what quiche's config (buildQuicheConfig) and
 * the addon's ngtcp2 connections (client and server: NativeQuicConnSettings) are both built from.
 */
export interface QuicSettings extends NativeQuicConnSettings {
  hystart: boolean;
  datagramQueueLength: number;
}

export function quicSettings(tuning: QuicTuningOptions, timing: QuicTimingOptions, library: 'quiche' | 'ngtcp2' = 'quiche'): QuicSettings {
  const payload = tuning.maxUdpPayloadSize ?? quiche.MAX_DATAGRAM_SIZE;
  const streamWindow = tuning.initialMaxStreamData ?? 8 * 1024 * 1024;
  const idleTimeoutMs = timing.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const cc = tuning.congestionControl ?? (library === 'ngtcp2' ? process.env.OXY_NGTCP2_CC : undefined) ?? 'cubic';
  if (library === 'ngtcp2' && !NGTCP2_CONGESTION_CONTROLS.includes(cc)) {
    throw new OxyError('OXY_ERR_INVALID_ARGUMENT', `Unknown QUIC congestion control "${cc}" (cubic, reno, bbr or bbr2)`);
  }
  return {
    maxUdpPayloadSize: payload,
    maxRecvUdpPayloadSize: tuning.maxRecvUdpPayloadSize ?? payload,
    idleTimeoutMs,
    keepAliveMs: timing.keepAliveMs ?? Math.floor(idleTimeoutMs / 3),
    initialMaxData: tuning.initialMaxData ?? 32 * 1024 * 1024,
    initialMaxStreamData: streamWindow,
    maxStreamWindow: Math.max(streamWindow, tuning.maxStreamWindow ?? 24 * 1024 * 1024),
    maxConnectionWindow: Math.max(tuning.initialMaxData ?? 0, tuning.maxConnectionWindow ?? 64 * 1024 * 1024),
    maxConcurrentStreams: tuning.maxConcurrentStreams ?? 1000,
    congestionControl: cc,
    hystart: tuning.hystart ?? true,
    datagramQueueLength: tuning.datagramQueueLength ?? 4096,
    // Only where the loopback packet size is ours to pick: a caller's own payload size holds.
    ...(library === 'ngtcp2' && payload === LOOPBACK_UDP_PAYLOAD ? ngtcp2Loopback() : {}),
  };
}

export function buildQuicheConfig(role: 'client' | 'server', tls: TlsMaterial, tuning: QuicTuningOptions, timing: QuicTimingOptions): QuicheConfig {
  const config =
    role === 'server'
      ? quiche.Config.withBoringSslCtx(false, false, null, [encoder.encode(tls.key!)], [encoder.encode(tls.cert!)], null)
      : quiche.Config.withBoringSslCtx(true, false, encoder.encode(([] as string[]).concat(tls.ca ?? []).join('\n')), null, null, null);
  const s = quicSettings(tuning, timing);
  config.setApplicationProtos([QUIC_ALPN]);
  config.setMaxIdleTimeout(s.idleTimeoutMs);
  config.setMaxRecvUdpPayloadSize(s.maxRecvUdpPayloadSize);
  config.setMaxSendUdpPayloadSize(s.maxUdpPayloadSize);
  config.setInitialMaxData(s.initialMaxData);
  config.setInitialMaxStreamDataBidiLocal(s.initialMaxStreamData);
  config.setInitialMaxStreamDataBidiRemote(s.initialMaxStreamData);
  config.setInitialMaxStreamDataUni(0);
  config.setInitialMaxStreamsBidi(s.maxConcurrentStreams);
  config.setInitialMaxStreamsUni(0);
  config.setMaxStreamWindow(s.maxStreamWindow);
  config.setMaxConnectionWindow(s.maxConnectionWindow);
  try {
    config.setCcAlgorithmName(s.congestionControl);
  } catch (cause) {
    throw new OxyError('OXY_ERR_INVALID_ARGUMENT', `Unknown QUIC congestion control "${s.congestionControl}" (cubic, reno or bbr)`, { cause });
  }
  config.enableHystart(s.hystart);
  config.enableDgram(true, s.datagramQueueLength, s.datagramQueueLength);
  config.setDisableActiveMigration(true);
  return config;
}
