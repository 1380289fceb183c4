// QuicClient: one QUIC client connection on ngtcp2 0.12 + GnuTLS, with its own connected UDP
// socket, driven entirely on the loop thread: packets never reach JS. See
// src/engine/native/quic-client.ts for the JS side and docs/decisions.md "QUIC on ngtcp2".
//
// Rhythm: a readable socket (uv_poll) is drained with recvmmsg and every datagram fed to
// ngtcp2; ngtcp2's one timer is a uv_timer; JS writes only queue bytes and arm a uv_check (plus
// a uv_idle so the loop does not block before it runs), so one flush per loop turn writes every
// stream's data, several streams per packet (NGTCP2_WRITE_STREAM_FLAG_MORE), and sends them with
// one sendmmsg. What JS must hear (stream bytes, FINs, resets, credit, datagrams, the close) is
// packed into one Buffer handed to a single JS callback at the end of each of those callbacks.
//
// Event record: [u8 type][u8 flag][u16 0][u32 length][f64 stream id][length bytes].
#include "common.h"
#include "polled.h"

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <unordered_map>
#include <vector>

namespace oxy {

namespace {

enum EventType : uint8_t {
  kEvHandshake = 1,
  kEvData = 2,         // flag 1: FIN
  kEvReset = 3,        // payload f64 code
  kEvStopSending = 4,  // payload f64 code
  kEvWritable = 5,
  kEvStreamClosed = 6,
  kEvDatagram = 7,
  kEvStreamsAvailable = 8,
  kEvClosed = 9,  // flag: CloseKind; payload f64 code + reason
  kEvAnswered = 10,
  kEvSendError = 11,  // payload f64 errno
};

enum CloseKind : uint8_t {
  kClosePeerApp = 1,
  kClosePeerTransport = 2,
  kCloseLocalError = 3,
  kCloseIdle = 4,
  kCloseHandshakeTimeout = 5,
  kCloseStatelessReset = 6,
};

constexpr size_t kMaxPacketsPerSend = 64;
constexpr size_t kMaxPacketsPerFlush = 512;
constexpr size_t kRecvBatch = 64;
// A stream's unsent bytes above this: write() reports it and a kEvWritable follows once the
// flush got below half of it.
constexpr uint64_t kStreamHighWater = 1024 * 1024;

void LogPrintf(void*, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

uint64_t Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * NGTCP2_SECONDS + uint64_t(ts.tv_nsec);
}

const char kPriority[] =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"
    "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:%DISABLE_TLS13_COMPAT_MODE";

struct Chunk {
  std::unique_ptr<uint8_t[]> data;
  size_t length;
};

struct Stream {
  int64_t id;
  // Bytes from `base` (acknowledged before it) on: ngtcp2 refers to them until acked.
  std::deque<Chunk> chunks;
  uint64_t base = 0;    // stream offset of chunks.front()
  uint64_t sent = 0;    // stream offset of the first byte not yet handed to ngtcp2
  uint64_t total = 0;   // stream offset past the last byte queued
  bool fin = false;     // JS asked for the FIN after `total`
  bool fin_sent = false;
  bool in_queue = false;
  bool write_closed = false;  // reset, stopped or finished: nothing more to send
  bool want_writable = false;
  bool read_paused = false;
  uint64_t owed_credit = 0;  // bytes delivered while paused, credited on resume
  uint64_t blocked_gen = 0;  // flush generation in which flow control blocked it

  bool HasWork() const { return !write_closed && (sent < total || (fin && !fin_sent)); }
};

class QuicClient : public PolledWrap<QuicClient> {
 public:
  static Napi::Function Init(Napi::Env env) {
    std::vector<PropertyDescriptor> methods = {
        InstanceMethod("openStream", &QuicClient::JsOpenStream),
        InstanceMethod("write", &QuicClient::JsWrite),
        InstanceMethod("shutdownStream", &QuicClient::JsShutdownStream),
        InstanceMethod("setReadPaused", &QuicClient::JsSetReadPaused),
        InstanceMethod("sendDatagram", &QuicClient::JsSendDatagram),
        InstanceMethod("closeConnection", &QuicClient::JsCloseConnection),
        InstanceMethod("probe", &QuicClient::JsProbe),
        InstanceMethod("info", &QuicClient::JsInfo),
        InstanceMethod("peerCertificates", &QuicClient::JsPeerCertificates),
        InstanceMethod("streamsLeft", &QuicClient::JsStreamsLeft),
    };
    AddCommonMethods(methods);
    return DefineClass(env, "QuicClient", methods);
  }

