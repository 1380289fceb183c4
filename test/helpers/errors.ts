import { expect } from 'vitest';
import { type ErrorCode, isOxyError } from '../../src/core/errors.js';

/** `fn` throws an OxyError with `code` (the message of any other error is shown). */
export function expectCode(fn: () => unknown, code: ErrorCode): void {
  try {
    fn();
  } catch (err) {
    expect(isOxyError(err, code), `expected ${code}, got ${(err as Error).message}`).toBe(true);
    return;
  }
  throw new Error(`expected ${code}, nothing thrown`);
}
