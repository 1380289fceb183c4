import { describe, expect, it } from 'vitest';
import { StatelessResets } from '../../../src/engine/transport/quic/stateless-reset.js';

describe('QUIC stateless reset tokens and packets', () => {
  const cid = Buffer.from('0123456789abcdef0123', 'hex');

  it('a restarted edge with the same key computes the same token; another key does not', () => {
    expect(new StatelessResets('key A').token(cid)).toEqual(new StatelessResets('key A').token(cid));
    expect(new StatelessResets('key B').token(cid)).not.toEqual(new StatelessResets('key A').token(cid));
    expect(new StatelessResets('key A').token(Buffer.from('ff', 'hex'))).not.toEqual(new StatelessResets('key A').token(cid));
    expect(new StatelessResets('key A').tokenValue(cid).toString(16).padStart(32, '0')).toBe(new StatelessResets('key A').token(cid).toString('hex'));
  });

  it('looks like a short-header packet ending in the token, shorter than its trigger', () => {
    const resets = new StatelessResets('key');
    const big = resets.packet(cid, 1200)!;
    expect(big.length).toBe(43);
    expect(big[0]! & 0xc0).toBe(0x40);
    expect(big.subarray(-16)).toEqual(resets.token(cid));
    expect(resets.packet(cid, 30)!.length).toBe(29);
    // Too short to be recognised: never answered (two endpoints cannot loop).
    expect(resets.packet(cid, 21)).toBeUndefined();
  });

  it('is rate limited', () => {
    const resets = new StatelessResets('key', 3);
    const sent = Array.from({ length: 5 }, () => resets.packet(cid, 100, 1000)).filter(Boolean);
    expect(sent).toHaveLength(3);
    expect(resets.packet(cid, 100, 2001)).toBeDefined();
  });
});
