import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { computeRegistrationProof, verifyRegistration } from '../../../src/engine/protocol/registration.js';

const secret = randomBytes(32);
const nonce = randomBytes(32);
const ids = { tunnelId: 'c1744f8b-faa1-48a4-9e5c-02ac921467fa', connectorId: 'conn-a', connIndex: 0 };

describe('registration proof', () => {
  it('verifies with the right secret and nonce only', () => {
    const proof = computeRegistrationProof(ids, nonce, secret);
    expect(Buffer.from(proof, 'base64')).toHaveLength(32);
    expect(proof).not.toContain(secret.toString('base64'));
    expect(verifyRegistration({ ...ids, proof }, nonce, secret)).toBe(true);
    expect(verifyRegistration({ ...ids, proof }, nonce, randomBytes(32))).toBe(false);
    expect(verifyRegistration({ ...ids, proof }, randomBytes(32), secret)).toBe(false);
  });

  it('binds the proof to the tunnel, connector and connection index', () => {
    const proof = computeRegistrationProof(ids, nonce, secret);
    expect(verifyRegistration({ ...ids, tunnelId: 'other', proof }, nonce, secret)).toBe(false);
    expect(verifyRegistration({ ...ids, connectorId: 'conn-b', proof }, nonce, secret)).toBe(false);
    expect(verifyRegistration({ ...ids, connIndex: 1, proof }, nonce, secret)).toBe(false);
  });

  it('refuses missing, malformed or empty inputs without throwing', () => {
    expect(verifyRegistration({ ...ids }, nonce, secret)).toBe(false);
    expect(verifyRegistration({ ...ids, proof: 'not base64 !!' }, nonce, secret)).toBe(false);
    expect(verifyRegistration({ ...ids, proof: computeRegistrationProof(ids, nonce, secret) }, nonce, Buffer.alloc(0))).toBe(false);
    expect(verifyRegistration({ ...ids, proof: computeRegistrationProof(ids, nonce, secret) }, nonce.subarray(0, 16), secret)).toBe(false);
  });
});
