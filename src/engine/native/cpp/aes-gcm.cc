// See vaes-gcm.h. The glue follows BoringSSL's gcm.cc.inc for a 12-byte nonce: GHASH of the AAD,
// counter block J0 = nonce || 1 (its AES is the tag's mask), the bulk in whole blocks by the
// assembly from counter 2, a last partial block here, then GHASH of the two bit lengths.
// A QUIC header (the AAD) goes to GHASH in one call, zero-padded to whole blocks by a masked load.
#include "aes-gcm.h"

#if defined(__x86_64__) && defined(__ELF__)
#include <immintrin.h>

#include <cstring>
#include <new>

extern "C" {
// BoringSSL's AES_KEY (its `rounds` holds rounds - 1, as its AES-NI key setup stores it).
struct AesKey {
  alignas(16) uint8_t rd_key[15 * 16];
  unsigned rounds;
};
struct U128 {
  uint64_t hi, lo;
};
void gcm_init_vpclmulqdq_avx512(U128 Htable[16], const uint64_t H[2]);
void gcm_ghash_vpclmulqdq_avx512(uint8_t Xi[16], const U128 Htable[16], const uint8_t* in, size_t len);
void aes_gcm_enc_update_vaes_avx512(const uint8_t* in, uint8_t* out, size_t len, const AesKey* key,
                                    const uint8_t ivec[16], const U128 Htable[16], uint8_t Xi[16]);
void aes_gcm_dec_update_vaes_avx512(const uint8_t* in, uint8_t* out, size_t len, const AesKey* key,
                                    const uint8_t ivec[16], const U128 Htable[16], uint8_t Xi[16]);
void gcm_init_vpclmulqdq_avx2(U128 Htable[16], const uint64_t H[2]);
void gcm_ghash_vpclmulqdq_avx2(uint8_t Xi[16], const U128 Htable[16], const uint8_t* in, size_t len);
void aes_gcm_enc_update_vaes_avx2(const uint8_t* in, uint8_t* out, size_t len, const AesKey* key,
                                  const uint8_t ivec[16], const U128 Htable[16], uint8_t Xi[16]);
void aes_gcm_dec_update_vaes_avx2(const uint8_t* in, uint8_t* out, size_t len, const AesKey* key,
                                  const uint8_t ivec[16], const U128 Htable[16], uint8_t Xi[16]);
}

namespace oxy::gcm {
namespace {

using InitFn = void (*)(U128*, const uint64_t*);
using GhashFn = void (*)(uint8_t*, const U128*, const uint8_t*, size_t);
using UpdateFn = void (*)(const uint8_t*, uint8_t*, size_t, const AesKey*, const uint8_t*, const U128*, uint8_t*);

struct Ops {
  const char* name;
  InitFn init;
  GhashFn ghash;
  UpdateFn enc, dec;
  bool any_len;  // the update functions take a last partial block (avx512), or whole blocks only (avx2)
};

// The same tests as BoringSSL's (CRYPTO_ghash_init, CRYPTO_gcm128_init_aes_key); GCC's
// __builtin_cpu_supports also checks that the kernel saves the ymm/zmm state.
const Ops k512{"avx512", gcm_init_vpclmulqdq_avx512, gcm_ghash_vpclmulqdq_avx512,
               aes_gcm_enc_update_vaes_avx512, aes_gcm_dec_update_vaes_avx512, true};
const Ops k2{"avx2", gcm_init_vpclmulqdq_avx2, gcm_ghash_vpclmulqdq_avx2,
             aes_gcm_enc_update_vaes_avx2, aes_gcm_dec_update_vaes_avx2, false};

const Ops* Pick() {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("vaes") || !__builtin_cpu_supports("vpclmulqdq") ||
      !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("aes"))
    return nullptr;
  if (__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("bmi2"))
    return &k512;
  return &k2;
}

const Ops* ops = Pick();

}  // namespace

struct Key {
  alignas(64) U128 htable[16];
  AesKey aes;
  const Ops* ops;
};

