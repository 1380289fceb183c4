import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { NatPool } from '../../../src/engine/flow/index.js';
import { formatAddress } from '../../../src/engine/packet/index.js';

describe('NatPool', () => {
  it('maps slots to address:port and back', () => {
    const pool = new NatPool({ base: '198.19.0.1', addresses: 4, firstPort: 1000, lastPort: 1009 });
    expect(pool.capacity).toBe(40);
    expect(formatAddress(pool.address(0))).toBe('198.19.0.1');
    expect(pool.port(0)).toBe(1000);
    expect(formatAddress(pool.address(13))).toBe('198.19.0.2');
    expect(pool.port(13)).toBe(1003);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 39 }), (slot) => {
        expect(pool.slotOf(pool.address(slot), 0, pool.port(slot))).toBe(slot);
      }),
    );
    expect(pool.slotOf(Buffer.from([198, 19, 0, 5]), 0, 1000)).toBe(-1);
    expect(pool.slotOf(Buffer.from([198, 19, 0, 1]), 0, 999)).toBe(-1);
  });

  it('works for IPv6 pools', () => {
    const pool = new NatPool({ base: '2001:db8:ff:1::1', addresses: 2, maxSlots: 100 });
    const address = pool.address(70_000);
    expect(formatAddress(address)).toBe('2001:db8:ff:1::2');
    expect(pool.slotOf(address, 0, pool.port(70_000))).toBe(-1); // beyond maxSlots
    expect(pool.slotOf(pool.address(99), 0, pool.port(99))).toBe(99);
    const other = Buffer.from(pool.address(5));
    other[3] ^= 1;
    expect(pool.slotOf(other, 0, pool.port(5))).toBe(-1);
  });

  it('exhausts, counts, and reuses freed slots last-freed-last (FIFO), fresh ones first', () => {
    const pool = new NatPool({ base: '198.19.0.1', addresses: 1, maxSlots: 3 });
    expect([pool.allocate(), pool.allocate(), pool.allocate()]).toEqual([0, 1, 2]);
    expect(pool.allocate()).toBe(-1);
    expect(pool.exhausted).toBe(1);
    pool.release(1);
    pool.release(0);
    expect(pool.available).toBe(2);
    expect(pool.allocate()).toBe(1);
    expect(pool.allocate()).toBe(0);
    expect(pool.allocate()).toBe(-1);
  });

  it('never hands out a slot twice while in use', () => {
    fc.assert(
      fc.property(fc.array(fc.boolean(), { maxLength: 300 }), (ops) => {
        const pool = new NatPool({ base: '198.19.0.1', addresses: 1, maxSlots: 16 });
        const held: number[] = [];
        for (const take of ops) {
          if (take) {
            const slot = pool.allocate();
            if (slot >= 0) {
              expect(held).not.toContain(slot);
              held.push(slot);
            } else expect(held.length).toBe(16);
          } else if (held.length) pool.release(held.shift()!);
        }
        expect(pool.inUse).toBe(held.length);
      }),
    );
  });
});
