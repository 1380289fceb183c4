// The QUIC packet protection's AES-GCM on VAES (cpp/aes-gcm.cc, BoringSSL's assembly and our glue):
// the GCM specification's known answers, and every AAD length a QUIC header can have (0–80 bytes:
// the glue pads a partial AAD block itself) against node:crypto's OpenSSL, for both variants.
import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { native } from '../../../src/engine/native/binding.js';

const gcm = native().aesGcm;
const hex = (s: string) => Buffer.from(s, 'hex');
const variants = gcm.impl === 'avx512' ? [false, true] : [true];

// McGrew and Viega, "The Galois/Counter Mode of Operation (GCM)", test cases 1, 2, 3, 4 and 16.
const P4 = 'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39';
const vectors = [
  { name: '1 (AES-128, empty)', key: '00'.repeat(16), iv: '00'.repeat(12), p: '', a: '', c: '', t: '58e2fccefa7e3061367f1d57a4e7455a' },
  {
    name: '2 (AES-128, one block)',
    key: '00'.repeat(16),
    iv: '00'.repeat(12),
    p: '00'.repeat(16),
    a: '',
    c: '0388dace60b6a392f328c2b971b2fe78',
    t: 'ab6e47d42cec13bdf53a67b21257bddf',
  },
  {
    name: '3 (AES-128, 64 bytes)',
    key: 'feffe9928665731c6d6a8f9467308308',
    iv: 'cafebabefacedbaddecaf888',
    p: `${P4}1aafd255`,
    a: '',
    c: '42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985',
    t: '4d5c2af327cd64a62cf35abd2ba6fab4',
  },
  {
    name: '4 (AES-128, 60 bytes, a 20-byte AAD)',
    key: 'feffe9928665731c6d6a8f9467308308',
    iv: 'cafebabefacedbaddecaf888',
    p: P4,
    a: 'feedfacedeadbeeffeedfacedeadbeefabaddad2',
    c: '42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091',
    t: '5bc94fbc3221a5db94fae95ae7121a47',
  },
  {
    name: '16 (AES-256, 60 bytes, a 20-byte AAD)',
    key: 'feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308',
    iv: 'cafebabefacedbaddecaf888',
    p: P4,
    a: 'feedfacedeadbeeffeedfacedeadbeefabaddad2',
    c: '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662',
    t: '76fc6ece0f4e1768cddf8853bb2d551b',
  },
];

function openssl(key: Buffer, iv: Buffer, aad: Buffer, plaintext: Buffer): Buffer {
  const cipher = createCipheriv(key.length === 16 ? 'aes-128-gcm' : 'aes-256-gcm', key, iv);
  cipher.setAAD(aad);
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

describe.skipIf(gcm.impl === null)('AES-GCM on VAES (QUIC packet protection)', () => {
  for (const avx2 of variants) {
    const variant = avx2 ? 'the AVX2 variant' : 'the AVX-512 variant';

    it.each(vectors)(`${variant}: GCM test case $name`, ({ key, iv, p, a, c, t }) => {
      const sealed = gcm.seal(hex(key), hex(iv), hex(a), hex(p), avx2)!;
      expect(sealed.toString('hex')).toBe(c + t);
      expect(gcm.open(hex(key), hex(iv), hex(a), sealed, avx2)?.toString('hex')).toBe(p);
    });

    it(`${variant}: every AAD length from 0 to 80 bytes, as node:crypto seals it; a changed byte is refused`, () => {
      for (let aadLength = 0; aadLength <= 80; aadLength++) {
        for (const length of [0, 1, 15, 16, 17, 100, 1162, 1420]) {
          const key = randomBytes(aadLength % 2 ? 32 : 16);
          const iv = randomBytes(12);
          const aad = randomBytes(aadLength);
          const plaintext = randomBytes(length);
          const sealed = gcm.seal(key, iv, aad, plaintext, avx2)!;
          expect(sealed.equals(openssl(key, iv, aad, plaintext))).toBe(true);
          expect(gcm.open(key, iv, aad, sealed, avx2)?.equals(plaintext)).toBe(true);
          if (aadLength > 0) {
            const tampered = Buffer.from(aad);
            tampered[aadLength - 1]! ^= 1;
            expect(gcm.open(key, iv, tampered, sealed, avx2)).toBeNull();
          }
          const flipped = Buffer.from(sealed);
          flipped[flipped.length - 1]! ^= 0x80;
          expect(gcm.open(key, iv, aad, flipped, avx2)).toBeNull();
        }
      }
    });
  }
});