namespace {

__attribute__((target("aes,sse2"))) inline __m128i Expand(__m128i key, __m128i assist) {
  key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
  key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
  key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
  return _mm_xor_si128(key, assist);
}

// FIPS-197's key expansion with AESKEYGENASSIST (Intel's AES-NI white paper, figures 24 and 26).
__attribute__((target("aes,sse2"))) void ExpandKey(AesKey* out, const uint8_t* key, size_t keylen) {
  __m128i* rk = reinterpret_cast<__m128i*>(out->rd_key);
  if (keylen == 16) {
    rk[0] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(key));
#define OXY_R128(i, rcon) rk[i] = Expand(rk[i - 1], _mm_shuffle_epi32(_mm_aeskeygenassist_si128(rk[i - 1], rcon), 0xff))
    OXY_R128(1, 0x01); OXY_R128(2, 0x02); OXY_R128(3, 0x04); OXY_R128(4, 0x08); OXY_R128(5, 0x10);
    OXY_R128(6, 0x20); OXY_R128(7, 0x40); OXY_R128(8, 0x80); OXY_R128(9, 0x1b); OXY_R128(10, 0x36);
#undef OXY_R128
    out->rounds = 9;
    return;
  }
  rk[0] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(key));
  rk[1] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(key + 16));
#define OXY_R256(i, rcon)                                                                              \
  rk[i] = Expand(rk[i - 2], _mm_shuffle_epi32(_mm_aeskeygenassist_si128(rk[i - 1], rcon), 0xff));      \
  if (i < 14) rk[i + 1] = Expand(rk[i - 1], _mm_shuffle_epi32(_mm_aeskeygenassist_si128(rk[i], 0), 0xaa))
  OXY_R256(2, 0x01); OXY_R256(4, 0x02); OXY_R256(6, 0x04); OXY_R256(8, 0x08); OXY_R256(10, 0x10);
  OXY_R256(12, 0x20); OXY_R256(14, 0x40);
#undef OXY_R256
  out->rounds = 13;
}

__attribute__((target("aes,sse2"))) void Block(const AesKey& k, uint8_t out[16], const uint8_t in[16]) {
  const __m128i* rk = reinterpret_cast<const __m128i*>(k.rd_key);
  __m128i b = _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in)), rk[0]);
  unsigned last = k.rounds + 1;
  for (unsigned i = 1; i < last; i++) b = _mm_aesenc_si128(b, rk[i]);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm_aesenclast_si128(b, rk[last]));
}

inline uint64_t Be64(const uint8_t* p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return __builtin_bswap64(v);
}
inline void PutBe64(uint8_t* p, uint64_t v) {
  v = __builtin_bswap64(v);
  memcpy(p, &v, 8);
}

// The first n (< 64) bytes of data into pad, zeros after them: one masked load on AVX-512 (which
// reads nothing past data + n), instead of a zero fill and a call to memcpy.
__attribute__((target("avx512f,avx512bw"))) void PadMasked(uint8_t pad[64], const uint8_t* data, size_t n) {
  __mmask64 mask = n >= 64 ? ~__mmask64(0) : (__mmask64(1) << n) - 1;
  _mm512_store_si512(reinterpret_cast<__m512i*>(pad), _mm512_maskz_loadu_epi8(mask, data));
}

inline void Pad(const Key* k, uint8_t pad[64], const uint8_t* data, size_t n) {
  if (k->ops == &k512) return PadMasked(pad, data, n);
  memset(pad, 0, 64);
  memcpy(pad, data, n);
}

// Xi ← GHASH over data, its last partial block padded with zeros; a QUIC header (the AAD, 64
// bytes at most but for a long header's token) in one call.
inline void Ghash(const Key* k, uint8_t xi[16], const uint8_t* data, size_t len) {
  if (len <= 64 && (len & 15)) {
    alignas(64) uint8_t pad[64];
    Pad(k, pad, data, len);
    k->ops->ghash(xi, k->htable, pad, (len + 15) & ~size_t(15));
    return;
  }
  size_t whole = len & ~size_t(15);
  if (whole) k->ops->ghash(xi, k->htable, data, whole);
  if (len != whole) {
    uint8_t pad[16] = {};
    memcpy(pad, data + whole, len - whole);
    k->ops->ghash(xi, k->htable, pad, 16);
  }
}

// The counter block for the first data block (J0 + 1) and E(K, J0), the tag's mask.
inline void Start(const Key* k, const uint8_t nonce[12], uint8_t ctr[16], uint8_t ek0[16]) {
  memcpy(ctr, nonce, 12);
  ctr[12] = ctr[13] = ctr[14] = 0;
  ctr[15] = 1;
  Block(k->aes, ek0, ctr);
  ctr[15] = 2;
}

