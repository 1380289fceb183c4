// The addon's QUIC packet protection (cpp/quic-aead.cc): AES-GCM on VAES by default where the CPU
// has it (AVX-512 or, with OXY_QUIC_AEAD=vaes-avx2, the AVX2 variant), GnuTLS with
// OXY_QUIC_AEAD=gnutls; each must carry every byte intact, both ways, between
// ngtcp2 ends and against quiche (BoringSSL), for each TLS 1.3 cipher suite, across key updates.
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import type { NativeQuicInfo } from '../../../src/engine/native/binding.js';
import { dialQuic, listenQuic, type QuicClientConnection, type QuicListener, type QuicServerConnection } from '../../../src/engine/transport/quic/index.js';
import { savedEnv, setEnv } from '../../helpers/env.js';
import { bulkBothWays, edgeIdentity } from './support.js';

type Lib = 'quiche' | 'ngtcp2';
const KEYS = ['OXY_QUIC_IMPL', 'OXY_QUIC_AEAD', 'OXY_QUIC_CIPHER', 'OXY_QUIC_KEY_UPDATE'] as const;
// What cpp/aes-gcm.cc asks of the CPU (its avx2 variant's needs; /proc/cpuinfo's names).
const flags = new Set((readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m)?.[1] ?? '').trim().split(/\s+/));
const vaes = process.arch === 'x64' && ['vaes', 'vpclmulqdq', 'avx2', 'aes'].every((f) => flags.has(f));

describe('ngtcp2 packet protection', () => {
  const saved = savedEnv(KEYS);
  const open: Array<{ listener: QuicListener; client: QuicClientConnection }> = [];
  afterEach(async () => {
    for (const { listener, client } of open.splice(0)) {
      client.close();
      await listener.close();
    }
    setEnv(saved);
  });

  async function pair(edge: Lib, connector: Lib): Promise<{ client: QuicClientConnection; server: QuicServerConnection }> {
    const id = await edgeIdentity();
    let resolveServer!: (c: QuicServerConnection) => void;
    const server = new Promise<QuicServerConnection>((r) => (resolveServer = r));
    const listener = await listenQuic({ cert: id.certChain, key: id.key, host: '127.0.0.1', impl: edge }, resolveServer);
    process.env.OXY_QUIC_IMPL = connector;
    const client = await dialQuic({ host: '127.0.0.1', port: listener.address.port, ca: id.caCert });
    open.push({ listener, client });
    return { client, server: await server };
  }

  /** The ngtcp2 end's AEAD (quicStats() of a quiche connection has none). */
  const aead = (c: QuicClientConnection | QuicServerConnection): string | undefined => (c.quicStats() as Partial<NativeQuicInfo>).aead;

  const ends = [
    ['ngtcp2', 'ngtcp2'],
    ['ngtcp2', 'quiche'],
    ['quiche', 'ngtcp2'],
  ] as const;

  for (const cipher of ['AES-128-GCM', 'AES-256-GCM', 'CHACHA20-POLY1305']) {
    for (const mode of ['default', 'vaes-avx2', 'gnutls'] as const) {
      if (mode === 'vaes-avx2' && cipher === 'CHACHA20-POLY1305') continue;
      it(`${cipher}, ${mode === 'default' ? 'the default AEAD' : `OXY_QUIC_AEAD=${mode}`}: 8 MiB each way intact, ngtcp2 and quiche ends`, async () => {
        if (mode !== 'default') process.env.OXY_QUIC_AEAD = mode;
        for (const [edge, connector] of ends) {
          // The ngtcp2 end offers or accepts this suite only (quiche offers all three).
          process.env.OXY_QUIC_CIPHER = cipher;
          const { client, server } = await pair(edge, connector);
          const fast = mode !== 'gnutls' && vaes && cipher !== 'CHACHA20-POLY1305';
          const who = !fast ? 'gnutls' : mode === 'vaes-avx2' ? 'vaes-avx2' : 'vaes-';
          for (const c of [client, server]) {
            const name = aead(c);
            if (name === undefined) continue; // the quiche end
            expect(name).toMatch(new RegExp(`^${cipher}/${who}`));
          }
          await bulkBothWays(client, server, 8);
        }
      }, 90_000);
    }
  }

  it('key updates (OXY_QUIC_KEY_UPDATE=20) between ngtcp2 ends and with quiche: every byte intact across them', async () => {
    process.env.OXY_QUIC_KEY_UPDATE = '20';
    for (const [edge, connector] of ends) {
      const { client, server } = await pair(edge, connector);
      // ngtcp2 begins one only after the last is confirmed and 3 PTOs have passed, so one end may
      // begin them all (the other's keys follow each: its update_key derives the next ones), and how
      // many fit in a transfer depends on the machine's speed: transfers go on until two happened.
      const updates = () => [client, server].reduce((n, c) => n + ((c.quicStats() as Partial<NativeQuicInfo>).counters?.keyUpdates ?? 0), 0);
      for (let round = 0; round < 20 && updates() < 2; round++) await bulkBothWays(client, server, 4);
      expect(updates(), `key updates between ${edge} and ${connector}`).toBeGreaterThanOrEqual(2);
    }
  }, 90_000);
});
