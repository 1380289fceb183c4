// See quic-aead.h. ngtcp2_crypto_gnutls's secret function installs GnuTLS AEAD contexts through
// ngtcp2_crypto_derive_and_install_{rx,tx}_key, and ngtcp2 hands them back to the encrypt and
// decrypt callbacks with no word of the key, so ours does what those functions do (crypto/shared.c
// and crypto/gnutls/gnutls.c in ngtcp2 0.12; the library exports its HKDF but not its key
// derivation) and installs an aes-gcm.h key instead. The crypto
// context it sets for the connection names the AEAD by a pointer to one of kFast below rather
// than GnuTLS's cipher number: the callbacks tell our keys from GnuTLS's by it (the Initial and
// Retry keys have their own contexts, which keep GnuTLS's numbers). The transport-parameter steps
// of those functions are no-ops for GnuTLS (an extension carries them), so they are left out.
#include "quic-aead.h"

#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>
#include <gnutls/crypto.h>

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_set>

#include "aes-gcm.h"
#include "common.h"
#include "modules.h"

namespace oxy::quic {
namespace {

struct FastAead {
  gnutls_cipher_algorithm_t cipher;
};
const FastAead kFast[] = {{GNUTLS_CIPHER_AES_128_GCM}, {GNUTLS_CIPHER_AES_256_GCM}};

const FastAead* Fast(const ngtcp2_crypto_aead* aead) {
  for (const FastAead& f : kFast)
    if (aead->native_handle == &f) return &f;
  return nullptr;
}

// The same AEAD as GnuTLS names it, for ngtcp2_crypto_* (key and nonce lengths, HKDF labels).
ngtcp2_crypto_aead GnutlsAead(const FastAead* f, const ngtcp2_crypto_aead& ours) {
  ngtcp2_crypto_aead a = ours;
  a.native_handle = reinterpret_cast<void*>(intptr_t(f->cipher));
  return a;
}

// Our keys alive in this process: ngtcp2's delete callback passes no AEAD to tell them by.
std::mutex keys_mu;
std::unordered_set<const void*> keys;

// OXY_QUIC_AEAD=vaes-avx2 (tests): the AVX2 variant where AVX-512 would run.
bool Avx2() {
  const char* v = getenv("OXY_QUIC_AEAD");
  return v && strcmp(v, "vaes-avx2") == 0;
}

gcm::Key* NewKey(const uint8_t* key, size_t keylen) {
  gcm::Key* k = gcm::NewKey(key, keylen, Avx2());
  if (k) {
    std::lock_guard<std::mutex> lock(keys_mu);
    keys.insert(k);
  }
  return k;
}

// True when it was ours (and is now freed).
bool FreeKey(void* k) {
  {
    std::lock_guard<std::mutex> lock(keys_mu);
    if (!k || keys.erase(k) == 0) return false;
  }
  gcm::FreeKey(static_cast<gcm::Key*>(k));
  return true;
}

// ngtcp2_crypto_derive_packet_protection_key (not exported): RFC 9001 §5.1's HKDF labels (and
// the v2 draft's, as ngtcp2 0.12 has them). hp_key may be null.
int DeriveKeys(uint8_t* key, uint8_t* iv, uint8_t* hp_key, uint32_t version, const ngtcp2_crypto_aead& aead,
               const ngtcp2_crypto_md* md, const uint8_t* secret, size_t secretlen) {
  bool v2 = version == NGTCP2_PROTO_VER_V2_DRAFT;
  auto label = [&](uint8_t* out, size_t len, const char* v1, const char* v2draft) {
    const char* l = v2 ? v2draft : v1;
    return ngtcp2_crypto_hkdf_expand_label(out, len, md, secret, secretlen, reinterpret_cast<const uint8_t*>(l), strlen(l));
  };
  size_t keylen = ngtcp2_crypto_aead_keylen(&aead), ivlen = ngtcp2_crypto_packet_protection_ivlen(&aead);
  if (label(key, keylen, "quic key", "quicv2 key") != 0 || label(iv, ivlen, "quic iv", "quicv2 iv") != 0) return -1;
  return hp_key ? label(hp_key, keylen, "quic hp", "quicv2 hp") : 0;
}

// ngtcp2_crypto_update_traffic_secret (not exported): RFC 9001 §6.1.
int NextSecret(uint8_t* dest, const ngtcp2_crypto_md* md, const uint8_t* secret, size_t secretlen) {
  static const uint8_t kLabel[] = "quic ku";
  return ngtcp2_crypto_hkdf_expand_label(dest, secretlen, md, secret, secretlen, kLabel, sizeof(kLabel) - 1);
}

void Wipe(uint8_t* p, size_t n) {
  volatile uint8_t* v = p;
  while (n--) *v++ = 0;
}

bool Wanted() {
  if (!gcm::Impl()) return false;
  const char* v = getenv("OXY_QUIC_AEAD");
  return !v || strcmp(v, "gnutls") != 0;
}

// ngtcp2_crypto_derive_and_install_{rx,tx}_key for the Handshake and 1-RTT levels of an AES-GCM
// session; anything else goes to those functions.
int Install(ngtcp2_conn* conn, gnutls_session_t session, ngtcp2_crypto_level level, bool tx, const uint8_t* secret,
            size_t secretlen) {
  auto theirs = [&] {
    return tx ? ngtcp2_crypto_derive_and_install_tx_key(conn, nullptr, nullptr, nullptr, level, secret, secretlen)
              : ngtcp2_crypto_derive_and_install_rx_key(conn, nullptr, nullptr, nullptr, level, secret, secretlen);
  };
  if (level != NGTCP2_CRYPTO_LEVEL_HANDSHAKE && level != NGTCP2_CRYPTO_LEVEL_APPLICATION) return theirs();
  const ngtcp2_crypto_ctx* ctx = ngtcp2_conn_get_crypto_ctx(conn);
  if (!ctx->aead.native_handle) {  // the first Handshake secret: the cipher suite is known now
    ngtcp2_crypto_ctx c;
    ngtcp2_crypto_ctx_tls(&c, session);
    for (const FastAead& f : kFast)
      if (c.aead.native_handle == reinterpret_cast<void*>(intptr_t(f.cipher))) c.aead.native_handle = const_cast<FastAead*>(&f);
    ngtcp2_conn_set_crypto_ctx(conn, &c);
    ctx = ngtcp2_conn_get_crypto_ctx(conn);
  }
  const FastAead* f = Fast(&ctx->aead);
  if (!f) return theirs();  // ChaCha20-Poly1305
  ngtcp2_crypto_aead aead = GnutlsAead(f, ctx->aead);
  size_t keylen = ngtcp2_crypto_aead_keylen(&aead), ivlen = ngtcp2_crypto_packet_protection_ivlen(&aead);
  uint8_t key[64], iv[64], hp_key[64];
  if (keylen > sizeof(key) || ivlen > sizeof(iv) ||
      DeriveKeys(key, iv, hp_key, ngtcp2_conn_get_negotiated_version(conn), aead, &ctx->md, secret, secretlen) != 0)
    return -1;
  ngtcp2_crypto_aead_ctx aead_ctx{NewKey(key, keylen)};
  // Header protection stays GnuTLS's, as ngtcp2_crypto_cipher_ctx_encrypt_init (not exported) makes it.
  ngtcp2_crypto_cipher_ctx hp_ctx{};
  gnutls_cipher_hd_t hp = nullptr;
  gnutls_datum_t hp_datum = {hp_key, unsigned(keylen)};
  auto hp_cipher = gnutls_cipher_algorithm_t(intptr_t(ctx->hp.native_handle));
  if (gnutls_cipher_init(&hp, hp_cipher, &hp_datum, nullptr) == 0) hp_ctx.native_handle = hp;
  int rv = -1;
  if (aead_ctx.native_handle && hp_ctx.native_handle) {
    if (level == NGTCP2_CRYPTO_LEVEL_HANDSHAKE)
      rv = tx ? ngtcp2_conn_install_tx_handshake_key(conn, &aead_ctx, iv, ivlen, &hp_ctx)
              : ngtcp2_conn_install_rx_handshake_key(conn, &aead_ctx, iv, ivlen, &hp_ctx);
    else
      rv = tx ? ngtcp2_conn_install_tx_key(conn, secret, secretlen, &aead_ctx, iv, ivlen, &hp_ctx)
              : ngtcp2_conn_install_rx_key(conn, secret, secretlen, &aead_ctx, iv, ivlen, &hp_ctx);
  }
  Wipe(key, sizeof(key));
  Wipe(hp_key, sizeof(hp_key));
  if (rv != 0) {
    if (hp) gnutls_cipher_deinit(hp);
    FreeKey(aead_ctx.native_handle);
    return -1;
  }
  return 0;
}

int SecretFunc(gnutls_session_t session, gnutls_record_encryption_level_t gtls_level, const void* rx_secret,
               const void* tx_secret, size_t secretlen) {
  auto* ref = static_cast<ngtcp2_crypto_conn_ref*>(gnutls_session_get_ptr(session));
  ngtcp2_conn* conn = ref->get_conn(ref);
  ngtcp2_crypto_level level = ngtcp2_crypto_gnutls_from_gnutls_record_encryption_level(gtls_level);
  if (rx_secret && Install(conn, session, level, false, static_cast<const uint8_t*>(rx_secret), secretlen) != 0) return -1;
  if (tx_secret && Install(conn, session, level, true, static_cast<const uint8_t*>(tx_secret), secretlen) != 0) return -1;
  return 0;
}

int Encrypt(uint8_t* dest, const ngtcp2_crypto_aead* aead, const ngtcp2_crypto_aead_ctx* aead_ctx, const uint8_t* plaintext,
            size_t plaintextlen, const uint8_t* nonce, size_t noncelen, const uint8_t* aad, size_t aadlen) {
  if (!Fast(aead)) return ngtcp2_crypto_encrypt_cb(dest, aead, aead_ctx, plaintext, plaintextlen, nonce, noncelen, aad, aadlen);
  if (noncelen != 12) return NGTCP2_ERR_CALLBACK_FAILURE;
  gcm::Seal(static_cast<const gcm::Key*>(aead_ctx->native_handle), dest, plaintext, plaintextlen, nonce, aad, aadlen);
  return 0;
}

int Decrypt(uint8_t* dest, const ngtcp2_crypto_aead* aead, const ngtcp2_crypto_aead_ctx* aead_ctx, const uint8_t* ciphertext,
            size_t ciphertextlen, const uint8_t* nonce, size_t noncelen, const uint8_t* aad, size_t aadlen) {
  if (!Fast(aead)) return ngtcp2_crypto_decrypt_cb(dest, aead, aead_ctx, ciphertext, ciphertextlen, nonce, noncelen, aad, aadlen);
  if (noncelen != 12 ||
      !gcm::Open(static_cast<const gcm::Key*>(aead_ctx->native_handle), dest, ciphertext, ciphertextlen, nonce, aad, aadlen))
    return NGTCP2_ERR_DECRYPT;
  return 0;
}

// ngtcp2_crypto_update_key (a key update: the next 1-RTT keys) for our keys.
int UpdateKey(ngtcp2_conn* conn, uint8_t* rx_secret, uint8_t* tx_secret, ngtcp2_crypto_aead_ctx* rx_aead_ctx, uint8_t* rx_iv,
              ngtcp2_crypto_aead_ctx* tx_aead_ctx, uint8_t* tx_iv, const uint8_t* current_rx_secret,
              const uint8_t* current_tx_secret, size_t secretlen, void* user_data) {
  const ngtcp2_crypto_ctx* ctx = ngtcp2_conn_get_crypto_ctx(conn);
  const FastAead* f = Fast(&ctx->aead);
  if (!f)
    return ngtcp2_crypto_update_key_cb(conn, rx_secret, tx_secret, rx_aead_ctx, rx_iv, tx_aead_ctx, tx_iv, current_rx_secret,
                                       current_tx_secret, secretlen, user_data);
  ngtcp2_crypto_aead aead = GnutlsAead(f, ctx->aead);
  size_t keylen = ngtcp2_crypto_aead_keylen(&aead);
  uint32_t version = ngtcp2_conn_get_negotiated_version(conn);
  uint8_t rx_key[64], tx_key[64];
  int rv = NGTCP2_ERR_CALLBACK_FAILURE;
  if (keylen <= sizeof(rx_key) && NextSecret(rx_secret, &ctx->md, current_rx_secret, secretlen) == 0 &&
      DeriveKeys(rx_key, rx_iv, nullptr, version, aead, &ctx->md, rx_secret, secretlen) == 0 &&
      NextSecret(tx_secret, &ctx->md, current_tx_secret, secretlen) == 0 &&
      DeriveKeys(tx_key, tx_iv, nullptr, version, aead, &ctx->md, tx_secret, secretlen) == 0) {
    rx_aead_ctx->native_handle = NewKey(rx_key, keylen);
    tx_aead_ctx->native_handle = rx_aead_ctx->native_handle ? NewKey(tx_key, keylen) : nullptr;
    if (tx_aead_ctx->native_handle) {
      rv = 0;
    } else {
      FreeKey(rx_aead_ctx->native_handle);
      rx_aead_ctx->native_handle = nullptr;
    }
  }
  Wipe(rx_key, sizeof(rx_key));
  Wipe(tx_key, sizeof(tx_key));
  return rv;
}

void DeleteAeadCtx(ngtcp2_conn* conn, ngtcp2_crypto_aead_ctx* aead_ctx, void* user_data) {
  if (!FreeKey(aead_ctx->native_handle)) ngtcp2_crypto_delete_crypto_aead_ctx_cb(conn, aead_ctx, user_data);
  aead_ctx->native_handle = nullptr;
}

}  // namespace

void ConfigureAead(gnutls_session_t session) {
  if (Wanted()) gnutls_handshake_set_secret_function(session, SecretFunc);
}

void FillAeadCallbacks(ngtcp2_callbacks* cb) {
  cb->encrypt = Encrypt;
  cb->decrypt = Decrypt;
  cb->update_key = UpdateKey;
  cb->delete_crypto_aead_ctx = DeleteAeadCtx;
}

std::string AeadName(ngtcp2_conn* conn) {
  const ngtcp2_crypto_aead& aead = ngtcp2_conn_get_crypto_ctx(conn)->aead;
  if (!aead.native_handle) return "";
  const FastAead* f = Fast(&aead);
  auto cipher = f ? f->cipher : gnutls_cipher_algorithm_t(intptr_t(aead.native_handle));
  const char* name = gnutls_cipher_get_name(cipher);
  return std::string(name ? name : "?") + "/" + (f ? std::string("vaes-") + (Avx2() ? "avx2" : gcm::Impl()) : "gnutls");
}

}  // namespace oxy::quic