// The last partial block: XOR with E(K, counter after `blocks` full ones).
inline void Tail(const Key* k, uint8_t* out, const uint8_t* in, size_t n, const uint8_t ctr[16], size_t blocks) {
  uint8_t c[16], ek[16];
  memcpy(c, ctr, 12);
  uint32_t v;
  memcpy(&v, ctr + 12, 4);
  v = __builtin_bswap32(__builtin_bswap32(v) + uint32_t(blocks));
  memcpy(c + 12, &v, 4);
  Block(k->aes, ek, c);
  for (size_t i = 0; i < n; i++) out[i] = in[i] ^ ek[i];
}

inline void Finish(const Key* k, uint8_t xi[16], size_t aadlen, size_t len, const uint8_t ek0[16]) {
  uint8_t lens[16];
  PutBe64(lens, uint64_t(aadlen) * 8);
  PutBe64(lens + 8, uint64_t(len) * 8);
  k->ops->ghash(xi, k->htable, lens, 16);
  for (int i = 0; i < 16; i++) xi[i] ^= ek0[i];
}

}  // namespace

const char* Impl() { return ops ? ops->name : nullptr; }

Key* NewKey(const uint8_t* key, size_t keylen, bool avx2) {
  if (!ops || (keylen != 16 && keylen != 32)) return nullptr;
  Key* k = new (std::nothrow) Key();
  if (!k) return nullptr;
  k->ops = avx2 ? &k2 : ops;
  ExpandKey(&k->aes, key, keylen);
  uint8_t h[16] = {};
  Block(k->aes, h, h);
  const uint64_t hh[2] = {Be64(h), Be64(h + 8)};
  k->ops->init(k->htable, hh);
  return k;
}

void FreeKey(Key* key) {
  if (!key) return;
  // The round keys and powers of H are the key: wipe them.
  volatile uint8_t* p = reinterpret_cast<volatile uint8_t*>(key);
  for (size_t i = 0; i < sizeof(Key); i++) p[i] = 0;
  delete key;
}

void Seal(const Key* k, uint8_t* out, const uint8_t* in, size_t len, const uint8_t nonce[12], const uint8_t* aad,
          size_t aadlen) {
  alignas(16) uint8_t xi[16] = {};
  uint8_t ctr[16], ek0[16];
  Ghash(k, xi, aad, aadlen);
  Start(k, nonce, ctr, ek0);
  size_t whole = k->ops->any_len ? len : len & ~size_t(15);
  if (whole) k->ops->enc(in, out, whole, &k->aes, ctr, k->htable, xi);
  if (len != whole) {
    Tail(k, out + whole, in + whole, len - whole, ctr, whole / 16);
    Ghash(k, xi, out + whole, len - whole);
  }
  Finish(k, xi, aadlen, len, ek0);
  memcpy(out + len, xi, 16);
}

bool Open(const Key* k, uint8_t* out, const uint8_t* in, size_t len, const uint8_t nonce[12], const uint8_t* aad,
          size_t aadlen) {
  if (len < 16) return false;
  len -= 16;
  uint8_t tag[16];
  memcpy(tag, in + len, 16);  // before an in-place write can reach it
  alignas(16) uint8_t xi[16] = {};
  uint8_t ctr[16], ek0[16];
  Ghash(k, xi, aad, aadlen);
  Start(k, nonce, ctr, ek0);
  size_t whole = k->ops->any_len ? len : len & ~size_t(15);
  if (whole) k->ops->dec(in, out, whole, &k->aes, ctr, k->htable, xi);
  if (len != whole) {
    Ghash(k, xi, in + whole, len - whole);  // the ciphertext, before an in-place XOR
    Tail(k, out + whole, in + whole, len - whole, ctr, whole / 16);
  }
  Finish(k, xi, aadlen, len, ek0);
  uint8_t diff = 0;
  for (int i = 0; i < 16; i++) diff |= uint8_t(xi[i] ^ tag[i]);
  return diff == 0;
}

}  // namespace oxy::gcm

#else  // not x86_64 ELF: no assembly here, callers keep GnuTLS

namespace oxy::gcm {
struct Key {};
const char* Impl() { return nullptr; }
Key* NewKey(const uint8_t*, size_t, bool) { return nullptr; }
void FreeKey(Key*) {}
void Seal(const Key*, uint8_t*, const uint8_t*, size_t, const uint8_t*, const uint8_t*, size_t) {}
bool Open(const Key*, uint8_t*, const uint8_t*, size_t, const uint8_t*, const uint8_t*, size_t) { return false; }
}  // namespace oxy::gcm

#endif
