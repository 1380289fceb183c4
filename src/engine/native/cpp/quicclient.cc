// QuicClient: one QUIC client connection (quic-core.h) with its own connected UDP socket,
// driven entirely on the loop thread: packets never reach JS. See
// src/engine/native/quic.ts for the JS side and docs/decisions.md "QUIC on ngtcp2".
//
// Rhythm: a readable socket (uv_poll) is drained with recvmmsg and every datagram fed to
// ngtcp2; ngtcp2's one timer is a uv_timer; JS writes only queue bytes and arm a uv_check (plus
// a uv_idle so the loop does not block before it runs), so one flush per loop turn writes every
// stream's data, several streams per packet (NGTCP2_WRITE_STREAM_FLAG_MORE), and sends them with
// one sendmmsg. What JS must hear (stream bytes, FINs, resets, credit, datagrams, the close) is
// packed into one Buffer handed to a single JS callback at the end of each of those callbacks.
#include "common.h"
#include "polled.h"
#include "quic-core.h"
#include "quic-pump-js.h"

#include <gnutls/crypto.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace oxy {

namespace {

using namespace quic;

class QuicClient : public PolledWrap<QuicClient>, public Host {
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
        InstanceMethod("attachPump", &QuicClient::JsAttachPump),
        InstanceMethod("pumpWrite", &QuicClient::JsPumpWrite),
        InstanceMethod("closePump", &QuicClient::JsClosePump),
        InstanceMethod("armPumpHeads", &QuicClient::JsArmPumpHeads),
        InstanceMethod("pumpRoute", &QuicClient::JsPumpRoute),
        InstanceMethod("shutPump", &QuicClient::JsShutPump),
        InstanceMethod("resetPump", &QuicClient::JsResetPump),
        InstanceMethod("dial", &QuicClient::JsDial),
        InstanceMethod("closeDial", &QuicClient::JsCloseDial),
        InstanceMethod("takeDial", &QuicClient::JsTakeDial),
        InstanceMethod("admitOpen", &QuicClient::JsAdmitOpen),
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
    ConnSettings settings = ConnSettings::FromJs(o);

    std::string remote = o.Get("remoteAddress").As<Napi::String>().Utf8Value();
    uint16_t port = uint16_t(o.Get("remotePort").As<Napi::Number>().Uint32Value());
    std::string local = o.Get("localAddress").As<Napi::String>().Utf8Value();
    int family = o.Get("family").As<Napi::Number>().Int32Value() == 6 ? AF_INET6 : AF_INET;
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

    int rv = gnutls_certificate_allocate_credentials(&cred_);
    if (rv != 0) throw Napi::Error::New(env, std::string("gnutls credentials: ") + gnutls_strerror(rv));
    std::string ca = o.Get("ca").As<Napi::String>().Utf8Value();
    gnutls_datum_t ca_datum = {reinterpret_cast<unsigned char*>(ca.data()), unsigned(ca.size())};
    rv = gnutls_certificate_set_x509_trust_mem(cred_, &ca_datum, GNUTLS_X509_FMT_PEM);
    if (rv <= 0) throw Napi::Error::New(env, std::string("QuicClient: no usable CA certificate: ") + (rv < 0 ? gnutls_strerror(rv) : "none found"));

    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    conn_ = std::make_unique<Conn>(this, 0, settings, loop);
    Napi::Value name = o.Get("serverName");
    std::string problem = conn_->InitTls(false, cred_, o.Get("alpn").As<Napi::String>().Utf8Value(), name.IsString() ? name.As<Napi::String>().Utf8Value() : "");
    if (problem.empty()) problem = conn_->InitClient(Path());
    if (!problem.empty()) throw Napi::Error::New(env, "QuicClient: " + problem);

    turn_.Init(loop, this, &QuicClient::OnCheck);
    soon_.Init(loop, this, [](void* owner) { static_cast<QuicClient*>(owner)->FlushNow(); });
    lazy_.Init(loop, this, &QuicClient::OnLazyTimer);
    rx_.Init(fd_, settings.LargestRecv(), settings.gro, false, 0);
    batch_.Init(settings.LargestSend(), settings.gso, settings.pmtud && SetDontFragment(fd_));
    SetWatch(env, UV_READABLE);
    conn_->scheduled = true;
    Schedule(conn_.get());
  }

  ~QuicClient() override { Teardown(); }

  // ------------------------------------------------------------------ Host

