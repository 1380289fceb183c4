import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
// @ts-expect-error plain JS module without types
import { OUT, ORDER, TYPES, parseDoc, parseOrder, renderHooksDoc } from '../../../scripts/gen-hooks-doc.js';
import { HOOK_ORDER } from '../../../src/engine/hooks/order.js';
import { HOOK_FAMILIES } from '../../../src/engine/hooks/load.js';

describe('docs/hooks.md', () => {
  const generated: string = renderHooksDoc(readFileSync(TYPES, 'utf8'), readFileSync(ORDER, 'utf8'));

  it('is not stale (regenerate with: node scripts/gen-hooks-doc.js)', () => {
    expect(readFileSync(OUT, 'utf8')).toBe(generated);
  });

  it('documents every hook of every family with when it fires, its default and its returns', () => {
    for (const [family, names] of Object.entries(HOOK_FAMILIES)) {
      for (const name of names) {
        const at = generated.indexOf(`#### \`${family}.${name}\``);
        expect(at, `${family}.${name}`).toBeGreaterThan(0);
        const section = generated.slice(at, generated.indexOf('####', at + 4));
        expect(section).toMatch(/\| Fires \| \S/);
        expect(section).toMatch(/\| Default \| \S/);
        expect(section).toMatch(/\| Returns \| \S/);
      }
    }
  });

  it('reads the order the engine checks (order.ts), not a copy', () => {
    expect(parseOrder(readFileSync(ORDER, 'utf8'))).toEqual(HOOK_ORDER);
  });

  it('parses TSDoc tags over several lines', () => {
    expect(parseDoc('/**\n * Sum.\n * @fires when\n *   it fires\n * @default x\n */')).toEqual({
      summary: 'Sum.',
      tags: { fires: 'when it fires', default: 'x' },
    });
  });
});