  // new QuicClient(options, onEvents)
  explicit QuicClient(const Napi::CallbackInfo& info) : PolledWrap<QuicClient>(info) {
    Napi::Env env = info.Env();
    Napi::Object o = info[0].As<Napi::Object>();
    on_events_ = Napi::Persistent(info[1].As<Napi::Function>());
    EnsureContext(env, "oxy:QuicClient");
    env_ = env;

    std::string remote = o.Get("remoteAddress").As<Napi::String>().Utf8Value();
    uint16_t port = uint16_t(o.Get("remotePort").As<Napi::Number>().Uint32Value());
    std::string local = o.Get("localAddress").As<Napi::String>().Utf8Value();
    int family = o.Get("family").As<Napi::Number>().Int32Value() == 6 ? AF_INET6 : AF_INET;
    max_payload_ = o.Get("maxUdpPayloadSize").As<Napi::Number>().Uint32Value();
    if (max_payload_ < 1200) max_payload_ = 1200;
    if (max_payload_ > 65527) max_payload_ = 65527;

    if (!ParseSockaddr(remote, port, family, &remote_addr_, &remote_len_)) {
      throw Napi::Error::New(env, "QuicClient: bad remote address " + remote);
    }
    sockaddr_storage local_addr;
    socklen_t local_len;
    if (!ParseSockaddr(local, 0, family, &local_addr, &local_len)) {
      throw Napi::Error::New(env, "QuicClient: bad local address " + local);
    }
    fd_ = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) ThrowErrno(env, "socket", errno);
    // Past net.core.[rw]mem_max when allowed (root), as the pktinfo socket does.
    int buf = o.Get("socketBufferBytes").As<Napi::Number>().Int32Value();
    if (setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof(buf)) != 0) setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &buf, sizeof(buf));
    if (setsockopt(fd_, SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof(buf)) != 0) setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
    if (bind(fd_, reinterpret_cast<sockaddr*>(&local_addr), local_len) != 0) ThrowErrno(env, "bind", errno);
    // Connected: the kernel drops datagrams from any other source (as the quiche client does)
    // and reports ICMP unreachable as ECONNREFUSED.
    if (connect(fd_, reinterpret_cast<sockaddr*>(&remote_addr_), remote_len_) != 0) ThrowErrno(env, "connect", errno);
    local_len_ = sizeof(local_addr_);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&local_addr_), &local_len_);

    InitTls(env, o);
    InitConn(env, o);

    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    timer_ = new uv_timer_t();
    uv_timer_init(loop, timer_);
    timer_->data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(timer_));
    check_ = new uv_check_t();
    uv_check_init(loop, check_);
    check_->data = this;
    idle_ = new uv_idle_t();
    uv_idle_init(loop, idle_);
    idle_->data = this;

    rx_.resize(kRecvBatch * size_t(max_payload_ + 64));
    tx_.resize(kMaxPacketsPerSend * size_t(max_payload_));
    tx_len_.resize(kMaxPacketsPerSend);
    SetWatch(env, UV_READABLE);
    ScheduleFlush();
  }

  ~QuicClient() override { Teardown(); }

 private:
  // ------------------------------------------------------------------ setup

  void InitTls(Napi::Env env, Napi::Object o) {
    int rv = gnutls_certificate_allocate_credentials(&cred_);
    if (rv != 0) throw Napi::Error::New(env, std::string("gnutls credentials: ") + gnutls_strerror(rv));
    std::string ca = o.Get("ca").As<Napi::String>().Utf8Value();
    gnutls_datum_t ca_datum = {reinterpret_cast<unsigned char*>(ca.data()), unsigned(ca.size())};
    rv = gnutls_certificate_set_x509_trust_mem(cred_, &ca_datum, GNUTLS_X509_FMT_PEM);
    if (rv <= 0) throw Napi::Error::New(env, std::string("QuicClient: no usable CA certificate: ") + (rv < 0 ? gnutls_strerror(rv) : "none found"));
    rv = gnutls_init(&session_, GNUTLS_CLIENT | GNUTLS_ENABLE_EARLY_DATA | GNUTLS_NO_END_OF_EARLY_DATA);
    if (rv != 0) throw Napi::Error::New(env, std::string("gnutls_init: ") + gnutls_strerror(rv));
    if (ngtcp2_crypto_gnutls_configure_client_session(session_) != 0) {
      throw Napi::Error::New(env, "ngtcp2_crypto_gnutls_configure_client_session failed");
    }
    rv = gnutls_priority_set_direct(session_, kPriority, nullptr);
    if (rv != 0) throw Napi::Error::New(env, std::string("gnutls_priority_set_direct: ") + gnutls_strerror(rv));
    conn_ref_.get_conn = [](ngtcp2_crypto_conn_ref* ref) { return static_cast<QuicClient*>(ref->user_data)->conn_; };
    conn_ref_.user_data = this;
    gnutls_session_set_ptr(session_, &conn_ref_);
    rv = gnutls_credentials_set(session_, GNUTLS_CRD_CERTIFICATE, cred_);
    if (rv != 0) throw Napi::Error::New(env, std::string("gnutls_credentials_set: ") + gnutls_strerror(rv));
    alpn_ = o.Get("alpn").As<Napi::String>().Utf8Value();
    gnutls_datum_t alpn = {reinterpret_cast<unsigned char*>(alpn_.data()), unsigned(alpn_.size())};
    gnutls_alpn_set_protocols(session_, &alpn, 1, GNUTLS_ALPN_MANDATORY);
    // The chain is verified against the CA during the handshake, and the name when dialing
    // one (as BoringSSL does for quiche); an IP's SAN and the CA pin are checked in JS.
    Napi::Value name = o.Get("serverName");
    if (name.IsString()) {
      server_name_ = name.As<Napi::String>().Utf8Value();
      gnutls_server_name_set(session_, GNUTLS_NAME_DNS, server_name_.data(), server_name_.size());
      gnutls_session_set_verify_cert(session_, server_name_.c_str(), 0);
    } else {
      gnutls_session_set_verify_cert(session_, nullptr, 0);
    }
  }

  void InitConn(Napi::Env env, Napi::Object o) {
    ngtcp2_callbacks cb{};
    cb.client_initial = ngtcp2_crypto_client_initial_cb;
    cb.recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
    cb.encrypt = ngtcp2_crypto_encrypt_cb;
    cb.decrypt = ngtcp2_crypto_decrypt_cb;
    cb.hp_mask = ngtcp2_crypto_hp_mask_cb;
    cb.recv_retry = ngtcp2_crypto_recv_retry_cb;
    cb.update_key = ngtcp2_crypto_update_key_cb;
    cb.delete_crypto_aead_ctx = ngtcp2_crypto_delete_crypto_aead_ctx_cb;
    cb.delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
    cb.get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
    cb.version_negotiation = ngtcp2_crypto_version_negotiation_cb;
    cb.rand = [](uint8_t* dest, size_t len, const ngtcp2_rand_ctx*) { gnutls_rnd(GNUTLS_RND_RANDOM, dest, len); };
    cb.get_new_connection_id = [](ngtcp2_conn*, ngtcp2_cid* cid, uint8_t* token, size_t cidlen, void*) {
      if (gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cidlen) != 0) return int(NGTCP2_ERR_CALLBACK_FAILURE);
      cid->datalen = cidlen;
      if (gnutls_rnd(GNUTLS_RND_RANDOM, token, NGTCP2_STATELESS_RESET_TOKENLEN) != 0) return int(NGTCP2_ERR_CALLBACK_FAILURE);
      return 0;
    };
    cb.handshake_completed = [](ngtcp2_conn*, void* user) {
      static_cast<QuicClient*>(user)->Event(kEvHandshake, 0, 0, nullptr, 0);
      return 0;
    };
    cb.handshake_confirmed = [](ngtcp2_conn*, void* user) {
      auto* self = static_cast<QuicClient*>(user);
      self->confirmed_ = true;
      if (self->close_pending_) self->ScheduleFlush();
      return 0;
    };
    cb.recv_stream_data = &QuicClient::OnStreamData;
    cb.acked_stream_data_offset = &QuicClient::OnAcked;
    cb.stream_close = &QuicClient::OnStreamClose;
    cb.stream_reset = [](ngtcp2_conn*, int64_t id, uint64_t, uint64_t code, void* user, void*) {
      static_cast<QuicClient*>(user)->EventCode(kEvReset, id, code);
      return 0;
    };
    cb.stream_stop_sending = [](ngtcp2_conn*, int64_t id, uint64_t code, void* user, void*) {
      auto* self = static_cast<QuicClient*>(user);
      if (Stream* s = self->Find(id)) s->write_closed = true;
      self->EventCode(kEvStopSending, id, code);
      return 0;
    };
    cb.extend_max_local_streams_bidi = [](ngtcp2_conn*, uint64_t, void* user) {
      static_cast<QuicClient*>(user)->Event(kEvStreamsAvailable, 0, 0, nullptr, 0);
      return 0;
    };
    cb.extend_max_stream_data = [](ngtcp2_conn*, int64_t id, uint64_t, void* user, void*) {
      auto* self = static_cast<QuicClient*>(user);
      if (Stream* s = self->Find(id)) self->Enqueue(s);
      return 0;
    };
    cb.recv_datagram = [](ngtcp2_conn*, uint32_t, const uint8_t* data, size_t len, void* user) {
      static_cast<QuicClient*>(user)->Event(kEvDatagram, 0, 0, data, len);
      return 0;
    };
    cb.recv_stateless_reset = [](ngtcp2_conn*, const ngtcp2_pkt_stateless_reset*, void* user) {
      static_cast<QuicClient*>(user)->stateless_reset_ = true;
      return 0;
    };

    ngtcp2_cid dcid, scid;
    // 20-byte IDs as the quiche client uses: the edge routes short headers by a 20-byte slice.
    dcid.datalen = 20;
    scid.datalen = 20;
    gnutls_rnd(GNUTLS_RND_RANDOM, dcid.data, dcid.datalen);
    gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen);

    ngtcp2_settings settings;
    ngtcp2_settings_default(&settings);
    settings.initial_ts = Now();
    std::string cc = o.Get("congestionControl").As<Napi::String>().Utf8Value();
    settings.cc_algo = cc == "reno"   ? NGTCP2_CC_ALGO_RENO
                       : cc == "bbr"  ? NGTCP2_CC_ALGO_BBR
                       : cc == "bbr2" ? NGTCP2_CC_ALGO_BBR2
                                      : NGTCP2_CC_ALGO_CUBIC;
    settings.max_tx_udp_payload_size = max_payload_;
    // Full-size packets from the start (the peer's max_udp_payload_size still caps them) and
    // no path MTU probing: the payload size is chosen for the path by the caller, as for quiche.
    settings.no_tx_udp_payload_size_shaping = 1;
    settings.no_pmtud = 1;
    settings.max_window = uint64_t(o.Get("maxConnectionWindow").As<Napi::Number>().Int64Value());
    settings.max_stream_window = uint64_t(o.Get("maxStreamWindow").As<Napi::Number>().Int64Value());
    settings.handshake_timeout = UINT64_MAX;  // the dialer's own timeout applies
    if (getenv("OXY_NGTCP2_LOG")) settings.log_printf = &LogPrintf;  // ngtcp2's own trace, to stderr

    ngtcp2_transport_params params;
    ngtcp2_transport_params_default(&params);
    uint64_t stream_window = uint64_t(o.Get("initialMaxStreamData").As<Napi::Number>().Int64Value());
    params.initial_max_data = uint64_t(o.Get("initialMaxData").As<Napi::Number>().Int64Value());
    params.initial_max_stream_data_bidi_local = stream_window;
    params.initial_max_stream_data_bidi_remote = stream_window;
    params.initial_max_stream_data_uni = 0;
    params.initial_max_streams_bidi = uint64_t(o.Get("maxConcurrentStreams").As<Napi::Number>().Int64Value());
    params.initial_max_streams_uni = 0;
    params.max_idle_timeout = uint64_t(o.Get("idleTimeoutMs").As<Napi::Number>().Int64Value()) * NGTCP2_MILLISECONDS;
    params.max_udp_payload_size = o.Has("maxRecvUdpPayloadSize") ? o.Get("maxRecvUdpPayloadSize").As<Napi::Number>().Uint32Value() : max_payload_;
    params.max_datagram_frame_size = 65535;
    params.disable_active_migration = 1;

    ngtcp2_path path = {{reinterpret_cast<sockaddr*>(&local_addr_), local_len_},
                        {reinterpret_cast<sockaddr*>(&remote_addr_), remote_len_},
                        nullptr};
    int rv = ngtcp2_conn_client_new(&conn_, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb, &settings, &params, nullptr, this);
    if (rv != 0) throw Napi::Error::New(env, std::string("ngtcp2_conn_client_new: ") + ngtcp2_strerror(rv));
    ngtcp2_conn_set_tls_native_handle(conn_, session_);
    keep_alive_ = uint64_t(o.Get("keepAliveMs").As<Napi::Number>().Int64Value()) * NGTCP2_MILLISECONDS;
    if (keep_alive_ > 0) ngtcp2_conn_set_keep_alive_timeout(conn_, keep_alive_);
  }

  // ------------------------------------------------------------------ events to JS

  void Event(uint8_t type, uint8_t flag, int64_t id, const uint8_t* data, size_t len) {
    uint8_t head[16] = {type, flag, 0, 0};
    uint32_t l = uint32_t(len);
    memcpy(head + 4, &l, 4);
    double d = double(id);
    memcpy(head + 8, &d, 8);
    // insert, not resize: a resize zeroes the bytes the payload then overwrites.
    events_.insert(events_.end(), head, head + 16);
    if (len) events_.insert(events_.end(), data, data + len);
  }

  void EventCode(uint8_t type, int64_t id, uint64_t code) {
    double d = double(code);
    Event(type, 0, id, reinterpret_cast<const uint8_t*>(&d), 8);
  }

  void CloseEvent(uint8_t kind, uint64_t code, const uint8_t* reason, size_t reason_len) {
    std::vector<uint8_t> payload(8 + reason_len);
    double d = double(code);
    memcpy(payload.data(), &d, 8);
    if (reason_len) memcpy(payload.data() + 8, reason, reason_len);
    Event(kEvClosed, kind, 0, payload.data(), payload.size());
  }

  // Hands the batch to JS (one call, one Buffer). JS may call back into us meanwhile.
  void Deliver() {
    if (events_.empty() || on_events_.IsEmpty()) return;
    auto* batch = new std::vector<uint8_t>();
    batch->swap(events_);
    Napi::Env env = env_;
    Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::New(env, batch->data(), batch->size(),
                                                           [](Napi::Env, uint8_t*, std::vector<uint8_t>* v) { delete v; }, batch);
    in_js_++;
    InvokeCallback(env, on_events_, *context_, {buf});
    in_js_--;
  }

  // ------------------------------------------------------------------ ngtcp2 callbacks

  static int OnStreamData(ngtcp2_conn* conn, uint32_t flags, int64_t id, uint64_t, const uint8_t* data, size_t len, void* user, void*) {
    auto* self = static_cast<QuicClient*>(user);
    bool fin = (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0;
    Stream* s = self->Find(id);
    if (!s) s = self->Create(id);
    self->Event(kEvData, fin ? 1 : 0, id, data, len);
    // Credit goes back at once unless the reader paused; then on resume (setReadPaused).
    if (s->read_paused) {
      s->owed_credit += len;
    } else {
      ngtcp2_conn_extend_max_stream_offset(conn, id, len);
    }
    ngtcp2_conn_extend_max_offset(conn, len);
    return 0;
  }

  static int OnAcked(ngtcp2_conn*, int64_t id, uint64_t offset, uint64_t len, void* user, void*) {
    auto* self = static_cast<QuicClient*>(user);
    Stream* s = self->Find(id);
    if (!s) return 0;
    uint64_t upto = offset + len;
    while (!s->chunks.empty() && s->base + s->chunks.front().length <= upto) {
      s->base += s->chunks.front().length;
      s->chunks.pop_front();
    }
    return 0;
  }

  static int OnStreamClose(ngtcp2_conn*, uint32_t, int64_t id, uint64_t, void* user, void*) {
    auto* self = static_cast<QuicClient*>(user);
    auto it = self->streams_.find(id);
    if (it != self->streams_.end()) {
      it->second->write_closed = true;
      if (!it->second->in_queue) self->streams_.erase(it);
      else self->dead_.push_back(id);
    }
    self->Event(kEvStreamClosed, 0, id, nullptr, 0);
    return 0;
  }

  Stream* Find(int64_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
  }

  Stream* Create(int64_t id) {
    auto s = std::make_unique<Stream>();
    s->id = id;
    Stream* raw = s.get();
    streams_[id] = std::move(s);
    return raw;
  }

  void Enqueue(Stream* s) {
    if (s->in_queue || !s->HasWork()) return;
    s->in_queue = true;
    sendq_.push_back(s->id);
    ScheduleFlush();
  }

  // ------------------------------------------------------------------ JS methods

  bool Usable() const { return conn_ != nullptr && !closed_; }

  Napi::Value JsOpenStream(const Napi::CallbackInfo& info) {
    if (!Usable() || !ngtcp2_conn_get_handshake_completed(conn_)) return Napi::Number::New(info.Env(), -1);
    int64_t id;
    int rv = ngtcp2_conn_open_bidi_stream(conn_, &id, nullptr);
    if (rv != 0) return Napi::Number::New(info.Env(), -1);
    Create(id);
    return Napi::Number::New(info.Env(), double(id));
  }

  // write(id, buffer, fin) → unsent bytes of the stream, or -1 when it takes no more.
  Napi::Value JsWrite(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int64_t id = info[0].As<Napi::Number>().Int64Value();
    bool fin = info[2].ToBoolean();
    Stream* s = Usable() ? Find(id) : nullptr;
    if (!s || s->write_closed || s->fin) return Napi::Number::New(env, -1);
    ByteView bytes{nullptr, 0};
    if (!info[1].IsUndefined() && !GetBytes(info[1], &bytes)) throw Napi::TypeError::New(env, "write: bytes expected");
    if (bytes.length > 0) {
      Chunk c{std::unique_ptr<uint8_t[]>(new uint8_t[bytes.length]), bytes.length};
      memcpy(c.data.get(), bytes.data, bytes.length);
      s->chunks.push_back(std::move(c));
      s->total += bytes.length;
    }
    if (fin) s->fin = true;
    Enqueue(s);
    uint64_t unsent = s->total - s->sent;
    if (unsent > kStreamHighWater) s->want_writable = true;
    return Napi::Number::New(env, double(unsent));
  }

  // shutdownStream(id, code): RESET_STREAM + STOP_SENDING; the stream is forgotten.
  Napi::Value JsShutdownStream(const Napi::CallbackInfo& info) {
    int64_t id = info[0].As<Napi::Number>().Int64Value();
    uint64_t code = uint64_t(info[1].As<Napi::Number>().Int64Value());
    if (Usable()) {
      if (Stream* s = Find(id)) {
        s->write_closed = true;
        ngtcp2_conn_shutdown_stream(conn_, id, code);
        ScheduleFlush();
      }
    }
    return info.Env().Undefined();
  }

  Napi::Value JsSetReadPaused(const Napi::CallbackInfo& info) {
    int64_t id = info[0].As<Napi::Number>().Int64Value();
    bool paused = info[1].ToBoolean();
    Stream* s = Usable() ? Find(id) : nullptr;
    if (s) {
      s->read_paused = paused;
      if (!paused && s->owed_credit > 0) {
        ngtcp2_conn_extend_max_stream_offset(conn_, id, s->owed_credit);
        s->owed_credit = 0;
        ScheduleFlush();
      }
    }
    return info.Env().Undefined();
  }

  Napi::Value JsSendDatagram(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ByteView bytes;
    if (!GetBytes(info[0], &bytes)) throw Napi::TypeError::New(env, "sendDatagram: bytes expected");
    if (!Usable() || datagrams_.size() >= 4096) return Napi::Boolean::New(env, false);
    datagrams_.emplace_back(bytes.data, bytes.data + bytes.length);
    ScheduleFlush();
    return Napi::Boolean::New(env, true);
  }

  // closeConnection(code, reason, transport): what streams queued goes first, then
  // CONNECTION_CLOSE (an application error, or a transport one such as a TLS alert 0x1XX).
  Napi::Value JsCloseConnection(const Napi::CallbackInfo& info) {
    if (Usable() && !close_pending_) {
      close_pending_ = true;
      close_code_ = uint64_t(info[0].As<Napi::Number>().Int64Value());
      close_reason_ = info[1].As<Napi::String>().Utf8Value();
      close_transport_ = info[2].ToBoolean();
      close_deadline_ = Now() + (ngtcp2_conn_get_handshake_completed(conn_) ? 3 * ngtcp2_conn_get_pto(conn_) : 0);
      ScheduleFlush();
    }
    return info.Env().Undefined();
  }

  // An ack-eliciting packet now (a PING: ngtcp2 0.12 sends one when the keep-alive timer is due).
  Napi::Value JsProbe(const Napi::CallbackInfo& info) {
    if (Usable()) {
      ngtcp2_conn_set_keep_alive_timeout(conn_, 1);
      probing_ = true;
      ScheduleFlush();
    }
    return info.Env().Undefined();
  }

  Napi::Value JsInfo(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object out = Napi::Object::New(env);
    if (!conn_) return out;
    ngtcp2_conn_stat st;
    ngtcp2_conn_get_conn_stat(conn_, &st);
    out.Set("rttMs", double(st.smoothed_rtt) / NGTCP2_MILLISECONDS);
    out.Set("cwnd", double(st.cwnd));
    out.Set("sent", double(packets_sent_));
    out.Set("recv", double(packets_recv_));
    out.Set("localAddress", SockaddrToObject(env, local_addr_));
    const ngtcp2_transport_params* remote = ngtcp2_conn_get_remote_transport_params(conn_);
    size_t dgram = 0;
    if (remote && remote->max_datagram_frame_size > 0) {
      // Room in one packet: the short header (1 + 20-byte DCID + 4 packet number), AEAD tag,
      // DATAGRAM frame type and length.
      size_t payload = ngtcp2_conn_get_path_max_tx_udp_payload_size(conn_);
      size_t room = payload > 64 ? payload - 1 - 20 - 4 - 16 - 1 - 4 : 0;
      dgram = std::min<size_t>(room, remote->max_datagram_frame_size > 5 ? remote->max_datagram_frame_size - 5 : 0);
    }
    out.Set("maxDatagramSize", double(dgram));
    const gnutls_datum_t* alpn_sel = nullptr;
    gnutls_datum_t sel;
    if (session_ && gnutls_alpn_get_selected_protocol(session_, &sel) == 0) alpn_sel = &sel;
    out.Set("alpn", alpn_sel ? Napi::String::New(env, reinterpret_cast<const char*>(alpn_sel->data), alpn_sel->size) : Napi::String::New(env, ""));
    out.Set("sendErrors", double(send_errors_));
    out.Set("sendDropped", double(send_dropped_));
    out.Set("streams", double(streams_.size()));
    return out;
  }

  Napi::Value JsPeerCertificates(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array out = Napi::Array::New(env);
    if (!session_) return out;
    unsigned n = 0;
    const gnutls_datum_t* certs = gnutls_certificate_get_peers(session_, &n);
    for (unsigned i = 0; certs && i < n; i++) out.Set(i, Napi::Buffer<uint8_t>::Copy(env, certs[i].data, certs[i].size));
    return out;
  }

  Napi::Value JsStreamsLeft(const Napi::CallbackInfo& info) {
    uint64_t left = Usable() && ngtcp2_conn_get_handshake_completed(conn_) ? ngtcp2_conn_get_streams_bidi_left(conn_) : 0;
    return Napi::Number::New(info.Env(), double(left));
  }

  // ------------------------------------------------------------------ loop callbacks

  void OnPoll(int status, int events) override {
    if (!Usable()) return;
    // An error (ICMP unreachable on the connected socket) stops libuv's poll: the read below
    // collects it (ECONNREFUSED), then watching starts again.
    ReadPackets();
    if (status < 0 && Usable() && fd_ >= 0) Watch(env_, fd_, UV_READABLE);
    if (Usable()) Flush();
    Deliver();
    MaybeFinalize();
  }

  void ReadPackets() {
    std::vector<mmsghdr> msgs(kRecvBatch);
    std::vector<iovec> iovs(kRecvBatch);
    size_t slot = size_t(max_payload_ + 64);
    bool any = false;
    for (int rounds = 0; rounds < 16 && Usable(); rounds++) {
      for (size_t i = 0; i < kRecvBatch; i++) {
        iovs[i] = {rx_.data() + i * slot, slot};
        memset(&msgs[i].msg_hdr, 0, sizeof(msghdr));
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
      }
      int n = recvmmsg(fd_, msgs.data(), kRecvBatch, MSG_DONTWAIT, nullptr);
      if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          send_errors_++;
          EventCode(kEvSendError, 0, uint64_t(errno));
        }
        break;
      }
      uint64_t ts = Now();
      for (int i = 0; i < n && Usable(); i++) {
        if (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) continue;
        any = true;
        packets_recv_++;
        ngtcp2_path path = {{reinterpret_cast<sockaddr*>(&local_addr_), local_len_},
                            {reinterpret_cast<sockaddr*>(&remote_addr_), remote_len_},
                            nullptr};
        ngtcp2_pkt_info pi{};
        int rv = ngtcp2_conn_read_pkt(conn_, &path, &pi, rx_.data() + size_t(i) * slot, msgs[i].msg_len, ts);
        if (rv != 0) HandleReadError(rv);
      }
      if (size_t(n) < kRecvBatch) break;
    }
    if (any) Event(kEvAnswered, 0, 0, nullptr, 0);
  }

  void HandleReadError(int rv) {
    switch (rv) {
      case NGTCP2_ERR_DRAINING: {
        if (stateless_reset_) {
          CloseEvent(kCloseStatelessReset, 0, nullptr, 0);
        } else {
          ngtcp2_connection_close_error ccerr;
          ngtcp2_conn_get_connection_close_error(conn_, &ccerr);
          bool app = ccerr.type == NGTCP2_CONNECTION_CLOSE_ERROR_CODE_TYPE_APPLICATION;
          CloseEvent(app ? kClosePeerApp : kClosePeerTransport, ccerr.error_code, ccerr.reason, ccerr.reasonlen);
        }
        Finish();
        return;
      }
      case NGTCP2_ERR_DROP_CONN:
        CloseEvent(kCloseLocalError, NGTCP2_INTERNAL_ERROR, nullptr, 0);
        Finish();
        return;
      case NGTCP2_ERR_CLOSING:
        return;
      default:
        break;
    }
    // Anything else is fatal for the connection (the header says: send CONNECTION_CLOSE).
    ngtcp2_connection_close_error ccerr;
    ngtcp2_connection_close_error_default(&ccerr);
    std::string reason = ngtcp2_strerror(rv);
    if (rv == NGTCP2_ERR_CRYPTO) {
      uint8_t alert = ngtcp2_conn_get_tls_alert(conn_);
      // GnuTLS refused the edge's certificate: say why, with the alert BoringSSL would send.
      unsigned status = gnutls_session_get_verify_cert_status(session_);
      if (status == 0 && gnutls_certificate_verify_peers3(session_, server_name_.empty() ? nullptr : server_name_.c_str(), &status) != 0) status = 0;
      if (status != 0) {
        alert = (status & GNUTLS_CERT_SIGNER_NOT_FOUND) ? 48 : (status & GNUTLS_CERT_EXPIRED) ? 45 : 42;
        gnutls_datum_t text;
        if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) == 0) {
          reason.assign(reinterpret_cast<const char*>(text.data), text.size);
          gnutls_free(text.data);
        }
      }
      ngtcp2_connection_close_error_set_transport_error_tls_alert(&ccerr, alert, nullptr, 0);
    } else {
      ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, rv, nullptr, 0);
    }
    SendClose(ccerr);
    CloseEvent(kCloseLocalError, ccerr.error_code, reinterpret_cast<const uint8_t*>(reason.data()), reason.size());
    Finish();
  }

  static void OnTimer(uv_timer_t* handle) {
    auto* self = static_cast<QuicClient*>(handle->data);
    if (!self || !self->Usable()) return;
    Napi::HandleScope scope(self->env_);
    int rv = ngtcp2_conn_handle_expiry(self->conn_, Now());
    if (rv == NGTCP2_ERR_IDLE_CLOSE || rv == NGTCP2_ERR_HANDSHAKE_TIMEOUT) {
      bool established = ngtcp2_conn_get_handshake_completed(self->conn_);
      self->CloseEvent(established ? kCloseIdle : kCloseHandshakeTimeout, 0, nullptr, 0);
      self->Finish();
    } else if (rv != 0) {
      ngtcp2_connection_close_error ccerr;
      ngtcp2_connection_close_error_default(&ccerr);
      ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, rv, nullptr, 0);
      self->SendClose(ccerr);
      self->CloseEvent(kCloseLocalError, ccerr.error_code, nullptr, 0);
      self->Finish();
    } else {
      self->Flush();
    }
    self->Deliver();
    self->MaybeFinalize();
  }

  static void OnCheck(uv_check_t* handle) {
    auto* self = static_cast<QuicClient*>(handle->data);

    if (!self) return;
    uv_check_stop(self->check_);
    uv_idle_stop(self->idle_);
    self->flush_scheduled_ = false;
    if (!self->Usable()) return;
    Napi::HandleScope scope(self->env_);
    self->Flush();
    self->Deliver();
    self->MaybeFinalize();
  }

  void ScheduleFlush() {
    if (flush_scheduled_ || !check_ || in_flush_) return;
    flush_scheduled_ = true;
    uv_check_start(check_, &QuicClient::OnCheck);
    uv_idle_start(idle_, [](uv_idle_t*) {});
  }

  // ------------------------------------------------------------------ sending

  // Writes everything ngtcp2 lets out now (data, ACKs, datagrams, close), then re-arms the timer.
  void Flush() {
    if (!Usable()) return;
    in_flush_ = true;
    flush_gen_++;
    uint64_t ts = Now();
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    size_t npkts = 0;
    size_t total_pkts = 0;
    bool fatal = false;
    std::vector<int64_t> requeue;
    while (total_pkts < kMaxPacketsPerFlush) {
      uint8_t* dest = tx_.data() + npkts * max_payload_;
      ngtcp2_ssize nwrite = 0;
      bool dgram_tried = false;
      for (;;) {
        ngtcp2_pkt_info pi{};
        if (!datagrams_.empty() && !dgram_tried) {
          dgram_tried = true;
          std::vector<uint8_t>& d = datagrams_.front();
          ngtcp2_vec v = {d.data(), d.size()};
          int accepted = 0;
          nwrite = ngtcp2_conn_writev_datagram(conn_, &ps.path, &pi, dest, max_payload_, &accepted, NGTCP2_WRITE_DATAGRAM_FLAG_MORE, 0, &v, 1, ts);
          if (accepted) {
            datagrams_.pop_front();
            dgram_tried = false;  // the next one may fit in the same packet
          }
          if (nwrite == NGTCP2_ERR_WRITE_MORE) continue;
          if (nwrite < 0) {
            if (nwrite == NGTCP2_ERR_INVALID_ARGUMENT || nwrite == NGTCP2_ERR_INVALID_STATE) {
              if (!accepted && !datagrams_.empty()) datagrams_.pop_front();  // too large or not allowed: dropped
              continue;
            }
            fatal = true;
            break;
          }
          break;  // a packet is complete (or nothing could be written)
        }
        Stream* s = NextSendable(requeue);
        ngtcp2_vec vecs[16];
        size_t nvec = 0;
        uint32_t flags = NGTCP2_WRITE_STREAM_FLAG_MORE;
        int64_t id = -1;
        if (s) {
          id = s->id;
          nvec = Vecs(s, vecs, 16);
          uint64_t offered = 0;
          for (size_t i = 0; i < nvec; i++) offered += vecs[i].len;
          if (s->fin && s->sent + offered == s->total) flags |= NGTCP2_WRITE_STREAM_FLAG_FIN;
        }
        ngtcp2_ssize datalen = -1;
        nwrite = ngtcp2_conn_writev_stream(conn_, &ps.path, &pi, dest, max_payload_, &datalen, flags, id, vecs, nvec, ts);
        if (s && datalen >= 0) Advance(s, uint64_t(datalen), (flags & NGTCP2_WRITE_STREAM_FLAG_FIN) != 0);
        if (nwrite == NGTCP2_ERR_WRITE_MORE) {
          if (s && s->HasWork()) requeue.push_back(s->id);
          continue;
        }
        if (nwrite == NGTCP2_ERR_STREAM_DATA_BLOCKED) {
          s->blocked_gen = flush_gen_;
          requeue.push_back(s->id);
          continue;
        }
        if (nwrite == NGTCP2_ERR_STREAM_SHUT_WR || nwrite == NGTCP2_ERR_STREAM_NOT_FOUND) {
          if (s) s->write_closed = true;
          continue;
        }
        if (nwrite < 0) {
          fatal = true;
          break;
        }
        if (s && s->HasWork()) requeue.push_back(s->id);
        break;
      }
      if (fatal) {
        ngtcp2_connection_close_error ccerr;
        ngtcp2_connection_close_error_default(&ccerr);
        ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, int(nwrite), nullptr, 0);
        SendPackets(npkts);
        npkts = 0;
        SendClose(ccerr);
        CloseEvent(kCloseLocalError, ccerr.error_code, reinterpret_cast<const uint8_t*>(ngtcp2_strerror(int(nwrite))), strlen(ngtcp2_strerror(int(nwrite))));
        Finish();
        in_flush_ = false;
        return;
      }
      if (nwrite == 0) break;
      tx_len_[npkts++] = size_t(nwrite);
      total_pkts++;
      if (npkts == kMaxPacketsPerSend) {
        SendPackets(npkts);
        npkts = 0;
      }
    }
    SendPackets(npkts);
    ngtcp2_conn_update_pkt_tx_time(conn_, ts);
    for (int64_t id : requeue) {
      if (Stream* s = Find(id)) Enqueue(s);
    }
    for (int64_t id : dead_) {
      Stream* s = Find(id);
      if (s && !s->in_queue) streams_.erase(id);
    }
    dead_.clear();
    in_flush_ = false;
    if (probing_) {
      probing_ = false;
      ngtcp2_conn_set_keep_alive_timeout(conn_, keep_alive_);  // 0 is off (UINT64_MAX would overflow its expiry)
    }
    // Before HANDSHAKE_DONE ngtcp2 coalesces the close behind a Handshake packet, and quiche drops
    // the whole datagram once it has discarded its Handshake keys: wait (briefly) for confirmation.
    if (close_pending_ && (confirmed_ || ts >= close_deadline_)) {
      ngtcp2_connection_close_error ccerr;
      ngtcp2_connection_close_error_default(&ccerr);
      auto* reason = reinterpret_cast<const uint8_t*>(close_reason_.data());
      if (close_transport_) {
        ngtcp2_connection_close_error_set_transport_error(&ccerr, close_code_, reason, close_reason_.size());
      } else {
        ngtcp2_connection_close_error_set_application_error(&ccerr, close_code_, reason, close_reason_.size());
      }
      SendClose(ccerr);
      Finish();
      return;
    }
    // Cap reached with more to send: go on next turn.
    if (total_pkts >= kMaxPacketsPerFlush) ScheduleFlush();
    ArmTimer();
  }

  // The next stream with data this flush can still send, round robin.
  Stream* NextSendable(std::vector<int64_t>& requeue) {
    while (!sendq_.empty()) {
      int64_t id = sendq_.front();
      sendq_.pop_front();
      Stream* s = Find(id);
      if (!s) continue;
      s->in_queue = false;
      if (!s->HasWork()) continue;
      if (s->blocked_gen == flush_gen_) {
        requeue.push_back(id);
        continue;
      }
      return s;
    }
    return nullptr;
  }

  static size_t Vecs(Stream* s, ngtcp2_vec* out, size_t max) {
    uint64_t pos = s->base;
    size_t n = 0;
    for (auto& c : s->chunks) {
      uint64_t end = pos + c.length;
      if (end > s->sent) {
        uint64_t skip = s->sent > pos ? s->sent - pos : 0;
        out[n].base = c.data.get() + skip;
        out[n].len = size_t(c.length - skip);
        if (++n == max) break;
      }
      pos = end;
    }
    return n;
  }

  void Advance(Stream* s, uint64_t n, bool fin_offered) {
    s->sent += n;
    if (fin_offered && s->sent == s->total) s->fin_sent = true;
    if (s->want_writable && s->total - s->sent <= kStreamHighWater / 2) {
      s->want_writable = false;
      Event(kEvWritable, 0, s->id, nullptr, 0);
    }
  }

  void SendPackets(size_t n) {
    if (n == 0 || fd_ < 0) return;
    mmsghdr msgs[kMaxPacketsPerSend];
    iovec iovs[kMaxPacketsPerSend];
    for (size_t i = 0; i < n; i++) {
      iovs[i] = {tx_.data() + i * max_payload_, tx_len_[i]};
      memset(&msgs[i].msg_hdr, 0, sizeof(msghdr));
      msgs[i].msg_hdr.msg_iov = &iovs[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    size_t done = 0;
    for (int attempts = 0; done < n && attempts < 64; attempts++) {
      int rc = sendmmsg(fd_, msgs + done, unsigned(n - done), 0);
      if (rc < 0) {
        if (errno == EINTR) continue;
        // Full socket buffer: the packets are lost, QUIC's loss recovery resends them.
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          send_errors_++;
          EventCode(kEvSendError, 0, uint64_t(errno));
        } else {
          send_dropped_++;
        }
        done++;
        continue;
      }
      done += size_t(rc);
      packets_sent_ += uint64_t(rc);
    }
  }

  void SendClose(const ngtcp2_connection_close_error& ccerr) {
    if (!conn_ || ngtcp2_conn_is_in_closing_period(conn_) || ngtcp2_conn_is_in_draining_period(conn_)) return;
    ngtcp2_path_storage ps;
    ngtcp2_path_storage_zero(&ps);
    ngtcp2_pkt_info pi{};
    ngtcp2_ssize n = ngtcp2_conn_write_connection_close(conn_, &ps.path, &pi, tx_.data(), max_payload_, &ccerr, Now());
    if (n > 0) {
      tx_len_[0] = size_t(n);
      SendPackets(1);
    }
  }

  void ArmTimer() {
    if (!Usable()) return;
    uint64_t expiry = ngtcp2_conn_get_expiry(conn_);
    if (close_pending_ && close_deadline_ < expiry) expiry = close_deadline_;
    if (expiry == UINT64_MAX) {
      uv_timer_stop(timer_);
      return;
    }
    uint64_t now = Now();
    uint64_t ms = expiry <= now ? 0 : (expiry - now + NGTCP2_MILLISECONDS - 1) / NGTCP2_MILLISECONDS;
    uv_timer_start(timer_, &QuicClient::OnTimer, ms, 0);
  }

  // ------------------------------------------------------------------ teardown

  // The connection is over (the close event is queued): stop I/O; memory goes when JS lets go.
  void Finish() {
    if (closed_) return;
    closed_ = true;
    finish_pending_ = true;
  }

  void MaybeFinalize() {
    if (!finish_pending_ || in_js_ > 0) return;
    finish_pending_ = false;
    Shutdown();
  }

  void Shutdown() override {
    closed_ = true;
    Teardown();
    PolledWrap<QuicClient>::Shutdown();
  }

  void ResetCallbacks() override { on_events_.Reset(); }

  void Teardown() {
    if (timer_) {
      uv_timer_stop(timer_);
      timer_->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
      timer_ = nullptr;
    }
    if (check_) {
      uv_check_stop(check_);
      check_->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(check_), [](uv_handle_t* h) { delete reinterpret_cast<uv_check_t*>(h); });
      check_ = nullptr;
    }
    if (idle_) {
      uv_idle_stop(idle_);
      idle_->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(idle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_idle_t*>(h); });
      idle_ = nullptr;
    }
    if (conn_) {
      ngtcp2_conn_del(conn_);
      conn_ = nullptr;
    }
    if (session_) {
      gnutls_deinit(session_);
      session_ = nullptr;
    }
    if (cred_) {
      gnutls_certificate_free_credentials(cred_);
      cred_ = nullptr;
    }
    streams_.clear();
    sendq_.clear();
    datagrams_.clear();
  }

  Napi::Env env_{nullptr};
  Napi::FunctionReference on_events_;
  gnutls_certificate_credentials_t cred_ = nullptr;
  gnutls_session_t session_ = nullptr;
  ngtcp2_crypto_conn_ref conn_ref_{};
  ngtcp2_conn* conn_ = nullptr;
  std::string alpn_;
  std::string server_name_;
  sockaddr_storage remote_addr_{};
  socklen_t remote_len_ = 0;
  sockaddr_storage local_addr_{};
  socklen_t local_len_ = 0;
  uint32_t max_payload_ = 1350;
  uint64_t keep_alive_ = 0;

  uv_timer_t* timer_ = nullptr;
  uv_check_t* check_ = nullptr;
  uv_idle_t* idle_ = nullptr;
  bool flush_scheduled_ = false;
  bool in_flush_ = false;
  uint64_t flush_gen_ = 0;
  int in_js_ = 0;
  bool closed_ = false;
  bool finish_pending_ = false;
  bool stateless_reset_ = false;
  bool probing_ = false;
  bool close_pending_ = false;
  bool close_transport_ = false;
  bool confirmed_ = false;
  uint64_t close_deadline_ = 0;
  uint64_t close_code_ = 0;
  std::string close_reason_;

  std::unordered_map<int64_t, std::unique_ptr<Stream>> streams_;
  std::deque<int64_t> sendq_;
  std::vector<int64_t> dead_;
  std::deque<std::vector<uint8_t>> datagrams_;
  std::vector<uint8_t> events_;
  std::vector<uint8_t> rx_;
  std::vector<uint8_t> tx_;
  std::vector<size_t> tx_len_;
  uint64_t packets_sent_ = 0;
  uint64_t packets_recv_ = 0;
  uint64_t send_errors_ = 0;
  uint64_t send_dropped_ = 0;
};

}  // namespace

Napi::Function InitQuicClient(Napi::Env env) { return QuicClient::Init(env); }

}  // namespace oxy