  void Emit(Conn*, uint8_t type, uint8_t flag, int64_t id, const uint8_t* data, size_t len) override { events_.Add(type, flag, double(id), data, len); }
  // Lazy records ride the next batch, or go on their own within kLazyMs (a scrape of the metrics
  // they feed should not wait for the next request).
  void EmitLazy(Conn*, uint8_t type, uint8_t flag, int64_t id, const uint8_t* data, size_t len) override {
    events_.Add(type, flag, double(id), data, len, true);
    lazy_.At(Now() + kLazyMs * NGTCP2_MILLISECONDS);  // unless armed earlier already
  }

  bool EmitLazyCount(Conn* c, uint8_t type, uint8_t flag, int64_t id, double value, LazySlot* slot, double add) override {
    return CountInto(events_, c, type, flag, id, value, slot, add);
  }

  void Schedule(Conn*) override { turn_.Arm(); }

  void FlushAt(Conn*, uint64_t ts) override { soon_.At(ts); }

  uint64_t BatchesTaken() const override { return events_.taken(); }

  uint8_t* TxSlot() override { return batch_.Slot(); }

  void TxPush(Conn* c, const ngtcp2_path& path, size_t len) override {
    if (batch_.Push(c, path, len)) TxSend();
  }

  // Connected: the kernel knows the destination.
  void TxSend() override { batch_.Send(fd_, true); }

  void Finished(Conn*) override {
    closed_ = true;
    finish_pending_ = true;
  }

  void AfterTimer(Conn*) override {
    TxSend();
    Napi::HandleScope scope(env_);
    Deliver();
    MaybeFinalize();
  }

 private:
  ngtcp2_path Path() {
    return {{reinterpret_cast<sockaddr*>(&local_addr_), local_len_}, {reinterpret_cast<sockaddr*>(&remote_addr_), remote_len_}, nullptr};
  }

  bool Usable() const { return conn_ && conn_->Usable() && !closed_; }

  static constexpr uint64_t kLazyMs = 20;

  static void OnLazyTimer(void* owner) {
    auto* self = static_cast<QuicClient*>(owner);
    if (!self->events_.has_lazy()) return;
    Napi::HandleScope scope(self->env_);
    self->Deliver(true);
    self->MaybeFinalize();
  }

  // Hands the batch to JS (one call, one Buffer). JS may call back into us meanwhile.
  void Deliver(bool lazy_too = false) {
    // Building the Buffer runs JS: not in an env that stopped (a worker being terminated).
    if (!(lazy_too ? events_.has_lazy() : !events_.empty()) || on_events_.IsEmpty() || !CanCallJs(env_)) return;
    Napi::Buffer<uint8_t> buf = events_.Take(env_);
    in_js_++;
    InvokeCallback(env_, on_events_, *context_, {buf});
    in_js_--;
  }

  // ------------------------------------------------------------------ JS methods