namespace oxy {

// aesGcm: aes-gcm.h's one-shot seal and open for tests (known-answer vectors, and node:crypto as
// the other side). impl: "avx512", "avx2" or null (no VAES: seal and open return undefined).
//   seal(key, nonce, aad, plaintext, avx2) -> ciphertext || tag;  open(…, sealed, avx2) -> plaintext | null
void InitAesGcm(Napi::Env env, Napi::Object exports) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("impl", gcm::Impl() ? Napi::Value(Napi::String::New(env, gcm::Impl())) : env.Null());
  auto run = [](const Napi::CallbackInfo& info, bool seal) -> Napi::Value {
    Napi::Env env = info.Env();
    ByteView key, nonce, aad, data;
    if (!GetBytes(info[0], &key) || !GetBytes(info[1], &nonce) || !GetBytes(info[2], &aad) || !GetBytes(info[3], &data) ||
        nonce.length != 12 || (!seal && data.length < 16))
      throw Napi::TypeError::New(env, "aesGcm: key, 12-byte nonce, aad, data");
    gcm::Key* k = gcm::NewKey(key.data, key.length, info[4].ToBoolean());
    if (!k) return env.Undefined();
    size_t out_len = seal ? data.length + 16 : data.length - 16;
    Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(env, out_len);
    bool ok = true;
    if (seal) {
      gcm::Seal(k, out.Data(), data.data, data.length, nonce.data, aad.data, aad.length);
    } else {
      ok = gcm::Open(k, out.Data(), data.data, data.length, nonce.data, aad.data, aad.length);
    }
    gcm::FreeKey(k);
    return ok ? Napi::Value(out) : env.Null();
  };
  o.Set("seal", Napi::Function::New(env, [run](const Napi::CallbackInfo& info) { return run(info, true); }, "seal"));
  o.Set("open", Napi::Function::New(env, [run](const Napi::CallbackInfo& info) { return run(info, false); }, "open"));
  exports.Set("aesGcm", o);
}

}  // namespace oxy
