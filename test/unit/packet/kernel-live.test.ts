// Captures fresh packets from the running kernel (a throwaway network namespace with a TUN,
// 198.18.0.0/15 and 2001:db8::/32 only; see the script) and checks them the way the stored
// fixtures are checked. Skipped where namespaces, TUN or python3 are unavailable.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildIcmpUnreachable, computeTransportChecksum, verifyIpv4HeaderChecksum, verifyTransportChecksum } from '../../../src/engine/packet/index.js';
import { KERNEL_CAPTURE_SCRIPT, parseCapture, parseOk } from './helpers.js';

function canCapture(): boolean {
  try {
    accessSync('/dev/net/tun', constants.R_OK | constants.W_OK);
  } catch {
    return false;
  }
  return spawnSync('python3', ['--version']).status === 0 && spawnSync('unshare', ['-rn', 'true']).status === 0;
}

describe.skipIf(!canCapture())('live kernel capture', () => {
  it('parses and verifies what this kernel builds, and matches its ICMP errors', () => {
    const run = spawnSync('python3', [KERNEL_CAPTURE_SCRIPT], { encoding: 'utf8', timeout: 60_000 });
    expect(run.status, run.stderr).toBe(0);
    const capture = parseCapture(run.stdout);
    expect(capture.packets.length).toBeGreaterThan(30);
    for (const packet of capture.packets) {
      const view = parseOk(Buffer.from(packet.bytes));
      expect(verifyIpv4HeaderChecksum(view) && verifyTransportChecksum(view), packet.name).toBe(true);
      if (!view.isFragment) expect(computeTransportChecksum(view), packet.name).toBe(view.l4Checksum);
    }
    const byName = new Map(capture.packets.map((p) => [p.name, p.bytes]));
    for (const family of ['4', '6']) {
      const kernel = byName.get(`icmp${family}-port-unreachable`)!;
      const options = family === '4' ? { identification: kernel.readUInt16BE(4) } : { flowLabel: kernel.readUInt32BE(0) & 0xfffff };
      const ours = buildIcmpUnreachable(byName.get(`udp${family}-to-closed-port`)!, 'port', options);
      expect(ours?.toString('hex')).toBe(kernel.toString('hex'));
    }
  });
});