  Napi::Value JsOpenStream(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(Usable() ? conn_->OpenStream() : -1)); }

  // write(id, buffer, fin) → unsent bytes of the stream, or -1 when it takes no more.
  Napi::Value JsWrite(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ByteView bytes{nullptr, 0};
    if (!info[1].IsUndefined() && !GetBytes(info[1], &bytes)) throw Napi::TypeError::New(env, "write: bytes expected");
    if (!Usable()) return Napi::Number::New(env, -1);
    return Napi::Number::New(env, conn_->Write(info[0].As<Napi::Number>().Int64Value(), bytes.data, bytes.length, info[2].ToBoolean()));
  }

  // shutdownStream(id, code): RESET_STREAM + STOP_SENDING; the stream is forgotten.
  Napi::Value JsShutdownStream(const Napi::CallbackInfo& info) {
    if (Usable()) conn_->ShutdownStream(info[0].As<Napi::Number>().Int64Value(), uint64_t(info[1].As<Napi::Number>().Int64Value()));
    return info.Env().Undefined();
  }

  Napi::Value JsSetReadPaused(const Napi::CallbackInfo& info) {
    if (Usable()) conn_->SetReadPaused(info[0].As<Napi::Number>().Int64Value(), info[1].ToBoolean());
    return info.Env().Undefined();
  }

  Napi::Value JsSendDatagram(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ByteView bytes;
    if (!GetBytes(info[0], &bytes)) throw Napi::TypeError::New(env, "sendDatagram: bytes expected");
    return Napi::Boolean::New(env, Usable() && conn_->SendDatagram(bytes.data, bytes.length));
  }

  // closeConnection(code, reason, transport): what streams queued goes first, then
  // CONNECTION_CLOSE (an application error, or a transport one such as a TLS alert 0x1XX).
  Napi::Value JsCloseConnection(const Napi::CallbackInfo& info) {
    if (Usable()) conn_->Close(uint64_t(info[0].As<Napi::Number>().Int64Value()), info[1].As<Napi::String>().Utf8Value(), info[2].ToBoolean());
    return info.Env().Undefined();
  }

  Napi::Value JsProbe(const Napi::CallbackInfo& info) {
    if (Usable()) conn_->Probe();
    return info.Env().Undefined();
  }

  Napi::Value JsInfo(const Napi::CallbackInfo& info) {
    if (!conn_) return Napi::Object::New(info.Env());
    Napi::Object out = conn_->Info(info.Env());
    // The socket's bound address (ngtcp2's path holds the one given at creation).
    out.Set("localAddress", SockaddrToObject(info.Env(), local_addr_));
    out.Set("gso", batch_.gso());
    out.Set("gsoSends", double(batch_.gso_sends()));
    out.Set("largestSend", double(batch_.largest_send()));
    out.Set("gro", rx_.gro());
    out.Set("groReads", double(rx_.gro_reads()));
    return out;
  }

  Napi::Value JsPeerCertificates(const Napi::CallbackInfo& info) { return conn_ ? conn_->PeerCertificates(info.Env()) : Napi::Array::New(info.Env()); }

  Napi::Value JsStreamsLeft(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(Usable() ? conn_->StreamsLeft() : 0)); }

  Conn* Pumping() { return Usable() ? conn_.get() : nullptr; }
  Napi::Value JsAttachPump(const Napi::CallbackInfo& info) { return pump_js::Attach(Pumping(), info, 0); }
  Napi::Value JsResetPump(const Napi::CallbackInfo& info) { return pump_js::Reset(Pumping(), info, 0); }
  Napi::Value JsShutPump(const Napi::CallbackInfo& info) { return pump_js::Shut(Pumping(), info, 0); }
  Napi::Value JsPumpWrite(const Napi::CallbackInfo& info) { return pump_js::Write(Pumping(), info, 0); }
  Napi::Value JsArmPumpHeads(const Napi::CallbackInfo& info) { return pump_js::ArmHeads(Pumping(), info, 0); }
  Napi::Value JsClosePump(const Napi::CallbackInfo& info) { return pump_js::Close(conn_.get(), info, 0); }

  // dial(addr, port, keepAliveMs, keepAliveLate?) → a token (> 0; a PUMP DIALED record with it follows)
  // or -errno: a private flow's TCP connect to `addr` (4 or 16 bytes), for attachPump(id, token, mode, true).
  Napi::Value JsDial(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ByteView addr;
    if (!GetBytes(info[0], &addr)) throw Napi::TypeError::New(env, "dial: address bytes expected");
    if (!Usable()) return Napi::Number::New(env, -ENOTCONN);
    return Napi::Number::New(env, conn_->Dial(addr.data, addr.length, info[1].As<Napi::Number>().Int32Value(),
                                              info[2].As<Napi::Number>().Int32Value(), info[3].ToBoolean().Value()));
  }

  // closeDial(token): a dial no longer wanted (its socket closed); takeDial(token) → its socket's fd, now the caller's (-1: none).
  Napi::Value JsCloseDial(const Napi::CallbackInfo& info) {
    if (conn_) conn_->CloseDial(info[0].As<Napi::Number>().DoubleValue());
    return info.Env().Undefined();
  }

  // admitOpen(payload, addr, port, keepAliveMs, keepAliveLate, epoch: Int32Array, ok?): an OPEN payload
  // the off-ramp admitted, dialled as it is read from now on while epoch[0] stays (Conn::AdmitOpen).
  Napi::Value JsAdmitOpen(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ByteView payload, addr;
    if (!GetBytes(info[0], &payload) || !GetBytes(info[1], &addr) || !info[5].IsTypedArray() ||
        info[5].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array || info[5].As<Napi::Int32Array>().ElementLength() < 1)
      throw Napi::TypeError::New(env, "admitOpen: (bytes, bytes, port, keepAliveMs, keepAliveLate, Int32Array) expected");
    if (!Usable()) return env.Undefined();
    Napi::Int32Array epoch = info[5].As<Napi::Int32Array>();
    ByteView ok{nullptr, 0};
    if (info.Length() > 6 && !info[6].IsUndefined() && !GetBytes(info[6], &ok)) throw Napi::TypeError::New(env, "admitOpen: ok bytes expected");
    // The array stays alive (and in place: never transferred) while this connection may read it.
    if (epoch_.IsEmpty() || !epoch_.Value().StrictEquals(epoch)) epoch_ = Napi::Persistent(epoch);
    conn_->AdmitOpen(payload.data, payload.length, addr.data, addr.length, info[2].As<Napi::Number>().Int32Value(),
                     info[3].As<Napi::Number>().Int32Value(), info[4].ToBoolean().Value(), epoch.Data(), ok.data, ok.length);
    return env.Undefined();
  }

  Napi::Value JsTakeDial(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), conn_ ? conn_->TakeDial(info[0].As<Napi::Number>().DoubleValue()) : -1);
  }

  // pumpRoute(id, route): the pump writes the heads of HEAD records itself, of any host (true) or of
  // the host whose bytes `route` holds; undefined: every HEAD to JS (Conn::PumpRoute).
  Napi::Value JsPumpRoute(const Napi::CallbackInfo& info) {
    ByteView host{nullptr, 0};
    const bool on = !info[1].IsUndefined() && !info[1].IsNull();
    const bool any = on && info[1].IsBoolean();
    if (on && !any && !GetBytes(info[1], &host)) throw Napi::TypeError::New(info.Env(), "pumpRoute: host bytes expected");
    if (Usable()) conn_->PumpRoute(info[0].As<Napi::Number>().Int64Value(), on, any, host.data, host.length);
    return info.Env().Undefined();
  }

  // ------------------------------------------------------------------ loop callbacks

  void OnPoll(int status, int events) override {
    if (!Usable()) return;
    Napi::HandleScope scope(env_);
    // An error (ICMP unreachable on the connected socket) stops libuv's poll: the read below
    // collects it (ECONNREFUSED), then watching starts again.
    ReadPackets();
    if (status < 0 && Usable() && fd_ >= 0) Watch(env_, fd_, UV_READABLE);
    if (Usable()) {
      conn_->scheduled = false;
      conn_->Flush();
    }
    TxSend();
    Deliver();
    MaybeFinalize();
  }

  void ReadPackets() {
    ngtcp2_path path = Path();
    bool split = false;
    for (int rounds = 0; rounds < 16 && Usable(); rounds++) {
      int n = rx_.Read(fd_);
      if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) conn_->ReportSendError(errno);
        break;
      }
      uint64_t ts = Now();
      for (int i = 0; i < n && Usable(); i++) {
        rx_.Each(i, [&](const uint8_t* data, size_t len) {
          if (Usable()) conn_->Read(path, data, len, ts);
        });
        // OXY_QUIC_ACK_SPLIT=1: a bulk message with more behind it is acknowledged now (once per read).
        if (!split && i + 1 < n && Usable() && conn_->AckEarly()) {
          split = true;
          TxSend();
        }
      }
      if (size_t(n) < kRecvBatch) break;
    }
  }

  static void OnCheck(uv_check_t* handle) {
    auto* self = static_cast<QuicClient*>(handle->data);
    if (!self) return;
    self->turn_.Disarm();
    self->FlushNow();
  }

  void FlushNow() {
    if (!Usable()) return;
    Napi::HandleScope scope(env_);
    conn_->scheduled = false;
    conn_->Flush();
    TxSend();
    Deliver();
    MaybeFinalize();
  }

  // ------------------------------------------------------------------ teardown

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

  void ResetCallbacks() override {
    on_events_.Reset();
    epoch_.Reset();
  }

  void Teardown() {
    lazy_.Close();
    turn_.Close();
    soon_.Close();
    if (conn_) conn_->Teardown();
    if (cred_) {
      gnutls_certificate_free_credentials(cred_);
      cred_ = nullptr;
    }
  }

  Napi::Env env_{nullptr};
  Napi::FunctionReference on_events_;
  Napi::Reference<Napi::Int32Array> epoch_;  // AdmitOpen's epoch array, read by conn_
  gnutls_certificate_credentials_t cred_ = nullptr;
  std::unique_ptr<Conn> conn_;
  sockaddr_storage remote_addr_{};
  socklen_t remote_len_ = 0;
  sockaddr_storage local_addr_{};
  socklen_t local_len_ = 0;

  TurnScheduler turn_;
  SoonTimer soon_;
  SoonTimer lazy_;
  int in_js_ = 0;
  bool closed_ = false;
  bool finish_pending_ = false;

  EventBatch events_;
  RecvBatch rx_;
  PacketBatch batch_;
};

}  // namespace

Napi::Function InitQuicClient(Napi::Env env) { return QuicClient::Init(env); }

void InitQuicFunctions(Napi::Env env, Napi::Object exports) {
  exports.Set("flowFinHolds", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    const FinHoldCounts& c = FinHolds();
    Napi::Object out = Napi::Object::New(info.Env());
    out.Set("held", c.held);
    out.Set("fin", c.fin);
    out.Set("deadline", c.deadline);
    out.Set("other", c.other);
    out.Set("heldUs", c.held_us);
    out.Set("wakes", c.wakes);
    return out;
  }));
}

}  // namespace oxy
