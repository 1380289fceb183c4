// AES-128/256-GCM on VAES + VPCLMULQDQ: BoringSSL's assembly (vendor/boringssl/, from the Linux kernel's
// aes-gcm-avx10), 2-4 blocks per instruction where GnuTLS 3.7 and OpenSSL 3.0 do one. Only the
// one-shot seal/open that QUIC packet protection needs: a 12-byte nonce, a 16-byte tag.
#pragma once
#include <cstddef>
#include <cstdint>

namespace oxy::gcm {

struct Key;

// Which assembly this CPU runs ("avx512", "avx2"), or nullptr when it lacks VAES/VPCLMULQDQ (the
// caller keeps its other AEAD then).
const char* Impl();
// A key of 16 or 32 bytes; nullptr for another size or when Impl() is nullptr. avx2: the AVX2
// variant even where AVX-512 runs (for tests of it).
Key* NewKey(const uint8_t* key, size_t keylen, bool avx2 = false);
void FreeKey(Key* key);
// out gets len bytes of ciphertext and the tag (in == out allowed).
void Seal(const Key* key, uint8_t* out, const uint8_t* in, size_t len, const uint8_t nonce[12],
          const uint8_t* aad, size_t aadlen);
// in holds len bytes of ciphertext and the tag (len >= 16); out gets len - 16 bytes (in == out
// allowed). False when the tag does not match.
bool Open(const Key* key, uint8_t* out, const uint8_t* in, size_t len, const uint8_t nonce[12],
          const uint8_t* aad, size_t aadlen);

}  // namespace oxy::gcm
