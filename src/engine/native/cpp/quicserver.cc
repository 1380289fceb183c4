// QuicServer: the edge's QUIC listener on ngtcp2 0.12 + GnuTLS (connections in quic-core.h),
// on one pktinfo UDP socket, driven on the loop thread: packets never reach JS. See
// src/engine/native/quic-server.ts for the JS side and docs/decisions.md "The edge's QUIC on ngtcp2".
//
//  - Receive: a wake-up drains the socket with recvmmsg (IP_PKTINFO / IPV6_PKTINFO: the local
//    address each datagram arrived on); each is routed by destination connection ID (ours are
//    20 bytes, so a short header routes by a fixed slice) to its connection, whose path's local
//    address is that one. Then every connection that got packets or work is flushed once and all
//    their packets leave in sendmmsg batches, each from its path's local address (pktinfo cmsg).
//  - New connections: Initial packets of at least 1,200 bytes only; Version Negotiation for
//    other versions; a stateless Retry (token: [u32 BE issued-at s][u8 odcid len][odcid]
//    [16-byte HMAC-SHA256(key, body ‖ client address)], the format of transport/quic/retry.ts)
//    before any state; a connection cap. Short headers for unknown IDs get a stateless reset
//    (token HMAC-SHA256(key, cid), key derived from the edge's TLS key by stateless-reset.ts),
//    at most 200 a second.
//  - JS hears, once per loop callback, one Buffer of records; a kEvConn record names the
//    connection the following ones are about. JS calls name the connection by its handle.
#include "common.h"
#include "modules.h"
#include "polled.h"
#include "quic-core.h"
#include "fastnat.h"
#include "quic-pump-js.h"

#include <gnutls/crypto.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace oxy {

namespace {

using namespace quic;

constexpr size_t kCidLength = 20;
constexpr size_t kControlSize = 128;
constexpr size_t kMacLength = 16;
constexpr int kResetsPerSecond = 200;

void Hmac(const std::vector<uint8_t>& key, const uint8_t* a, size_t alen, const uint8_t* b, size_t blen, uint8_t out[32]) {
  gnutls_hmac_hd_t h;
  gnutls_hmac_init(&h, GNUTLS_MAC_SHA256, key.data(), key.size());
  gnutls_hmac(h, a, alen);
  if (blen) gnutls_hmac(h, b, blen);
  gnutls_hmac_deinit(h, out);
}

// The client's address as text (IPv4-mapped as plain IPv4), for the retry token's MAC.
std::string AddressText(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = "";
  if (addr.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr, text, sizeof(text));
  } else {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&a)) inet_ntop(AF_INET, &a.s6_addr[12], text, sizeof(text));
    else inet_ntop(AF_INET6, &a, text, sizeof(text));
  }
  return text;
}

class QuicServer : public PolledWrap<QuicServer>, public Host {
 public:
  static Napi::Function Init(Napi::Env env) {
    std::vector<PropertyDescriptor> methods = {
        InstanceMethod("openStream", &QuicServer::JsOpenStream),
        InstanceMethod("write", &QuicServer::JsWrite),
        InstanceMethod("shutdownStream", &QuicServer::JsShutdownStream),
        InstanceMethod("setReadPaused", &QuicServer::JsSetReadPaused),
        InstanceMethod("sendDatagram", &QuicServer::JsSendDatagram),
        InstanceMethod("closeConnection", &QuicServer::JsCloseConnection),
        InstanceMethod("probe", &QuicServer::JsProbe),
        InstanceMethod("info", &QuicServer::JsInfo),
        InstanceMethod("streamsLeft", &QuicServer::JsStreamsLeft),
        InstanceMethod("abandon", &QuicServer::JsAbandon),
        InstanceMethod("stop", &QuicServer::JsStop),
        InstanceMethod("stats", &QuicServer::JsStats),
        InstanceMethod("address", &QuicServer::JsAddress),
        InstanceMethod("attachAnswers", &QuicServer::JsAttachAnswers),
        InstanceMethod("armAnswer", &QuicServer::JsArmAnswer),
        InstanceMethod("closeAnswers", &QuicServer::JsCloseAnswers),
        InstanceMethod("attachPump", &QuicServer::JsAttachPump),
        InstanceMethod("pumpWrite", &QuicServer::JsPumpWrite),
        InstanceMethod("closePump", &QuicServer::JsClosePump),
        InstanceMethod("armPumpHeads", &QuicServer::JsArmPumpHeads),
        InstanceMethod("shutPump", &QuicServer::JsShutPump),
        InstanceMethod("resetPump", &QuicServer::JsResetPump),
        InstanceMethod("readClient", &QuicServer::JsReadClient),
        InstanceMethod("readClientStop", &QuicServer::JsReadClientStop),
        InstanceMethod("readBody", &QuicServer::JsReadBody),
    };
    AddCommonMethods(methods);
    return DefineClass(env, "QuicServer", methods);
  }

