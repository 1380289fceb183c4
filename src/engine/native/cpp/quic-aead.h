// QUIC packet protection for AES-128/256-GCM on VAES + VPCLMULQDQ (aes-gcm.h) instead of GnuTLS,
// for the Handshake and 1-RTT keys of a connection. GnuTLS keeps the TLS 1.3 handshake, the key
// derivation (HKDF), header protection, the Initial, 0-RTT and Retry keys, ChaCha20-Poly1305, and
// everything on a CPU without VAES. OXY_QUIC_AEAD=gnutls turns it off, =vaes-avx2 picks the AVX2
// variant where AVX-512 would run (for tests; both read per connection).
#pragma once
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>

#include <string>

namespace oxy::quic {

// After ngtcp2_crypto_gnutls_configure_*_session: its secret function is replaced by ours
// (which installs the Handshake and 1-RTT keys), unless OXY_QUIC_AEAD=gnutls or the CPU lacks
// VAES. The callbacks FillAeadCallbacks sets work with either kind of session.
void ConfigureAead(gnutls_session_t session);
// encrypt, decrypt, update_key, delete_crypto_aead_ctx: ours for our keys, ngtcp2_crypto_*'s otherwise.
void FillAeadCallbacks(ngtcp2_callbacks* cb);
// The 1-RTT AEAD and who runs it, e.g. "AES-128-GCM/vaes-avx512" or "AES-256-GCM/gnutls"; "" before
// the handshake's keys.
std::string AeadName(ngtcp2_conn* conn);

}  // namespace oxy::quic