  // new QuicServer(options, onEvents): options.fd is a bound UDP socket, duplicated here (the
  // caller keeps and closes its own).
  explicit QuicServer(const Napi::CallbackInfo& info) : PolledWrap<QuicServer>(info) {
    Napi::Env env = info.Env();
    Napi::Object o = info[0].As<Napi::Object>();
    on_events_ = Napi::Persistent(info[1].As<Napi::Function>());
    EnsureContext(env, "oxy:QuicServer");
    env_ = env;
    settings_ = ConnSettings::FromJs(o);
    max_payload_ = settings_.max_payload;
    alpn_ = o.Get("alpn").As<Napi::String>().Utf8Value();
    max_connections_ = o.Get("maxConnections").As<Napi::Number>().Uint32Value();
    ByteView key;
    if (!GetBytes(o.Get("resetKey"), &key)) throw Napi::TypeError::New(env, "QuicServer: resetKey expected");
    reset_key_.assign(key.data, key.data + key.length);
    Napi::Value retry = o.Get("retryKey");
    if (GetBytes(retry, &key)) {
      retry_key_.assign(key.data, key.data + key.length);
      retry_lifetime_s_ = o.Get("retryLifetimeMs").As<Napi::Number>().Int64Value() / 1000;
    }

    int rv = gnutls_certificate_allocate_credentials(&cred_);
    if (rv != 0) throw Napi::Error::New(env, std::string("gnutls credentials: ") + gnutls_strerror(rv));
    std::string cert = o.Get("cert").As<Napi::String>().Utf8Value();
    std::string pkey = o.Get("key").As<Napi::String>().Utf8Value();
    gnutls_datum_t cert_datum = {reinterpret_cast<unsigned char*>(cert.data()), unsigned(cert.size())};
    gnutls_datum_t key_datum = {reinterpret_cast<unsigned char*>(pkey.data()), unsigned(pkey.size())};
    rv = gnutls_certificate_set_x509_key_mem(cred_, &cert_datum, &key_datum, GNUTLS_X509_FMT_PEM);
    if (rv < 0) throw Napi::Error::New(env, std::string("QuicServer: certificate or key: ") + gnutls_strerror(rv));

    int fd = o.Get("fd").As<Napi::Number>().Int32Value();
    fd_ = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (fd_ < 0) ThrowErrno(env, "dup", errno);
    int flags = fcntl(fd_, F_GETFL);
    if (flags < 0 || fcntl(fd_, F_SETFL, flags | O_NONBLOCK) != 0) ThrowErrno(env, "fcntl(O_NONBLOCK)", errno);
    socklen_t len = sizeof(int);
    getsockopt(fd_, SOL_SOCKET, SO_DOMAIN, &family_, &len);
    int on = 1;
    if (family_ == AF_INET6) setsockopt(fd_, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof(on));
    else setsockopt(fd_, IPPROTO_IP, IP_PKTINFO, &on, sizeof(on));
    bound_len_ = sizeof(bound_);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&bound_), &bound_len_);

    napi_get_uv_event_loop(env, &loop_);
    turn_.Init(loop_, this, &QuicServer::OnCheck);
    soon_.Init(loop_, this, [](void* owner) { static_cast<QuicServer*>(owner)->OnSoon(); });
    lazy_.Init(loop_, this, &QuicServer::OnLazyTimer);

    rx_.Init(fd_, settings_.LargestRecv(), settings_.gro, true, kControlSize);
    batch_.Init(settings_.LargestSend(), settings_.gso, settings_.pmtud && SetDontFragment(fd_));
    SetWatch(env, UV_READABLE);
  }

  ~QuicServer() override { Teardown(); }

  // ------------------------------------------------------------------ Host

  void Emit(Conn* c, uint8_t type, uint8_t flag, int64_t id, const uint8_t* data, size_t len) override { Add(c, type, flag, id, data, len, false); }

  // Lazy records (an answer's end the edge's JS reads from the shared state anyway) ride the next
  // batch, or go on their own within kLazyMs (counters, the keep-alive timeout of an idle client).
  void EmitLazy(Conn* c, uint8_t type, uint8_t flag, int64_t id, const uint8_t* data, size_t len) override {
    Add(c, type, flag, id, data, len, true);
    lazy_.At(Now() + kLazyMs * NGTCP2_MILLISECONDS);  // unless armed earlier already
  }

  bool EmitLazyCount(Conn* c, uint8_t type, uint8_t flag, int64_t id, double value, LazySlot* slot, double add) override {
    return CountInto(events_, c, type, flag, id, value, slot, add);
  }

  void Schedule(Conn* c) override {
    dirty_.push_back(c->handle());
    turn_.Arm();
  }

  void FlushAt(Conn* c, uint64_t ts) override {
    soon_list_.push_back(c->handle());
    soon_.At(ts);
  }

  // A pump arms only once JS has seen every batch that carried its stream's bytes (Conn::ArmPumpHeads).
  uint64_t BatchesTaken() const override { return events_.taken(); }

  uint8_t* TxSlot() override { return batch_.Slot(); }

  void TxPush(Conn* c, const ngtcp2_path& path, size_t len) override {
    if (batch_.Push(c, path, len)) TxSend();
  }

  // Each packet to its path's remote address, from its local one (pktinfo).
  void TxSend() override { batch_.Send(fd_, false); }

  void Finished(Conn* c) override {
    for (const std::string& key : c->cids) {
      auto it = by_cid_.find(key);
      if (it != by_cid_.end() && it->second == c->handle()) by_cid_.erase(it);
    }
    c->cids.clear();
    finished_.push_back(c->handle());
  }

  void AfterTimer(Conn*) override {
    Napi::HandleScope scope(env_);
    EndCallback();
    RunTunDue();
  }

  int IssueCid(Conn* c, ngtcp2_cid* cid, uint8_t* token, size_t cidlen) override {
    for (int attempt = 0; attempt < 8; attempt++) {
      if (gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cidlen) != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
      cid->datalen = cidlen;
      std::string key(reinterpret_cast<char*>(cid->data), cidlen);
      if (by_cid_.count(key)) continue;
      ResetToken(cid->data, cidlen, token);
      by_cid_[key] = c->handle();
      c->cids.push_back(key);
      return 0;
    }
    return NGTCP2_ERR_CALLBACK_FAILURE;
  }

  void RetireCid(Conn* c, const ngtcp2_cid* cid) override {
    std::string key(reinterpret_cast<const char*>(cid->data), cid->datalen);
    auto it = by_cid_.find(key);
    if (it != by_cid_.end() && it->second == c->handle()) by_cid_.erase(it);
    for (size_t i = 0; i < c->cids.size(); i++) {
      if (c->cids[i] == key) {
        c->cids.erase(c->cids.begin() + long(i));
        break;
      }
    }
  }

 private:
  static constexpr uint64_t kLazyMs = 20;

  void Add(Conn* c, uint8_t type, uint8_t flag, int64_t id, const uint8_t* data, size_t len, bool lazy) {
    if (!events_tagged_ || current_ != c->handle()) {
      events_.Add(kEvConn, 0, double(c->handle()), nullptr, 0, lazy);
      current_ = c->handle();
      events_tagged_ = true;
    }
    events_.Add(type, flag, double(id), data, len, lazy);
  }

  static void OnLazyTimer(void* owner) {
    auto* self = static_cast<QuicServer*>(owner);
    if (!self->events_.has_lazy() || self->fd_ < 0) return;
    Napi::HandleScope scope(self->env_);
    self->EndCallback(true);
  }

  // ------------------------------------------------------------------ receive

  void OnPoll(int status, int events) override {
    if (fd_ < 0) return;
    Napi::HandleScope scope(env_);
    ReadPackets();
    FlushDirty();
    EndCallback();
    RunTunDue();  // what the flush wrote to accepted sockets is on the TUN: read in this turn
  }

  void ReadPackets() {
    bool split = false;
    for (int rounds = 0; rounds < 16 && fd_ >= 0; rounds++) {
      int n = rx_.Read(fd_);
      if (n <= 0) break;
      uint64_t ts = Now();
      for (int i = 0; i < n && fd_ >= 0; i++) {
        msghdr& h = rx_.header(i);
        sockaddr_storage local;
        LocalAddress(h, &local);
        read_conn_ = nullptr;
        rx_.Each(i, [&](const uint8_t* data, size_t len) { Datagram(data, len, rx_.name(i), h.msg_namelen, local, ts); });
        // OXY_QUIC_ACK_SPLIT=1: a bulk message with more behind it is acknowledged now (once per read).
        if (!split && i + 1 < n && read_conn_ && read_conn_->AckEarly()) {
          split = true;
          TxSend();
        }
      }
      if (size_t(n) < kRecvBatch) break;
    }
  }

  // The address the datagram was sent to (pktinfo), with our port; the bound address without one.
  void LocalAddress(msghdr& h, sockaddr_storage* out) {
    memcpy(out, &bound_, sizeof(bound_));
    for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(&h, c)) {
      if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
        in_pktinfo pi;
        memcpy(&pi, CMSG_DATA(c), sizeof(pi));
        if (family_ == AF_INET) {
          reinterpret_cast<sockaddr_in*>(out)->sin_addr = pi.ipi_addr;
        } else {
          auto* a6 = reinterpret_cast<sockaddr_in6*>(out);
          memset(&a6->sin6_addr, 0, sizeof(a6->sin6_addr));
          a6->sin6_addr.s6_addr[10] = 0xff;
          a6->sin6_addr.s6_addr[11] = 0xff;
          memcpy(&a6->sin6_addr.s6_addr[12], &pi.ipi_addr, 4);
        }
      } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO && family_ == AF_INET6) {
        in6_pktinfo pi;
        memcpy(&pi, CMSG_DATA(c), sizeof(pi));
        reinterpret_cast<sockaddr_in6*>(out)->sin6_addr = pi.ipi6_addr;
      }
    }
  }

  void Datagram(const uint8_t* data, size_t len, const sockaddr_storage& remote, socklen_t remote_len, const sockaddr_storage& local, uint64_t ts) {
    ngtcp2_path path = {{const_cast<sockaddr*>(reinterpret_cast<const sockaddr*>(&local)), bound_len_},
                        {const_cast<sockaddr*>(reinterpret_cast<const sockaddr*>(&remote)), remote_len},
                        nullptr};
    bool long_header = (data[0] & 0x80) != 0;
    const uint8_t* dcid;
    size_t dcidlen;
    if (long_header) {
      if (len < 7) return;
      dcidlen = data[5];
      if (dcidlen > NGTCP2_MAX_CIDLEN || len < 6 + dcidlen) {
        MaybeNegotiate(data, len, remote, remote_len, local);
        return;
      }
      dcid = data + 6;
    } else {
      if (len <= kCidLength) return;
      dcid = data + 1;
      dcidlen = kCidLength;
    }
    auto it = by_cid_.find(std::string(reinterpret_cast<const char*>(dcid), dcidlen));
    if (it != by_cid_.end()) {
      if (Conn* c = Find(it->second)) {
        c->Read(path, data, len, ts);
        read_conn_ = c;
      }
      return;
    }
    if (long_header) Accept(path, data, len, remote, remote_len, local);
    else StatelessReset(data + 1, len, remote, remote_len, local);
  }

  // A long header of a version we do not speak: Version Negotiation (only for a datagram as
  // large as a client's first, so we never amplify).
  bool MaybeNegotiate(const uint8_t* data, size_t len, const sockaddr_storage& remote, socklen_t remote_len, const sockaddr_storage& local) {
    if (len < 7) return true;
    uint32_t version = (uint32_t(data[1]) << 24) | (uint32_t(data[2]) << 16) | (uint32_t(data[3]) << 8) | data[4];
    if (ngtcp2_is_supported_version(version)) return false;
    if (closing_ || len < NGTCP2_MAX_UDP_PAYLOAD_SIZE) return true;
    ngtcp2_version_cid vc;
    int rv = ngtcp2_pkt_decode_version_cid(&vc, data, len, kCidLength);
    if (rv != NGTCP2_ERR_VERSION_NEGOTIATION) return true;
    uint8_t unused;
    gnutls_rnd(GNUTLS_RND_NONCE, &unused, 1);
    uint32_t sv[] = {NGTCP2_PROTO_VER_V1};
    ngtcp2_ssize n = ngtcp2_pkt_write_version_negotiation(TxSlot(), max_payload_, unused, vc.scid, vc.scidlen, vc.dcid, vc.dcidlen, sv, 1);
    if (n > 0) PushRaw(size_t(n), remote, remote_len, local);
    return true;
  }

  void Accept(const ngtcp2_path& path, const uint8_t* data, size_t len, const sockaddr_storage& remote, socklen_t remote_len, const sockaddr_storage& local) {
    if (closing_ || len < NGTCP2_MAX_UDP_PAYLOAD_SIZE) return;
    if (MaybeNegotiate(data, len, remote, remote_len, local)) return;
    ngtcp2_pkt_hd hd;
    if (ngtcp2_accept(&hd, data, len) != 0 || hd.type != NGTCP2_PKT_INITIAL) return;
    if (live_ >= max_connections_) {
      refused_++;
      return;
    }
    Conn::ServerInit init{};
    init.dcid = hd.scid;
    init.version = hd.version;
    init.original_dcid = hd.dcid;
    if (!retry_key_.empty()) {
      if (hd.token.len == 0) {
        SendRetry(hd, remote, remote_len, local);
        return;
      }
      if (hd.dcid.datalen != kCidLength || !ValidateRetryToken(hd.token.base, hd.token.len, remote, &init.original_dcid)) {
        invalid_tokens_++;
        return;
      }
      // The Retry's source ID becomes ours (as the quiche listener does).
      init.retried = true;
      init.retry_scid = hd.dcid;
      init.scid = hd.dcid;
      init.token = hd.token.base;
      init.tokenlen = hd.token.len;
    } else {
      init.scid.datalen = kCidLength;
      gnutls_rnd(GNUTLS_RND_RANDOM, init.scid.data, kCidLength);
    }
    std::string scid_key(reinterpret_cast<const char*>(init.scid.data), init.scid.datalen);
    if (by_cid_.count(scid_key)) return;
    ResetToken(init.scid.data, init.scid.datalen, init.reset_token);

    uint32_t handle = next_handle_++;
    auto conn = std::make_unique<Conn>(this, handle, settings_, loop_);
    std::string problem = conn->InitTls(true, cred_, alpn_, "");
    if (problem.empty()) problem = conn->InitServer(path, init);
    if (!problem.empty()) {
      accept_failures_++;
      return;
    }
    Conn* c = conn.get();
    conns_[handle] = std::move(conn);
    live_++;
    by_cid_[scid_key] = handle;
    c->cids.push_back(scid_key);
    // Without retry the client keeps addressing its own random DCID until it hears from us.
    std::string odcid_key(reinterpret_cast<const char*>(hd.dcid.data), hd.dcid.datalen);
    if (odcid_key != scid_key && !by_cid_.count(odcid_key)) {
      by_cid_[odcid_key] = handle;
      c->cids.push_back(odcid_key);
    }
    c->Read(path, data, len, Now());
  }

  void SendRetry(const ngtcp2_pkt_hd& hd, const sockaddr_storage& remote, socklen_t remote_len, const sockaddr_storage& local) {
    if (hd.dcid.datalen < NGTCP2_MIN_INITIAL_DCIDLEN) return;
    ngtcp2_cid scid;
    scid.datalen = kCidLength;
    gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, kCidLength);
    // [u32 BE issued-at seconds][u8 odcid length][odcid][MAC]
    uint8_t token[5 + NGTCP2_MAX_CIDLEN + kMacLength];
    uint32_t issued = uint32_t(time(nullptr));
    token[0] = uint8_t(issued >> 24);
    token[1] = uint8_t(issued >> 16);
    token[2] = uint8_t(issued >> 8);
    token[3] = uint8_t(issued);
    token[4] = uint8_t(hd.dcid.datalen);
    memcpy(token + 5, hd.dcid.data, hd.dcid.datalen);
    size_t body = 5 + hd.dcid.datalen;
    std::string address = AddressText(remote);
    uint8_t mac[32];
    Hmac(retry_key_, token, body, reinterpret_cast<const uint8_t*>(address.data()), address.size(), mac);
    memcpy(token + body, mac, kMacLength);
    ngtcp2_ssize n = ngtcp2_crypto_write_retry(TxSlot(), max_payload_, hd.version, &hd.scid, &scid, &hd.dcid, token, body + kMacLength);
    if (n > 0) PushRaw(size_t(n), remote, remote_len, local);
  }

  bool ValidateRetryToken(const uint8_t* token, size_t len, const sockaddr_storage& remote, ngtcp2_cid* odcid) {
    if (len < 5 + kMacLength) return false;
    size_t odcid_len = token[4];
    if (odcid_len > NGTCP2_MAX_CIDLEN || len != 5 + odcid_len + kMacLength) return false;
    size_t body = 5 + odcid_len;
    std::string address = AddressText(remote);
    uint8_t mac[32];
    Hmac(retry_key_, token, body, reinterpret_cast<const uint8_t*>(address.data()), address.size(), mac);
    uint8_t diff = 0;
    for (size_t i = 0; i < kMacLength; i++) diff |= uint8_t(mac[i] ^ token[body + i]);
    if (diff != 0) return false;
    int64_t issued = (int64_t(token[0]) << 24) | (int64_t(token[1]) << 16) | (int64_t(token[2]) << 8) | int64_t(token[3]);
    int64_t age = int64_t(time(nullptr)) - issued;
    if (age < -1 || age > retry_lifetime_s_) return false;
    odcid->datalen = odcid_len;
    memcpy(odcid->data, token + 5, odcid_len);
    return true;
  }

  void ResetToken(const uint8_t* cid, size_t cidlen, uint8_t* token) {
    uint8_t mac[32];
    Hmac(reset_key_, cid, cidlen, nullptr, 0, mac);
    memcpy(token, mac, NGTCP2_STATELESS_RESET_TOKENLEN);
  }

  // RFC 9000 §10.3: shorter than its trigger, at least 21 bytes, never more than 43.
  void StatelessReset(const uint8_t* cid, size_t trigger_len, const sockaddr_storage& remote, socklen_t remote_len, const sockaddr_storage& local) {
    if (closing_) return;
    size_t length = std::min<size_t>(trigger_len - 1, 43);
    if (length < 21) return;
    time_t now = time(nullptr);
    if (now != reset_window_) {
      reset_window_ = now;
      resets_in_window_ = 0;
    }
    if (++resets_in_window_ > kResetsPerSecond) return;
    uint8_t* out = TxSlot();
    gnutls_rnd(GNUTLS_RND_NONCE, out, length - NGTCP2_STATELESS_RESET_TOKENLEN);
    out[0] = uint8_t(0x40 | (out[0] & 0x3f));  // a short header: form 0, fixed bit 1
    ResetToken(cid, kCidLength, out + length - NGTCP2_STATELESS_RESET_TOKENLEN);
    PushRaw(length, remote, remote_len, local);
    resets_sent_++;
  }

  // A packet of no connection (retry, reset, version negotiation) written at TxSlot().
  void PushRaw(size_t len, const sockaddr_storage& remote, socklen_t remote_len, const sockaddr_storage& local) {
    ngtcp2_path path = {{const_cast<sockaddr*>(reinterpret_cast<const sockaddr*>(&local)), bound_len_},
                        {const_cast<sockaddr*>(reinterpret_cast<const sockaddr*>(&remote)), remote_len},
                        nullptr};
    TxPush(nullptr, path, len);
  }

  // ------------------------------------------------------------------ rhythm

  static void OnCheck(uv_check_t* handle) {
    auto* self = static_cast<QuicServer*>(handle->data);
    if (!self) return;
    self->turn_.Disarm();
    Napi::HandleScope scope(self->env_);
    self->FlushDirty();
    self->EndCallback();
    RunTunDue();
  }

  // The precise timer: connections that waited for pacing flush now (one not yet due asks again).
  void OnSoon() {
    Napi::HandleScope scope(env_);
    std::vector<uint32_t> list;
    list.swap(soon_list_);
    for (uint32_t handle : list) {
      Conn* c = Find(handle);
      if (!c || c->scheduled) continue;
      c->scheduled = true;
      dirty_.push_back(handle);
    }
    FlushDirty();
    EndCallback();
    RunTunDue();
  }

  // Every connection with work flushes once; one that asks again meanwhile (pacing: due within
  // the millisecond) goes next turn.
  void FlushDirty() {
    std::vector<uint32_t> list;
    list.swap(dirty_);
    for (uint32_t handle : list) {
      Conn* c = Find(handle);
      if (!c || !c->scheduled) continue;
      c->scheduled = false;
      c->Flush();
    }
    TxSend();
  }

  // Sends, hands the batch to JS (JS may call back into us meanwhile), frees finished connections.
  void EndCallback(bool lazy_too = false) {
    TxSend();
    // Building the Buffer runs JS: not in an env that stopped (a worker being terminated).
    if ((lazy_too ? events_.has_lazy() : !events_.empty()) && !on_events_.IsEmpty() && CanCallJs(env_)) {
      Napi::Buffer<uint8_t> buf = events_.Take(env_);
      events_tagged_ = false;
      in_js_++;
      InvokeCallback(env_, on_events_, *context_, {buf});
      in_js_--;
      TxSend();
    }
    if (in_js_ > 0) return;
    for (size_t i = 0; i < finished_.size(); i++) {
      auto it = conns_.find(finished_[i]);
      if (it == conns_.end()) continue;
      live_--;
      conns_.erase(it);
    }
    finished_.clear();
  }

  Conn* Find(uint32_t handle) {
    auto it = conns_.find(handle);
    return it == conns_.end() ? nullptr : it->second.get();
  }

  Conn* Arg(const Napi::CallbackInfo& info) {
    Conn* c = Find(info[0].As<Napi::Number>().Uint32Value());
    return c && c->Usable() ? c : nullptr;
  }

  // ------------------------------------------------------------------ JS methods (first argument: the handle)

  Napi::Value JsOpenStream(const Napi::CallbackInfo& info) {
    Conn* c = Arg(info);
    return Napi::Number::New(info.Env(), double(c ? c->OpenStream() : -1));
  }

  Napi::Value JsWrite(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ByteView bytes{nullptr, 0};
    if (!info[2].IsUndefined() && !GetBytes(info[2], &bytes)) throw Napi::TypeError::New(env, "write: bytes expected");
    Conn* c = Arg(info);
    if (!c) return Napi::Number::New(env, -1);
    return Napi::Number::New(env, c->Write(info[1].As<Napi::Number>().Int64Value(), bytes.data, bytes.length, info[3].ToBoolean()));
  }

  Napi::Value JsShutdownStream(const Napi::CallbackInfo& info) {
    if (Conn* c = Arg(info)) c->ShutdownStream(info[1].As<Napi::Number>().Int64Value(), uint64_t(info[2].As<Napi::Number>().Int64Value()));
    return info.Env().Undefined();
  }

  Napi::Value JsSetReadPaused(const Napi::CallbackInfo& info) {
    if (Conn* c = Arg(info)) c->SetReadPaused(info[1].As<Napi::Number>().Int64Value(), info[2].ToBoolean());
    return info.Env().Undefined();
  }

  Napi::Value JsSendDatagram(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ByteView bytes;
    if (!GetBytes(info[1], &bytes)) throw Napi::TypeError::New(env, "sendDatagram: bytes expected");
    Conn* c = Arg(info);
    return Napi::Boolean::New(env, c && c->SendDatagram(bytes.data, bytes.length));
  }

  Napi::Value JsCloseConnection(const Napi::CallbackInfo& info) {
    if (Conn* c = Arg(info)) c->Close(uint64_t(info[1].As<Napi::Number>().Int64Value()), info[2].As<Napi::String>().Utf8Value(), info[3].ToBoolean());
    return info.Env().Undefined();
  }

  Napi::Value JsProbe(const Napi::CallbackInfo& info) {
    if (Conn* c = Arg(info)) c->Probe();
    return info.Env().Undefined();
  }

  Napi::Value JsInfo(const Napi::CallbackInfo& info) {
    Conn* c = Find(info[0].As<Napi::Number>().Uint32Value());
    return c ? c->Info(info.Env()) : Napi::Object::New(info.Env());
  }

  Napi::Value JsStreamsLeft(const Napi::CallbackInfo& info) {
    Conn* c = Arg(info);
    return Napi::Number::New(info.Env(), double(c ? c->StreamsLeft() : 0));
  }

  // abandon(handle): forget a connection without a packet.
  Napi::Value JsAbandon(const Napi::CallbackInfo& info) {
    Conn* c = Find(info[0].As<Napi::Number>().Uint32Value());
    if (c && c->Usable()) {
      c->Teardown();
      Finished(c);
    }
    return info.Env().Undefined();
  }

  // stop(): no new connections (the listener is closing); existing ones are closed by JS.
  Napi::Value JsStop(const Napi::CallbackInfo& info) {
    closing_ = true;
    return info.Env().Undefined();
  }

  Napi::Value JsStats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object out = Napi::Object::New(env);
    out.Set("connections", double(live_));
    out.Set("cids", double(by_cid_.size()));
    out.Set("refused", double(refused_));
    out.Set("invalidTokens", double(invalid_tokens_));
    out.Set("resetsSent", double(resets_sent_));
    out.Set("acceptFailures", double(accept_failures_));
    out.Set("gso", batch_.gso());
    out.Set("gsoSends", double(batch_.gso_sends()));
    out.Set("largestSend", double(batch_.largest_send()));
    out.Set("gro", rx_.gro());
    out.Set("groReads", double(rx_.gro_reads()));
    return out;
  }

  Napi::Value JsAddress(const Napi::CallbackInfo& info) { return SockaddrToObject(info.Env(), bound_); }

  // attachAnswers(handle, id, fd, state, keepAlive, extra) → true when stream `id`'s answers may be
  // written to (a duplicate of) the client socket `fd` (quic-answer.cc).
  Napi::Value JsAttachAnswers(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ByteView keep_alive, extra;
    if (!info[3].IsTypedArray() || info[3].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array || !GetBytes(info[4], &keep_alive) ||
        !GetBytes(info[5], &extra)) {
      throw Napi::TypeError::New(env, "attachAnswers: (handle, id, fd, Float64Array, bytes, bytes) expected");
    }
    Conn* c = Arg(info);
    bool ok = c && c->AttachAnswers(info[1].As<Napi::Number>().Int64Value(), info[2].As<Napi::Number>().Int32Value(), info[3].As<Napi::Float64Array>(),
                                    std::string(reinterpret_cast<const char*>(keep_alive.data), keep_alive.length),
                                    std::string(reinterpret_cast<const char*>(extra.data), extra.length));
    return Napi::Boolean::New(env, ok);
  }

  // armAnswer(handle, id, flags) → true when the stream's next answer is written natively
  // (flags: 1 a HEAD request, 2 the client asked to close, 4 the stream's preamble comes first).
  Napi::Value JsArmAnswer(const Napi::CallbackInfo& info) {
    Conn* c = Arg(info);
    uint32_t flags = info[2].As<Napi::Number>().Uint32Value();
    bool ok = c && c->ArmAnswer(info[1].As<Napi::Number>().Int64Value(), flags & 1, flags & 2, flags & 4);
    return Napi::Boolean::New(info.Env(), ok);
  }

  // readClient(handle, id, host, client) → true when the addon reads the answer pump's client
  // socket from now on (JS's handle stopped reading it), forwarding plain requests for `host`.
  Napi::Value JsReadClient(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ByteView host, client;
    if (!GetBytes(info[2], &host) || !GetBytes(info[3], &client)) throw Napi::TypeError::New(env, "readClient: (handle, id, bytes, bytes) expected");
    Conn* c = Arg(info);
    bool ok = c && c->ReadStart(info[1].As<Napi::Number>().Int64Value(), std::string(reinterpret_cast<const char*>(host.data), host.length),
                                std::string(reinterpret_cast<const char*>(client.data), client.length));
    return Napi::Boolean::New(env, ok);
  }

  // readClientStop(handle, id) → the bytes read and not JS's yet (the head of a request in
  // flight first: its length in the state's BACK_HEAD slot); the addon reads no more.
  Napi::Value JsReadClientStop(const Napi::CallbackInfo& info) {
    Conn* c = Find(info[0].As<Napi::Number>().Uint32Value());
    std::vector<uint8_t> back;
    if (c) back = c->ReadStop(info[1].As<Napi::Number>().Int64Value());
    return Napi::Buffer<uint8_t>::Copy(info.Env(), back.data(), back.size());
  }

  // readBody(handle, id, left, chunkState?) → true when the addon reads the request body from the
  // client from now on: `left` bytes, or chunked from `chunkState` (Float64Array, ChunkedBody.handOver).
  Napi::Value JsReadBody(const Napi::CallbackInfo& info) {
    Conn* c = Arg(info);
    std::vector<double> st;
    if (info.Length() > 3 && info[3].IsTypedArray()) {
      Napi::Float64Array a = info[3].As<Napi::Float64Array>();
      st.assign(a.Data(), a.Data() + a.ElementLength());
    }
    double left = info[2].As<Napi::Number>().DoubleValue();
    bool ok = c && left >= 0 && left <= 9007199254740991.0 &&
              c->BodyStart(info[1].As<Napi::Number>().Int64Value(), uint64_t(left), st.empty() ? nullptr : st.data(), st.size());
    return Napi::Boolean::New(info.Env(), ok);
  }

  Napi::Value JsCloseAnswers(const Napi::CallbackInfo& info) {
    if (Conn* c = Find(info[0].As<Napi::Number>().Uint32Value())) c->CloseAnswers(info[1].As<Napi::Number>().Int64Value());
    return info.Env().Undefined();
  }

  // The fd pumps (quic-pump.cc) on a server connection, e.g. the edge's upgraded socket of a
  // private TCP flow: QuicClient's calls, the connection's handle first.
  Napi::Value JsAttachPump(const Napi::CallbackInfo& info) { return pump_js::Attach(Arg(info), info, 1); }
  Napi::Value JsShutPump(const Napi::CallbackInfo& info) { return pump_js::Shut(Arg(info), info, 1); }
  Napi::Value JsResetPump(const Napi::CallbackInfo& info) { return pump_js::Reset(Arg(info), info, 1); }
  Napi::Value JsPumpWrite(const Napi::CallbackInfo& info) { return pump_js::Write(Arg(info), info, 1); }
  Napi::Value JsArmPumpHeads(const Napi::CallbackInfo& info) { return pump_js::ArmHeads(Arg(info), info, 1); }
  Napi::Value JsClosePump(const Napi::CallbackInfo& info) { return pump_js::Close(Find(info[0].As<Napi::Number>().Uint32Value()), info, 1); }

  // ------------------------------------------------------------------ teardown

  void Shutdown() override {
    Teardown();
    PolledWrap<QuicServer>::Shutdown();
  }

  void ResetCallbacks() override { on_events_.Reset(); }

  void Teardown() {
    turn_.Close();
    soon_.Close();
    lazy_.Close();
    // Closes JS asked for (listener.close()) leave before the socket closes.
    if (fd_ >= 0) FlushDirty();
    conns_.clear();
    by_cid_.clear();
    dirty_.clear();
    finished_.clear();
    live_ = 0;
    if (cred_) {
      gnutls_certificate_free_credentials(cred_);
      cred_ = nullptr;
    }
  }

  Napi::Env env_{nullptr};
  Napi::FunctionReference on_events_;
  uv_loop_t* loop_ = nullptr;
  ConnSettings settings_;
  gnutls_certificate_credentials_t cred_ = nullptr;
  std::string alpn_;
  std::vector<uint8_t> reset_key_;
  std::vector<uint8_t> retry_key_;
  int64_t retry_lifetime_s_ = 10;
  uint32_t max_connections_ = 10000;
  uint32_t max_payload_ = 1350;
  int family_ = AF_INET6;
  sockaddr_storage bound_{};
  socklen_t bound_len_ = 0;
  bool closing_ = false;

  std::unordered_map<uint32_t, std::unique_ptr<Conn>> conns_;
  std::unordered_map<std::string, uint32_t> by_cid_;
  uint32_t next_handle_ = 1;
  uint32_t live_ = 0;
  std::vector<uint32_t> dirty_;
  std::vector<uint32_t> finished_;

  TurnScheduler turn_;
  SoonTimer soon_;
  SoonTimer lazy_;
  std::vector<uint32_t> soon_list_;
  int in_js_ = 0;

  EventBatch events_;
  uint32_t current_ = 0;
  bool events_tagged_ = false;
  RecvBatch rx_;
  // The connection the last datagram went to (ReadPackets' ACK split); connections are freed only
  // at EndCallback, after the read.
  Conn* read_conn_ = nullptr;
  PacketBatch batch_;

  time_t reset_window_ = 0;
  int resets_in_window_ = 0;
  uint64_t refused_ = 0;
  uint64_t invalid_tokens_ = 0;
  uint64_t resets_sent_ = 0;
  uint64_t accept_failures_ = 0;
};

}  // namespace

Napi::Function InitQuicServer(Napi::Env env) { return QuicServer::Init(env); }

}  // namespace oxy
