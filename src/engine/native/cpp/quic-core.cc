// One QUIC connection on ngtcp2 0.12 + GnuTLS: see quic-core.h.
#include "quic-core.h"
#include "quic-aead.h"
#include "modules.h"

#include <gnutls/crypto.h>
#include <ngtcp2/ngtcp2_crypto_gnutls.h>

#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace oxy {
namespace quic {

const char kPriority[] =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305:"
    "-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:+GROUP-SECP384R1:%DISABLE_TLS13_COMPAT_MODE";

uint64_t Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * NGTCP2_SECONDS + uint64_t(ts.tv_nsec);
}

// OXY_QUIC_TRACE=MS: each connection prints its Counters and ngtcp2's path figures to stderr at
// most every MS ms while it flushes (0 or unset: never).
uint64_t TraceMs() {
  static const uint64_t ms = [] {
    const char* v = getenv("OXY_QUIC_TRACE");
    return v ? uint64_t(strtoull(v, nullptr, 10)) : 0;
  }();
  return ms;
}

// Where OXY_QUIC_TRACE's lines go: OXY_QUIC_TRACE_FILE (appended a line at a time, each with the
// process id: several processes share the file) or stderr. A file keeps a parent that reads its
// children's stderr only now and then (bench/vnet-path.js during a run) from stalling them.
FILE* TraceOut() {
  static FILE* out = [] {
    const char* path = getenv("OXY_QUIC_TRACE_FILE");
    FILE* f = path && *path ? fopen(path, "a") : nullptr;
    if (f) setvbuf(f, nullptr, _IOLBF, 8192);
    return f ? f : stderr;
  }();
  return out;
}

void LogPrintf(void*, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

// ------------------------------------------------------------------ EventBatch

void EventBatch::Add(uint8_t type, uint8_t flag, double id, const uint8_t* data, size_t len, bool lazy) {
  if (!lazy) urgent_ = true;
  uint8_t head[16] = {type, flag, 0, 0};
  uint32_t l = uint32_t(len);
  memcpy(head + 4, &l, 4);
  memcpy(head + 8, &id, 8);
  // insert, not resize: a resize zeroes the bytes the payload then overwrites.
  bytes_.insert(bytes_.end(), head, head + 16);
  if (len) bytes_.insert(bytes_.end(), data, data + len);
}

bool EventBatch::Count(LazySlot* slot, uint8_t type, uint8_t flag, int64_t id, double value, double add) {
  if (slot->batch != taken_ || slot->at + kCountRecord > bytes_.size()) return false;
  uint8_t* rec = bytes_.data() + slot->at;
  double rid, v, n[2];
  uint32_t len;
  memcpy(&len, rec + 4, 4);
  memcpy(&rid, rec + 8, 8);
  memcpy(&v, rec + 16, 8);
  if (rec[0] != type || rec[1] != flag || len != 24 || rid != double(id) || v != value) return false;
  memcpy(n, rec + 24, 16);
  n[0] += 1;
  n[1] += add;
  memcpy(rec + 24, n, 16);
  return true;
}

Napi::Buffer<uint8_t> EventBatch::Take(Napi::Env env) {
  auto* batch = new std::vector<uint8_t>();
  batch->swap(bytes_);
  urgent_ = false;
  taken_++;
  return Napi::Buffer<uint8_t>::New(env, batch->data(), batch->size(), [](Napi::Env, uint8_t*, std::vector<uint8_t>* v) { delete v; }, batch);
}

// ------------------------------------------------------------------ PacketBatch

namespace {
// Room for IPV6_PKTINFO and UDP_SEGMENT.
constexpr size_t kControlRoom = CMSG_SPACE(sizeof(in6_pktinfo)) + CMSG_SPACE(sizeof(uint16_t));
}  // namespace

void PacketBatch::Init(size_t max_payload, bool gso, bool df) {
  max_payload_ = max_payload;
  // Read per socket (a client's connection, a listener), not per process: tests flip it.
  capacity_ = EnvSwitchOn("OXY_QUIC_SEND_BATCH") ? kMaxPacketsPerSend : kOldPacketsPerSend;
  gso_ = gso;
  df_ = df;
  tx_.reset(new uint8_t[capacity_ * max_payload]);
  meta_.resize(capacity_);
  msgs_.resize(capacity_);
  iovs_.resize(capacity_);
  first_.resize(capacity_ + 1);
  control_.resize(capacity_ * kControlRoom);
}

bool PacketBatch::Push(Conn* c, const ngtcp2_path& path, size_t len) {
  Meta& m = meta_[count_];
  m.len = len;
  m.conn = c;
  m.remote_len = std::min<socklen_t>(path.remote.addrlen, sizeof(m.remote));
  memcpy(&m.remote, path.remote.addr, m.remote_len);
  m.local_len = std::min<socklen_t>(path.local.addrlen, sizeof(m.local));
  memcpy(&m.local, path.local.addr, m.local_len);
  bytes_ += len;
  return ++count_ == capacity_ || bytes_ + max_payload_ > kMaxBytesPerSend;
}

namespace {

// UDP GSO limits: the kernel's UDP_MAX_SEGMENTS (64 on older kernels) and a datagram's 64 KB.
constexpr size_t kGsoMaxSegments = 64;
constexpr size_t kGsoMaxBytes = 65000;

// Appends one control message.
template <class T>
void PutCmsg(msghdr& h, uint8_t* control, int level, int type, const T& value) {
  h.msg_control = control;
  cmsghdr* c = reinterpret_cast<cmsghdr*>(control + h.msg_controllen);
  c->cmsg_level = level;
  c->cmsg_type = type;
  c->cmsg_len = CMSG_LEN(sizeof(T));
  memcpy(CMSG_DATA(c), &value, sizeof(T));
  h.msg_controllen += CMSG_SPACE(sizeof(T));
}

void SetV4Source(msghdr& h, uint8_t* control, const in_addr& src) {
  in_pktinfo pi{};
  pi.ipi_spec_dst = src;
  PutCmsg(h, control, IPPROTO_IP, IP_PKTINFO, pi);
}

// IP_PKTINFO for an IPv4 (or IPv4-mapped) source, IPV6_PKTINFO otherwise; none for a wildcard.
void SetSource(msghdr& h, uint8_t* control, const sockaddr_storage& local) {
  if (local.ss_family == AF_INET) {
    const in_addr& src = reinterpret_cast<const sockaddr_in*>(&local)->sin_addr;
    if (src.s_addr != INADDR_ANY) SetV4Source(h, control, src);
    return;
  }
  const in6_addr& src = reinterpret_cast<const sockaddr_in6*>(&local)->sin6_addr;
  if (IN6_IS_ADDR_V4MAPPED(&src)) {
    in_addr v4;
    memcpy(&v4, &src.s6_addr[12], 4);
    if (v4.s_addr != INADDR_ANY) SetV4Source(h, control, v4);
    return;
  }
  if (IN6_IS_ADDR_UNSPECIFIED(&src)) return;
  in6_pktinfo pi{};
  pi.ipi6_addr = src;
  PutCmsg(h, control, IPPROTO_IPV6, IPV6_PKTINFO, pi);
}

// What the kernel says when it cannot segment a message: EMSGSIZE for a segment above the path
// MTU (seen on a 1,300-byte veth), EINVAL or EIO for a device or socket that cannot (no checksum
// offload, SO_NO_CHECK), ENOPROTOOPT / EOPNOTSUPP from a kernel without UDP_SEGMENT.
bool GsoRefused(int err) { return err == EMSGSIZE || err == EIO || err == EINVAL || err == EOPNOTSUPP || err == ENOPROTOOPT; }

}  // namespace

bool PacketBatch::SamePath(const Meta& a, const Meta& b) const {
  return a.remote_len == b.remote_len && memcmp(&a.remote, &b.remote, a.remote_len) == 0 && a.local_len == b.local_len &&
         memcmp(&a.local, &b.local, a.local_len) == 0;
}

size_t PacketBatch::RunEnd(size_t i, size_t n, size_t single_until) const {
  if (!gso_ || i < single_until) return i + 1;
  // Segments of the first packet's size; a shorter one may end the run (the kernel's rule).
  const size_t seg = meta_[i].len;
  size_t bytes = seg;
  size_t j = i + 1;
  while (j < n && j - i < kGsoMaxSegments && meta_[j].len <= seg && bytes + meta_[j].len <= kGsoMaxBytes && SamePath(meta_[i], meta_[j])) {
    bytes += meta_[j].len;
    if (meta_[j++].len < seg) break;
  }
  return j;
}

void PacketBatch::Send(int fd, bool connected) {
  size_t n = count_;
  count_ = 0;
  bytes_ = 0;
  if (n == 0 || fd < 0) return;
  largest_send_ = std::max(largest_send_, n);
  mmsghdr* msgs = msgs_.data();
  iovec* iovs = iovs_.data();
  size_t* first = first_.data();
  for (size_t i = 0; i < n; i++) iovs[i] = {tx_.get() + i * max_payload_, meta_[i].len};
  size_t from = 0;
  size_t single_until = 0;  // packets before this one leave one per message (a DF run refused)
  for (int attempts = 0; from < n && attempts < 64; attempts++) {
    size_t count = 0;
    for (size_t i = from; i < n; count++) {
      size_t end = RunEnd(i, n, single_until);
      first[count] = i;
      msghdr& h = msgs[count].msg_hdr;
      memset(&h, 0, sizeof(h));
      uint8_t* control = control_.data() + count * kControlRoom;
      memset(control, 0, kControlRoom);
      h.msg_iov = &iovs[i];
      h.msg_iovlen = end - i;
      if (!connected) {
        h.msg_name = &meta_[i].remote;
        h.msg_namelen = meta_[i].remote_len;
        SetSource(h, control, meta_[i].local);
      }
      if (end - i > 1) PutCmsg(h, control, SOL_UDP, UDP_SEGMENT, uint16_t(meta_[i].len));
      i = end;
    }
    first[count] = n;
    int rc = sendmmsg(fd, msgs, unsigned(count), 0);
    if (rc < 0) {
      const int err = errno;  // before anything below can change it
      if (err == EINTR) continue;
      size_t end = first[1];
      if (end - from > 1 && df_ && err == EMSGSIZE) {
        // With DF a segment above the link's MTU is refused (a PMTUD probe, mostly): the run's
        // packets go one per message, and only the one too large for the link is dropped.
        single_until = end;
        continue;
      }
      if (end - from > 1 && GsoRefused(err)) {
        gso_ = false;  // this socket's path cannot segment: one datagram per message from now on
        continue;
      }
      if (df_ && err == EMSGSIZE) {
        // One packet above the link's MTU: lost, as on a path that drops it (a probe's loss is
        // PMTUD's answer; ngtcp2 keeps it out of congestion control).
        if (Conn* c = meta_[from].conn) c->Sent(false);
        from = end;
        continue;
      }
      // Full socket buffer: the packets are lost, QUIC's loss recovery resends them. Another
      // refusal (ICMP unreachable, EPERM from a firewall) is counted on its connection; the rest go on.
      const bool full = err == EAGAIN || err == EWOULDBLOCK;
      if (Conn* c = meta_[from].conn) {
        if (!full) c->ReportSendError(err);
      }
      for (size_t i = from; i < end; i++) {
        if (meta_[i].conn && full) meta_[i].conn->Sent(false);
      }
      from = end;
      continue;
    }
    for (size_t k = 0; k < size_t(rc); k++) {
      if (first[k + 1] - first[k] > 1) gso_sends_++;
      for (size_t i = first[k]; i < first[k + 1]; i++) {
        if (meta_[i].conn) meta_[i].conn->Sent(true);
      }
    }
    from = first[rc];
  }
}

// ------------------------------------------------------------------ RecvBatch

void RecvBatch::Init(int fd, size_t max_datagram, bool gro, bool names, size_t control) {
  int on = 1;
  gro_ = gro && setsockopt(fd, IPPROTO_UDP, UDP_GRO, &on, sizeof(on)) == 0;
  // A GRO message is at most 64 KB (UDP's length field); room for the largest datagram otherwise.
  slot_ = std::max<size_t>(max_datagram + 64, gro_ ? 65536 : 0);
  control_ = control + (gro_ ? CMSG_SPACE(sizeof(int)) : 0);
  slab_.reset(new uint8_t[kRecvBatch * slot_]);
  msgs_.resize(kRecvBatch);
  iovs_.resize(kRecvBatch);
  if (names) names_.resize(kRecvBatch);
  controls_.resize(kRecvBatch * control_);
}

int RecvBatch::Read(int fd) {
  for (size_t i = 0; i < kRecvBatch; i++) {
    iovs_[i] = {slab_.get() + i * slot_, slot_};
    msghdr& h = msgs_[i].msg_hdr;
    memset(&h, 0, sizeof(h));
    if (!names_.empty()) {
      h.msg_name = &names_[i];
      h.msg_namelen = sizeof(sockaddr_storage);
    }
    h.msg_iov = &iovs_[i];
    h.msg_iovlen = 1;
    if (control_) {
      h.msg_control = controls_.data() + i * control_;
      h.msg_controllen = control_;
    }
  }
  return recvmmsg(fd, msgs_.data(), kRecvBatch, MSG_DONTWAIT, nullptr);
}

size_t RecvBatch::Segment(const msghdr& h) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&h); c != nullptr; c = CMSG_NXTHDR(const_cast<msghdr*>(&h), c)) {
    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
      int seg;
      memcpy(&seg, CMSG_DATA(c), sizeof(seg));
      return seg > 0 ? size_t(seg) : 0;
    }
  }
  return 0;
}

// ------------------------------------------------------------------ TurnScheduler

void TurnScheduler::Init(uv_loop_t* loop, void* owner, uv_check_cb cb) {
  cb_ = cb;
  check_ = new uv_check_t();
  uv_check_init(loop, check_);
  check_->data = owner;
  idle_ = new uv_idle_t();
  uv_idle_init(loop, idle_);
  idle_->data = owner;
}

void TurnScheduler::Arm() {
  if (armed_ || !check_) return;
  armed_ = true;
  uv_check_start(check_, cb_);
  uv_idle_start(idle_, [](uv_idle_t*) {});
}

void TurnScheduler::Disarm() {
  armed_ = false;
  if (!check_) return;
  uv_check_stop(check_);
  uv_idle_stop(idle_);
}

void TurnScheduler::Close() {
  Disarm();
  if (check_) {
    check_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(check_), [](uv_handle_t* h) { delete reinterpret_cast<uv_check_t*>(h); });
    check_ = nullptr;
  }
  if (idle_) {
    idle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(idle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_idle_t*>(h); });
    idle_ = nullptr;
  }
}

// ------------------------------------------------------------------ SoonTimer

void SoonTimer::Init(uv_loop_t* loop, void* owner, void (*cb)(void*)) {
  owner_ = owner;
  cb_ = cb;
  fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (fd_ < 0) return;  // without one, waits round up to libuv's millisecond
  poll_ = new uv_poll_t();
  if (uv_poll_init(loop, poll_, fd_) != 0) {
    delete poll_;
    poll_ = nullptr;
    close(fd_);
    fd_ = -1;
    return;
  }
  poll_->data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
  uv_poll_start(poll_, UV_READABLE, [](uv_poll_t* handle, int, int) {
    auto* self = static_cast<SoonTimer*>(handle->data);
    if (!self) return;
    uint64_t expirations;  // one read takes them all (a second one only said EAGAIN)
    (void)!read(self->fd_, &expirations, sizeof(expirations));
    self->due_ = UINT64_MAX;
    self->cb_(self->owner_);
  });
}

void SoonTimer::At(uint64_t ts) {
  if (fd_ < 0 || ts >= due_) return;
  due_ = ts;
  itimerspec spec{};
  spec.it_value.tv_sec = time_t(ts / NGTCP2_SECONDS);
  spec.it_value.tv_nsec = long(ts % NGTCP2_SECONDS);
  if (spec.it_value.tv_sec == 0 && spec.it_value.tv_nsec == 0) spec.it_value.tv_nsec = 1;  // 0 disarms
  timerfd_settime(fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
}

void SoonTimer::Stop() {
  if (fd_ < 0 || due_ == UINT64_MAX) return;
  due_ = UINT64_MAX;
  itimerspec spec{};
  timerfd_settime(fd_, TFD_TIMER_ABSTIME, &spec, nullptr);
}

void SoonTimer::Close() {
  if (poll_) {
    uv_poll_stop(poll_);
    poll_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    poll_ = nullptr;
  }
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
}

// ------------------------------------------------------------------ Host

int Host::IssueCid(Conn*, ngtcp2_cid* cid, uint8_t* token, size_t cidlen) {
  if (gnutls_rnd(GNUTLS_RND_RANDOM, cid->data, cidlen) != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
  cid->datalen = cidlen;
  if (gnutls_rnd(GNUTLS_RND_RANDOM, token, NGTCP2_STATELESS_RESET_TOKENLEN) != 0) return NGTCP2_ERR_CALLBACK_FAILURE;
  return 0;
}

// ------------------------------------------------------------------ setup

ConnSettings ConnSettings::FromJs(Napi::Object o) {
  ConnSettings s;
  auto num = [&](const char* name) { return uint64_t(o.Get(name).As<Napi::Number>().Int64Value()); };
  s.max_payload = std::clamp<uint32_t>(uint32_t(num("maxUdpPayloadSize")), 1200, 65527);
  s.max_recv_payload = o.Has("maxRecvUdpPayloadSize") ? uint32_t(num("maxRecvUdpPayloadSize")) : s.max_payload;
  s.idle_timeout_ms = num("idleTimeoutMs");
  s.keep_alive_ms = num("keepAliveMs");
  s.initial_max_data = num("initialMaxData");
  s.initial_max_stream_data = num("initialMaxStreamData");
  s.max_stream_window = num("maxStreamWindow");
  s.max_connection_window = num("maxConnectionWindow");
  s.max_concurrent_streams = num("maxConcurrentStreams");
  s.congestion_control = o.Get("congestionControl").As<Napi::String>().Utf8Value();
  auto optional = [&](const char* name) { return o.Has(name) ? num(name) : 0; };
  s.loopback_payload = uint32_t(std::min<uint64_t>(optional("loopbackUdpPayloadSize"), 65507));
  if (s.loopback_payload != 0 && s.loopback_payload < 1200) s.loopback_payload = 0;
  s.loopback_cwnd_unit = std::min<uint64_t>(optional("loopbackCwndUnit"), 16 * 1024 * 1024);
  s.cwnd_unit = std::min<uint64_t>(optional("cwndUnit"), 65527);  // ngtcp2's largest max_tx_udp_payload_size
  s.near_cwnd_unit = std::min<uint64_t>(optional("nearCwndUnit"), 16 * 1024 * 1024);
  s.loopback_ack_threshold = uint32_t(std::min<uint64_t>(optional("loopbackAckThreshold"), 1024));
  s.gso = !o.Has("gso") || o.Get("gso").ToBoolean();
  s.gro = !o.Has("gro") || o.Get("gro").ToBoolean();
  s.pmtud = o.Has("pmtud") && o.Get("pmtud").ToBoolean();
  return s;
}

bool SetDontFragment(int fd) {
  int v4 = IP_PMTUDISC_PROBE;
  int v6 = IPV6_PMTUDISC_PROBE;
  // Both on a dual-stack socket (its IPv4-mapped sends take the IPv4 option).
  bool ok = setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v4, sizeof v4) == 0;
  ok = setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v6, sizeof v6) == 0 || ok;
  return ok;
}

bool IsLoopback(const sockaddr* addr) {
  if (addr->sa_family == AF_INET) return (ntohl(reinterpret_cast<const sockaddr_in*>(addr)->sin_addr.s_addr) >> 24) == 127;
  if (addr->sa_family != AF_INET6) return false;
  const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr;
  if (IN6_IS_ADDR_LOOPBACK(&a)) return true;
  return IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127;
}

bool IsNearAddress(const sockaddr* addr) {
  uint32_t v4;
  if (addr->sa_family == AF_INET) {
    v4 = ntohl(reinterpret_cast<const sockaddr_in*>(addr)->sin_addr.s_addr);
  } else if (addr->sa_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr;
    if (!IN6_IS_ADDR_V4MAPPED(&a)) return (a.s6_addr[0] & 0xfe) == 0xfc || IN6_IS_ADDR_LINKLOCAL(&a);  // fc00::/7, fe80::/10
    memcpy(&v4, a.s6_addr + 12, 4);
    v4 = ntohl(v4);
  } else {
    return false;
  }
  return (v4 >> 24) == 10 || (v4 >> 20) == (172u << 4 | 1) || (v4 >> 16) == (192u << 8 | 168) || (v4 >> 16) == (169u << 8 | 254) ||
         (v4 >> 17) == (198u << 7 | 18 >> 1);
}

namespace {

// addressKind(address) → {loopback, near}: IsLoopback and IsNearAddress on its own, for the test of
// the ranges (an IPv4 address as a sockaddr_in, IPv6 — IPv4-mapped too — as a sockaddr_in6).
Napi::Value AddressKindJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const std::string text = info[0].As<Napi::String>().Utf8Value();
  sockaddr_storage ss;
  socklen_t len = 0;
  if (!ParseSockaddr(text, 0, AF_INET, &ss, &len) && !ParseSockaddr(text, 0, AF_INET6, &ss, &len))
    throw Napi::TypeError::New(env, "addressKind: not an IP address: " + text);
  const sockaddr* addr = reinterpret_cast<const sockaddr*>(&ss);
  Napi::Object out = Napi::Object::New(env);
  out.Set("loopback", IsLoopback(addr));
  out.Set("near", IsNearAddress(addr));
  return out;
}

}  // namespace

Conn::Conn(Host* host, uint32_t handle, const ConnSettings& s, uv_loop_t* loop) : host_(host), handle_(handle), settings_(s), loop_(loop) {
  timer_ = new uv_timer_t();
  uv_timer_init(loop, timer_);
  timer_->data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(timer_));
  HoldFdSet(loop);  // its pumps' and dials' sockets
}

Conn::~Conn() {
  Teardown();
  ReleaseFdSet();
}

std::string Conn::InitTls(bool server, gnutls_certificate_credentials_t cred, const std::string& alpn, const std::string& server_name) {
  server_ = server;
  int rv = gnutls_init(&session_, (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_ENABLE_EARLY_DATA | GNUTLS_NO_END_OF_EARLY_DATA);
  if (rv != 0) return std::string("gnutls_init: ") + gnutls_strerror(rv);
  rv = server ? ngtcp2_crypto_gnutls_configure_server_session(session_) : ngtcp2_crypto_gnutls_configure_client_session(session_);
  if (rv != 0) return "ngtcp2_crypto_gnutls_configure_session failed";
  ConfigureAead(session_);
  // OXY_QUIC_CIPHER=AES-256-GCM|CHACHA20-POLY1305|AES-128-GCM (tests): offer or accept that one only.
  std::string priority = kPriority;
  if (const char* c = getenv("OXY_QUIC_CIPHER"); c && (!strcmp(c, "AES-128-GCM") || !strcmp(c, "AES-256-GCM") || !strcmp(c, "CHACHA20-POLY1305")))
    priority.replace(priority.find("+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305"), strlen("+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305"), std::string("+") + c);
  if (const char* n = getenv("OXY_QUIC_KEY_UPDATE")) key_update_every_ = strtoull(n, nullptr, 10);
  rv = gnutls_priority_set_direct(session_, priority.c_str(), nullptr);
  if (rv != 0) return std::string("gnutls_priority_set_direct: ") + gnutls_strerror(rv);
  conn_ref_.get_conn = [](ngtcp2_crypto_conn_ref* ref) { return static_cast<Conn*>(ref->user_data)->conn_; };
  conn_ref_.user_data = this;
  gnutls_session_set_ptr(session_, &conn_ref_);
  rv = gnutls_credentials_set(session_, GNUTLS_CRD_CERTIFICATE, cred);
  if (rv != 0) return std::string("gnutls_credentials_set: ") + gnutls_strerror(rv);
  alpn_ = alpn;
  gnutls_datum_t datum = {reinterpret_cast<unsigned char*>(alpn_.data()), unsigned(alpn_.size())};
  // Mandatory on both sides: a peer without our ALPN fails the handshake (alert 120).
  gnutls_alpn_set_protocols(session_, &datum, 1, GNUTLS_ALPN_MANDATORY);
  if (server) return "";
  // The chain is verified against the CA during the handshake, and the name when dialing
  // one (as BoringSSL does for quiche); an IP's SAN and the CA pin are checked in JS.
  if (!server_name.empty()) {
    server_name_ = server_name;
    gnutls_server_name_set(session_, GNUTLS_NAME_DNS, server_name_.data(), server_name_.size());
    gnutls_session_set_verify_cert(session_, server_name_.c_str(), 0);
  } else {
    gnutls_session_set_verify_cert(session_, nullptr, 0);
  }
  return "";
}

void Conn::FillCallbacks(ngtcp2_callbacks* cb, bool server) {
  if (server) {
    cb->recv_client_initial = ngtcp2_crypto_recv_client_initial_cb;
  } else {
    cb->client_initial = ngtcp2_crypto_client_initial_cb;
    cb->recv_retry = ngtcp2_crypto_recv_retry_cb;
  }
  cb->recv_crypto_data = ngtcp2_crypto_recv_crypto_data_cb;
  FillAeadCallbacks(cb);  // encrypt, decrypt, update_key, delete_crypto_aead_ctx
  cb->hp_mask = ngtcp2_crypto_hp_mask_cb;
  cb->delete_crypto_cipher_ctx = ngtcp2_crypto_delete_crypto_cipher_ctx_cb;
  cb->get_path_challenge_data = ngtcp2_crypto_get_path_challenge_data_cb;
  cb->version_negotiation = ngtcp2_crypto_version_negotiation_cb;
  cb->rand = [](uint8_t* dest, size_t len, const ngtcp2_rand_ctx*) { gnutls_rnd(GNUTLS_RND_RANDOM, dest, len); };
  cb->get_new_connection_id = [](ngtcp2_conn*, ngtcp2_cid* cid, uint8_t* token, size_t cidlen, void* user) {
    auto* self = static_cast<Conn*>(user);
    return self->host_->IssueCid(self, cid, token, cidlen);
  };
  cb->remove_connection_id = [](ngtcp2_conn*, const ngtcp2_cid* cid, void* user) {
    auto* self = static_cast<Conn*>(user);
    self->host_->RetireCid(self, cid);
    return 0;
  };
  cb->handshake_completed = [](ngtcp2_conn*, void* user) {
    auto* self = static_cast<Conn*>(user);
    // A server's handshake is confirmed when it completes (RFC 9001 §4.1.2): a close need not wait.
    if (self->server_) self->confirmed_ = true;
    self->Event(kEvHandshake, 0, 0, nullptr, 0);
    return 0;
  };
  cb->handshake_confirmed = [](ngtcp2_conn*, void* user) {
    auto* self = static_cast<Conn*>(user);
    self->confirmed_ = true;
    if (self->close_pending_) self->Dirty();
    return 0;
  };
  cb->recv_stream_data = &Conn::OnStreamData;
  cb->acked_stream_data_offset = &Conn::OnAcked;
  cb->stream_close = &Conn::OnStreamClose;
  cb->stream_reset = [](ngtcp2_conn*, int64_t id, uint64_t, uint64_t code, void* user, void*) {
    static_cast<Conn*>(user)->EventCode(kEvReset, id, code);
    return 0;
  };
  // Called when *we* stop reading (ngtcp2 answers a peer's STOP_SENDING with RESET_STREAM itself;
  // our writes to that stream then fail with STREAM_SHUT_WR).
  cb->stream_stop_sending = [](ngtcp2_conn*, int64_t id, uint64_t code, void* user, void*) {
    auto* self = static_cast<Conn*>(user);
    if (Stream* s = self->Find(id)) s->write_closed = true;
    self->EventCode(kEvStopSending, id, code);
    return 0;
  };
  cb->extend_max_local_streams_bidi = [](ngtcp2_conn*, uint64_t, void* user) {
    static_cast<Conn*>(user)->Event(kEvStreamsAvailable, 0, 0, nullptr, 0);
    return 0;
  };
  cb->extend_max_stream_data = [](ngtcp2_conn*, int64_t id, uint64_t, void* user, void*) {
    auto* self = static_cast<Conn*>(user);
    if (Stream* s = self->Find(id)) self->Enqueue(s);
    return 0;
  };
  cb->recv_datagram = [](ngtcp2_conn*, uint32_t, const uint8_t* data, size_t len, void* user) {
    static_cast<Conn*>(user)->Event(kEvDatagram, 0, 0, data, len);
    return 0;
  };
  cb->recv_stateless_reset = [](ngtcp2_conn*, const ngtcp2_pkt_stateless_reset*, void* user) {
    static_cast<Conn*>(user)->stateless_reset_ = true;
    return 0;
  };
}

void Conn::FillSettings(ngtcp2_settings* settings, ngtcp2_transport_params* params, const ngtcp2_path& path) {
  const ConnSettings& s = settings_;
  bool loopback = IsLoopback(path.remote.addr);
  ngtcp2_settings_default(settings);
  settings->initial_ts = Now();
  settings->cc_algo = s.congestion_control == "reno"   ? NGTCP2_CC_ALGO_RENO
                      : s.congestion_control == "bbr"  ? NGTCP2_CC_ALGO_BBR
                      : s.congestion_control == "bbr2" ? NGTCP2_CC_ALGO_BBR2
                                                       : NGTCP2_CC_ALGO_CUBIC;
  payload_ = loopback && s.loopback_payload ? s.loopback_payload : s.max_payload;
  settings->max_tx_udp_payload_size = payload_;
  // ngtcp2 sizes the window in units of this value; packets stay at payload_ (we pass that as
  // each write's room, and the peer's max_udp_payload_size caps it too).
  if (loopback && s.loopback_cwnd_unit > payload_) settings->max_tx_udp_payload_size = s.loopback_cwnd_unit;
  if (!loopback && s.cwnd_unit > payload_) settings->max_tx_udp_payload_size = s.cwnd_unit;
  if (!loopback && s.near_cwnd_unit > settings->max_tx_udp_payload_size && IsNearAddress(path.remote.addr))
    settings->max_tx_udp_payload_size = s.near_cwnd_unit;
  if (loopback && s.loopback_ack_threshold) settings->ack_thresh = s.loopback_ack_threshold;
  // With PMTUD (off loopback): packets of the path's size so far, from 1,200 up to what a probe
  // found (ngtcp2 shapes each write's room to it). Without: full-size packets from the start (the
  // peer's max_udp_payload_size still caps them), the size chosen for the path by the caller, as for quiche.
  pmtud_ = s.pmtud && !(loopback && s.loopback_payload);
  settings->no_tx_udp_payload_size_shaping = pmtud_ ? 0 : 1;
  settings->no_pmtud = pmtud_ ? 0 : 1;
  settings->max_window = s.max_connection_window;
  settings->max_stream_window = s.max_stream_window;
  // Client: the dialer has its own timeout. Server: a half-done handshake lives as long as an idle connection.
  settings->handshake_timeout = server_ ? s.idle_timeout_ms * NGTCP2_MILLISECONDS : UINT64_MAX;
  if (getenv("OXY_NGTCP2_LOG")) settings->log_printf = &LogPrintf;  // ngtcp2's own trace, to stderr
  // OXY_QUIC_ACK_FIRST=1 (opt-in, for quiet-machine A/B pairs): a bulk read's ACK before its
  // socket writes (Flush). Off, one pass: the writes, then the packets.
  const char* ack_first = getenv("OXY_QUIC_ACK_FIRST");
  ack_first_ = ack_first && strcmp(ack_first, "1") == 0;
  // OXY_QUIC_ACK_SPLIT=1 (opt-in, for A/B pairs): an ACK after a bulk read's first message (AckEarly);
  // =server: only where this end is the server (the edge: -R's receiver), =client: only the client.
  // OXY_PUMP_RING=0: a flush's pumps each write with their own writev (RingWrites not used).
  ring_writes_ = EnvSwitchOn("OXY_PUMP_RING");
  const char* ack_split = getenv("OXY_QUIC_ACK_SPLIT");
  ack_split_ = ack_split && (strcmp(ack_split, "1") == 0 || strcmp(ack_split, server_ ? "server" : "client") == 0);
  // OXY_PUMP_READ: a pump's read of its fd (the connector's host socket in -R) at most 256 KiB, so
  // a bulk flow takes a quarter of the reads, and of the window updates toward its host, it took
  // at 64 KiB; =0 (exactly, as EnvSwitchOn) 64 KiB as before, =BYTES that (4 KiB to 512 KiB, for
  // pairs); anything else the default.
  const char* pump_read = getenv("OXY_PUMP_READ");
  const long pump_read_n = pump_read ? atol(pump_read) : 0;
  pump_read_ = !EnvSwitchOn("OXY_PUMP_READ") ? kPumpReadOld
               : pump_read_n > 0             ? size_t(std::clamp<long>(pump_read_n, 4096, long(kPumpReadMax)))
                                             : kPumpReadBytes;
  // OXY_QUIC_PACING: unset (or =1), ngtcp2 paces every path; =far only paths whose min RTT is 1 ms
  // or more (UpdatePacing: opt-in, it lost device → host in quiet pairs); =0 none.
  const char* pacing = getenv("OXY_QUIC_PACING");
  pacing_ = pacing && strcmp(pacing, "far") == 0 ? Pacing::kFar : pacing && strcmp(pacing, "0") == 0 ? Pacing::kNever : Pacing::kAlways;

  ngtcp2_transport_params_default(params);
  params->initial_max_data = s.initial_max_data;
  params->initial_max_stream_data_bidi_local = s.initial_max_stream_data;
  params->initial_max_stream_data_bidi_remote = s.initial_max_stream_data;
  params->initial_max_stream_data_uni = 0;
  params->initial_max_streams_bidi = s.max_concurrent_streams;
  params->initial_max_streams_uni = 0;
  params->max_idle_timeout = s.idle_timeout_ms * NGTCP2_MILLISECONDS;
  params->max_udp_payload_size = loopback && s.loopback_payload ? std::max(s.max_recv_payload, s.loopback_payload) : s.max_recv_payload;
  params->max_datagram_frame_size = 65535;
  params->disable_active_migration = 1;
  // OXY_QUIC_ACK_DELAY=0 (opt-in, for a quiet-machine A/B): a client (the connector: an upload's
  // receiver) on a loopback path with the loopback ACK profile acknowledges without delay, so each
  // flush after a read carries the ACK. ngtcp2 delays an ACK by min(max_ack_delay, smoothed RTT /
  // 8) until ack_thresh packets came, and an upload's window (~6 packets of 64 KB) is fewer than
  // that: the connector, with nothing to send, waits for its timer, which libuv rounds up to the
  // millisecond. Not on the edge: more ACKs split the download sender's bursts (its CPU per MB
  // doubled). Under load neither paid (docs/decisions.md "Uploads over QUIC: what waits").
  const char* ack_delay = getenv("OXY_QUIC_ACK_DELAY");
  if (!server_ && loopback && s.loopback_ack_threshold && ack_delay && strcmp(ack_delay, "0") == 0) params->max_ack_delay = 0;
}

std::string Conn::InitClient(const ngtcp2_path& path) {
  ngtcp2_callbacks cb{};
  FillCallbacks(&cb, false);
  ngtcp2_cid dcid, scid;
  // 20-byte IDs as the quiche client uses: the edge routes short headers by a 20-byte slice.
  dcid.datalen = 20;
  scid.datalen = 20;
  gnutls_rnd(GNUTLS_RND_RANDOM, dcid.data, dcid.datalen);
  gnutls_rnd(GNUTLS_RND_RANDOM, scid.data, scid.datalen);
  ngtcp2_settings settings;
  ngtcp2_transport_params params;
  FillSettings(&settings, &params, path);
  int rv = ngtcp2_conn_client_new(&conn_, &dcid, &scid, &path, NGTCP2_PROTO_VER_V1, &cb, &settings, &params, nullptr, this);
  if (rv != 0) return std::string("ngtcp2_conn_client_new: ") + ngtcp2_strerror(rv);
  ngtcp2_conn_set_tls_native_handle(conn_, session_);
  if (settings_.keep_alive_ms > 0) ngtcp2_conn_set_keep_alive_timeout(conn_, settings_.keep_alive_ms * NGTCP2_MILLISECONDS);
  return "";
}

std::string Conn::InitServer(const ngtcp2_path& path, const ServerInit& init) {
  ngtcp2_callbacks cb{};
  FillCallbacks(&cb, true);
  ngtcp2_settings settings;
  ngtcp2_transport_params params;
  FillSettings(&settings, &params, path);
  if (init.token) settings.token = {const_cast<uint8_t*>(init.token), init.tokenlen};
  params.original_dcid = init.original_dcid;
  if (init.retried) {
    params.retry_scid = init.retry_scid;
    params.retry_scid_present = 1;
  }
  memcpy(params.stateless_reset_token, init.reset_token, NGTCP2_STATELESS_RESET_TOKENLEN);
  params.stateless_reset_token_present = 1;
  int rv = ngtcp2_conn_server_new(&conn_, &init.dcid, &init.scid, &path, init.version, &cb, &settings, &params, nullptr, this);
  if (rv != 0) return std::string("ngtcp2_conn_server_new: ") + ngtcp2_strerror(rv);
  ngtcp2_conn_set_tls_native_handle(conn_, session_);
  if (settings_.keep_alive_ms > 0) ngtcp2_conn_set_keep_alive_timeout(conn_, settings_.keep_alive_ms * NGTCP2_MILLISECONDS);
  return "";
}

// ------------------------------------------------------------------ events to JS

void Conn::EventCode(uint8_t type, int64_t id, uint64_t code) {
  double d = double(code);
  Event(type, 0, id, reinterpret_cast<const uint8_t*>(&d), 8);
}

void Conn::CloseEvent(uint8_t kind, uint64_t code, const uint8_t* reason, size_t reason_len) {
  std::vector<uint8_t> payload(8 + reason_len);
  double d = double(code);
  memcpy(payload.data(), &d, 8);
  if (reason_len) memcpy(payload.data() + 8, reason, reason_len);
  Event(kEvClosed, kind, 0, payload.data(), payload.size());
}

void Conn::ReportSendError(int err) {
  send_errors++;
  EventCode(kEvSendError, 0, uint64_t(err));
}

// ------------------------------------------------------------------ ngtcp2 callbacks

int Conn::OnStreamData(ngtcp2_conn* conn, uint32_t flags, int64_t id, uint64_t, const uint8_t* data, size_t len, void* user, void*) {
  auto* self = static_cast<Conn*>(user);
  bool fin = (flags & NGTCP2_STREAM_DATA_FLAG_FIN) != 0;
  Stream* s = self->Find(id);
  if (!s) s = self->Create(id);
  if (s->recv) {
    self->RecvBytes(s, data, len, fin);
  } else if (!self->answers_.empty() && self->AnswerData(s, data, len, fin)) {
    // the edge's answer pump took it (quic-answer.cc)
  } else if (fin || self->pumps_.empty() || !self->PumpHead(id, data, len)) {
    self->DataEvent(s, fin, data, len);
  }
  // Credit goes back at once unless the reader paused, the pump's fd is behind or the edge's answer
  // pump holds too much for its client; then on resume (SetReadPaused, PumpCredit, AnswerWriteOut).
  if (s->read_paused || s->pump_full || s->answer_paused) {
    if (s->owed_credit == 0) self->counters.credit_held++;
    s->owed_credit += len;
  } else {
    ngtcp2_conn_extend_max_stream_offset(conn, id, len);
  }
  ngtcp2_conn_extend_max_offset(conn, len);
  self->read_bytes_ += len;
  return 0;
}

int Conn::OnAcked(ngtcp2_conn*, int64_t id, uint64_t offset, uint64_t len, void* user, void*) {
  auto* self = static_cast<Conn*>(user);
  Stream* s = self->Find(id);
  if (!s) return 0;
  uint64_t upto = offset + len;
  while (!s->chunks.empty() && s->base + s->chunks.front().length <= upto) {
    s->base += s->chunks.front().length;
    s->chunks.pop_front();
  }
  return 0;
}

int Conn::OnStreamClose(ngtcp2_conn* conn, uint32_t, int64_t id, uint64_t, void* user, void*) {
  auto* self = static_cast<Conn*>(user);
  // ngtcp2 does not raise the peer's stream limit by itself: one closed, one more allowed.
  bool peer_initiated = (id & 1) == (self->server_ ? 0 : 1);
  if (peer_initiated && (id & 2) == 0) ngtcp2_conn_extend_max_streams_bidi(conn, 1);
  self->closed_stream_losses_ += ngtcp2_conn_get_stream_loss_count(conn, id);  // the stream is gone after this call
  auto it = self->streams_.find(id);
  if (it != self->streams_.end()) {
    it->second->write_closed = true;
    if (!it->second->in_queue) self->streams_.erase(it);
    else self->dead_.push_back(id);
  }
  self->Event(kEvStreamClosed, 0, id, nullptr, 0);
  return 0;
}

Stream* Conn::Find(int64_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

Stream* Conn::Create(int64_t id) {
  auto s = std::make_unique<Stream>();
  s->id = id;
  Stream* raw = s.get();
  streams_[id] = std::move(s);
  return raw;
}

void Conn::Dirty() {
  if (in_flush_ || scheduled || !Usable()) return;
  scheduled = true;
  host_->Schedule(this);
}

void Conn::Enqueue(Stream* s) {
  if (s->in_queue || !s->HasWork()) return;
  s->in_queue = true;
  sendq_.push_back(s->id);
  Dirty();
}

// ------------------------------------------------------------------ JS calls

int64_t Conn::OpenStream() {
  if (!Usable() || !ngtcp2_conn_get_handshake_completed(conn_)) return -1;
  int64_t id;
  if (ngtcp2_conn_open_bidi_stream(conn_, &id, nullptr) != 0) return -1;
  Create(id);
  awaiting_answer_ = true;  // JS's unansweredMs() runs from here
  return id;
}

double Conn::Write(int64_t id, const uint8_t* data, size_t len, bool fin) {
  Stream* s = Usable() ? Find(id) : nullptr;
  if (!s || s->write_closed || s->fin) return -1;
  if (len > 0) {
    Chunk c{std::unique_ptr<uint8_t[]>(new uint8_t[len]), len};
    memcpy(c.data.get(), data, len);
    s->chunks.push_back(std::move(c));
    s->total += len;
  }
  if (fin) s->fin = true;
  Enqueue(s);
  uint64_t unsent = s->total - s->sent;
  if (unsent > kStreamHighWater) {
    if (!s->want_writable) counters.writable_waits++;
    s->want_writable = true;
  }
  return double(unsent);
}

void Conn::ShutdownStream(int64_t id, uint64_t code) {
  if (!Usable()) return;
  if (Stream* s = Find(id)) {
    s->write_closed = true;
    ngtcp2_conn_shutdown_stream(conn_, id, code);
    // Nothing of it was ever sent: ngtcp2 refers to none of its bytes, and a peer on ngtcp2 0.12
    // that never saw the stream answers our STOP_SENDING with nothing, so ngtcp2 would keep it
    // open for the connection's life. Our table lets it go now.
    if (s->sent == 0) {
      if (s->in_queue) dead_.push_back(id);
      else streams_.erase(id);
    }
    Dirty();
  }
}

void Conn::SetReadPaused(int64_t id, bool paused) {
  Stream* s = Usable() ? Find(id) : nullptr;
  if (!s) return;
  s->read_paused = paused;
  if (!paused && s->owed_credit > 0 && !s->pump_full && !s->answer_paused) {
    ngtcp2_conn_extend_max_stream_offset(conn_, id, s->owed_credit);
    s->owed_credit = 0;
    Dirty();
  }
}

bool Conn::SendDatagram(const uint8_t* data, size_t len) {
  if (!Usable() || datagrams_.size() >= 4096) return false;
  datagrams_.emplace_back(data, data + len);
  Dirty();
  return true;
}

void Conn::Close(uint64_t code, const std::string& reason, bool transport) {
  if (!Usable() || close_pending_) return;
  close_pending_ = true;
  close_code_ = code;
  close_reason_ = reason;
  close_transport_ = transport;
  close_deadline_ = Now() + (ngtcp2_conn_get_handshake_completed(conn_) ? 3 * ngtcp2_conn_get_pto(conn_) : 0);
  Dirty();
}

// An ack-eliciting packet now (a PING: ngtcp2 0.12 sends one when the keep-alive timer is due).
void Conn::Probe() {
  if (!Usable()) return;
  ngtcp2_conn_set_keep_alive_timeout(conn_, 1);
  probing_ = true;
  awaiting_answer_ = true;
  Dirty();
}

void Conn::Trace(uint64_t now, const char* why) {
  trace_next_ = now + TraceMs() * NGTCP2_MILLISECONDS;
  ngtcp2_conn_stat st;
  ngtcp2_conn_get_conn_stat(conn_, &st);
  const Counters& c = counters;
  // Packets with stream bytes declared lost (a loss sets the window back: CUBIC's only signal here).
  uint64_t lost = closed_stream_losses_;
  for (auto& [id, stream] : streams_) {
    if (!stream->write_closed) lost += ngtcp2_conn_get_stream_loss_count(conn_, id);
  }
  fprintf(TraceOut(),
          "quic-trace %s %p%s pid=%d t=%.3f sent=%llu recv=%llu flushes=%llu streamBytes=%llu stopCwnd=%llu stopPacing=%llu "
          "stopBlocked=%llu stopData=%llu timerFires=%llu timerAcks=%llu timerLateUs=%llu creditHeld=%llu writableWaits=%llu "
          "cwndWaitUs=%llu paceSkips=%llu answers=%llu answerUs=%llu cwnd=%llu inflight=%llu srttUs=%.1f minRttUs=%.1f rateMBs=%.1f "
          "ssthresh=%llu recoveryAgoMs=%.1f lost=%llu dropped=%llu ptoCount=%zu acksFirst=%llu acksSplit=%llu unpaced=%llu\n",
          server_ ? "server" : "client", static_cast<void*>(this), why, int(getpid()), double(now) / 1e9, (unsigned long long)packets_sent, (unsigned long long)packets_recv,
          (unsigned long long)c.flushes, (unsigned long long)c.stream_bytes, (unsigned long long)c.stop_cwnd, (unsigned long long)c.stop_pacing,
          (unsigned long long)c.stop_blocked, (unsigned long long)c.stop_data, (unsigned long long)c.timer_fires, (unsigned long long)c.timer_acks,
          (unsigned long long)c.timer_late_us, (unsigned long long)c.credit_held, (unsigned long long)c.writable_waits, (unsigned long long)c.cwnd_wait_us, (unsigned long long)c.pace_skips, (unsigned long long)c.answers, (unsigned long long)c.answer_us,
          (unsigned long long)st.cwnd, (unsigned long long)st.bytes_in_flight, double(st.smoothed_rtt) / 1000, double(st.min_rtt) / 1000,
          double(st.delivery_rate_sec) / 1e6, (unsigned long long)st.ssthresh,
          st.congestion_recovery_start_ts == UINT64_MAX ? -1.0 : double(now - st.congestion_recovery_start_ts) / 1e6, (unsigned long long)lost,
          (unsigned long long)send_dropped, st.pto_count, (unsigned long long)c.acks_first, (unsigned long long)c.acks_split,
          (unsigned long long)c.unpaced);
}

Napi::Object Conn::Info(Napi::Env env) {
  Napi::Object out = Napi::Object::New(env);
  if (!conn_) return out;
  ngtcp2_conn_stat st;
  ngtcp2_conn_get_conn_stat(conn_, &st);
  out.Set("rttMs", double(st.smoothed_rtt) / NGTCP2_MILLISECONDS);
  out.Set("cwnd", double(st.cwnd));
  out.Set("sent", double(packets_sent));
  out.Set("recv", double(packets_recv));
  uint64_t lost = closed_stream_losses_;
  for (auto& [id, stream] : streams_) {
    if (!stream->write_closed) lost += ngtcp2_conn_get_stream_loss_count(conn_, id);
  }
  out.Set("lost", double(lost));
  const ngtcp2_path* path = ngtcp2_conn_get_path(conn_);
  sockaddr_storage addr{};
  memcpy(&addr, path->local.addr, std::min<size_t>(path->local.addrlen, sizeof(addr)));
  out.Set("localAddress", SockaddrToObject(env, addr));
  memset(&addr, 0, sizeof(addr));
  memcpy(&addr, path->remote.addr, std::min<size_t>(path->remote.addrlen, sizeof(addr)));
  out.Set("remoteAddress", SockaddrToObject(env, addr));
  dgram_room_ = DatagramRoom();
  out.Set("maxDatagramSize", double(dgram_room_));
  out.Set("pathPayload", double(PathPayload()));
  out.Set("pmtud", pmtud_);
  gnutls_datum_t sel;
  bool selected = session_ && gnutls_alpn_get_selected_protocol(session_, &sel) == 0;
  out.Set("aead", AeadName(conn_));
  out.Set("alpn", selected ? Napi::String::New(env, reinterpret_cast<const char*>(sel.data), sel.size) : Napi::String::New(env, ""));
  out.Set("sendErrors", double(send_errors));
  out.Set("sendDropped", double(send_dropped));
  out.Set("streams", double(streams_.size()));
  Napi::Object c = Napi::Object::New(env);
  c.Set("flushes", double(counters.flushes));
  c.Set("streamBytes", double(counters.stream_bytes));
  c.Set("stopCwnd", double(counters.stop_cwnd));
  c.Set("stopPacing", double(counters.stop_pacing));
  c.Set("stopBlocked", double(counters.stop_blocked));
  c.Set("stopData", double(counters.stop_data));
  c.Set("timerFires", double(counters.timer_fires));
  c.Set("timerAcks", double(counters.timer_acks));
  c.Set("timerLateUs", double(counters.timer_late_us));
  c.Set("creditHeld", double(counters.credit_held));
  c.Set("writableWaits", double(counters.writable_waits));
  c.Set("cwndWaitUs", double(counters.cwnd_wait_us));
  c.Set("paceSkips", double(counters.pace_skips));
  c.Set("answers", double(counters.answers));
  c.Set("answerUs", double(counters.answer_us));
  c.Set("keyUpdates", double(counters.key_updates));
  c.Set("acksFirst", double(counters.acks_first));
  c.Set("acksSplit", double(counters.acks_split));
  c.Set("unpaced", double(counters.unpaced));
  c.Set("pumpReads", double(counters.pump_reads));
  c.Set("pumpReadBytes", double(counters.pump_read_bytes));
  c.Set("pumpReadMax", double(counters.pump_read_max));
  c.Set("ringEnters", double(counters.ring_enters));
  c.Set("ringWrites", double(counters.ring_writes));
  c.Set("ringShort", double(counters.ring_short));
  c.Set("opensDialed", double(opens_dialed));
  c.Set("opensPumped", double(opens_pumped));
  c.Set("minRttUs", double(st.min_rtt) / 1000);
  c.Set("bytesInFlight", double(st.bytes_in_flight));
  out.Set("counters", c);
  return out;
}

Napi::Array Conn::PeerCertificates(Napi::Env env) {
  Napi::Array out = Napi::Array::New(env);
  if (!session_) return out;
  unsigned n = 0;
  const gnutls_datum_t* certs = gnutls_certificate_get_peers(session_, &n);
  for (unsigned i = 0; certs && i < n; i++) out.Set(i, Napi::Buffer<uint8_t>::Copy(env, certs[i].data, certs[i].size));
  return out;
}

uint64_t Conn::StreamsLeft() { return Usable() && ngtcp2_conn_get_handshake_completed(conn_) ? ngtcp2_conn_get_streams_bidi_left(conn_) : 0; }

// ------------------------------------------------------------------ receiving

void Conn::Read(const ngtcp2_path& path, const uint8_t* data, size_t len, uint64_t ts) {
  if (closing_) {
    // RFC 9000 §10.2.1: limit what a closing endpoint sends. The 1st, 2nd, 4th, 8th... late
    // packet is answered: a peer that lost the close still hears it, and a flood that carries
    // the connection's ID (one packet each, to the peer's recorded path) gets log2 of it.
    if (++closing_reads_ >= closing_next_resend_) {
      closing_next_resend_ *= 2;
      ResendClose();
    }
    return;
  }
  if (!Usable()) return;
  packets_recv++;
  if (read_ts_ == 0) read_ts_ = ts;
  ngtcp2_pkt_info pi{};
  int rv = ngtcp2_conn_read_pkt(conn_, &path, &pi, data, len, ts);
  if (rv != 0) {
    HandleReadError(rv);
    return;
  }
  if (awaiting_answer_) {
    awaiting_answer_ = false;
    Event(kEvAnswered, 0, 0, nullptr, 0);
  }
  Dirty();
}

void Conn::HandleReadError(int rv) {
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
    case NGTCP2_ERR_RETRY:
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
    unsigned status = server_ ? 0 : gnutls_session_get_verify_cert_status(session_);
    if (!server_ && status == 0 && gnutls_certificate_verify_peers3(session_, server_name_.empty() ? nullptr : server_name_.c_str(), &status) != 0) status = 0;
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

void Conn::OnTimer(uv_timer_t* handle) {
  auto* self = static_cast<Conn*>(handle->data);
  if (self && self->closing_) {
    self->closing_ = false;  // the closing period is over: the host forgets the connection
    self->host_->Finished(self);
    self->host_->AfterTimer(self);
    return;
  }
  if (!self || !self->Usable()) return;
  uint64_t now = Now();
  self->counters.timer_fires++;
  bool idle = self->sendq_.empty();
  uint64_t due = self->timer_due_;
  self->flush_pkts_ = 0;
  int rv = ngtcp2_conn_handle_expiry(self->conn_, now);
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
    if (idle && self->flush_pkts_ > 0) {
      self->counters.timer_acks++;
      if (now > due) self->counters.timer_late_us += (now - due) / 1000;
    }
  }
  self->host_->AfterTimer(self);
}

// ------------------------------------------------------------------ sending

namespace {

// OXY_NGTCP2_FLUSH=one: the old rhythm (a stream sends one packet per flush), for A/B runs.
bool OneStreamPerFlush() {
  static const bool one = [] {
    const char* v = getenv("OXY_NGTCP2_FLUSH");
    return v != nullptr && strcmp(v, "one") == 0;
  }();
  return one;
}

}  // namespace

size_t Conn::PathPayload() const {
  if (!conn_) return 0;
  // With shaping on (PMTUD) ngtcp2's path value is the size probes found so far (1,200 before).
  size_t payload = pmtud_ ? std::min<size_t>(payload_, ngtcp2_conn_get_path_max_tx_udp_payload_size(conn_)) : payload_;
  const ngtcp2_transport_params* remote = ngtcp2_conn_get_remote_transport_params(conn_);
  if (remote && remote->max_udp_payload_size) payload = std::min<size_t>(payload, remote->max_udp_payload_size);
  return payload;
}

size_t Conn::DatagramRoom() const {
  const ngtcp2_transport_params* remote = conn_ ? ngtcp2_conn_get_remote_transport_params(conn_) : nullptr;
  if (!remote || remote->max_datagram_frame_size == 0) return 0;
  // Room in one packet: the short header (1 + 20-byte DCID + 4 packet number), AEAD tag,
  // DATAGRAM frame type and length.
  size_t payload = PathPayload();
  size_t room = payload > 64 ? payload - 1 - 20 - 4 - 16 - 1 - 4 : 0;
  return std::min<size_t>(room, remote->max_datagram_frame_size > 5 ? remote->max_datagram_frame_size - 5 : 0);
}

void Conn::Flush() {
  if (!Usable()) return;
  const bool fd_work = !pump_out_.empty() || !answer_out_.empty();
  // OXY_QUIC_ACK_FIRST=1: a bulk receiver acknowledges before it writes what it read to its
  // sockets, so that the sender (its window full, waiting for this ACK) sends its next burst on the
  // other core meanwhile instead of after this process's writes. Opt-in: on the loaded machine of
  // session 21 the ACK left 25-35 % sooner, but the bursts grew smaller and more frequent (ACKs
  // +15-30 %), and device → host cost more CPU per MB in 4 of 4 pairs (docs/decisions.md "The
  // vnet path's -R: who waits on what (session 21)"). A small read keeps one pass either way.
  if (fd_work && read_bytes_ >= kAckFirstBytes && ack_first_) {
    WritePackets();
    host_->TxSend();
    if (!Usable()) return;
    counters.acks_first++;
  }
  read_bytes_ = 0;
  if (!pump_out_.empty()) FlushPumps();
  if (!answer_out_.empty()) FlushAnswers();
  WritePackets();
}

bool Conn::AckEarly() {
  if (!ack_split_ || in_flush_ || read_bytes_ < kAckFirstBytes || !Usable()) return false;
  WritePackets();
  if (flush_pkts_ == 0) return false;
  counters.acks_split++;
  return true;
}

void Conn::WritePackets() {
  in_flush_ = true;
  window_full_ = false;
  flush_gen_++;
  uint64_t ts = Now();
  if (key_update_every_ && confirmed_ && packets_sent >= key_update_at_ && ngtcp2_conn_initiate_key_update(conn_, ts) == 0) {
    key_update_at_ = packets_sent + key_update_every_;
    counters.key_updates++;
  }
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  size_t total_pkts = 0;
  uint64_t total_bytes = 0;
  const uint64_t bytes_at_start = counters.stream_bytes;
  bool fatal = false;
  ngtcp2_ssize nwrite = 0;
  std::vector<int64_t> requeue;
  // Handshake packets at the size JS chose: a client pads its Initial to the room it is given,
  // and a 64 KB Initial was never answered (quiche's listener reads 16 KB slots).
  const size_t max = ngtcp2_conn_get_handshake_completed(conn_) ? payload_ : std::min<size_t>(payload_, settings_.max_payload);
  while (total_pkts < kMaxPacketsPerFlush) {
    uint8_t* dest = host_->TxSlot();
    nwrite = 0;
    bool dgram_tried = false;
    for (;;) {
      ngtcp2_pkt_info pi{};
      if (!datagrams_.empty() && !dgram_tried) {
        dgram_tried = true;
        std::vector<uint8_t>& d = datagrams_.front();
        if (d.size() > DatagramRoom()) {
          // Larger than this path's packets take now (JS checked an older size): dropped, as a
          // lossy path would; left queued it would hold every datagram behind it.
          datagrams_.pop_front();
          dgram_tried = false;
          continue;
        }
        ngtcp2_vec v = {d.data(), d.size()};
        int accepted = 0;
        nwrite = ngtcp2_conn_writev_datagram(conn_, &ps.path, &pi, dest, max, &accepted, NGTCP2_WRITE_DATAGRAM_FLAG_MORE, 0, &v, 1, ts);
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
      nwrite = ngtcp2_conn_writev_stream(conn_, &ps.path, &pi, dest, max, &datalen, flags, id, vecs, nvec, ts);
      if (s && datalen >= 0) {
        Advance(s, uint64_t(datalen), (flags & NGTCP2_WRITE_STREAM_FLAG_FIN) != 0);
        counters.stream_bytes += uint64_t(datalen);
      }
      if (nwrite == NGTCP2_ERR_WRITE_MORE) {
        if (s && s->HasWork()) requeue.push_back(s->id);
        continue;
      }
      if (nwrite == NGTCP2_ERR_STREAM_DATA_BLOCKED) {
        if (s->blocked_gen != flush_gen_) counters.stop_blocked++;
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
      // A full packet: the stream goes to the back of this flush's queue (round robin) and
      // sends again in the next packet. Held back until the flush ended, a single bulk stream
      // sent one packet per flush and waited for the next wake-up (a pacing timer, an ACK) for
      // each of the others: one 16 KB sendmmsg per wake-up.
      if (s && s->HasWork() && !OneStreamPerFlush()) {
        s->in_queue = true;
        sendq_.push_back(s->id);
      } else if (s && s->HasWork()) {
        requeue.push_back(s->id);
      }
      break;
    }
    if (fatal) {
      ngtcp2_connection_close_error ccerr;
      ngtcp2_connection_close_error_default(&ccerr);
      ngtcp2_connection_close_error_set_transport_error_liberr(&ccerr, int(nwrite), nullptr, 0);
      SendClose(ccerr);
      const char* what = ngtcp2_strerror(int(nwrite));
      CloseEvent(kCloseLocalError, ccerr.error_code, reinterpret_cast<const uint8_t*>(what), strlen(what));
      Finish();
      in_flush_ = false;
      return;
    }
    if (nwrite == 0) {
      // Why it stopped with stream bytes waiting (not for credit: counted above). A look at the
      // first few queued streams is enough to tell; a flush with a thousand waiting stays cheap.
      bool waiting = false;
      auto sendable = [&](int64_t id) {
        Stream* w = Find(id);
        return w && w->HasWork() && w->blocked_gen != flush_gen_;
      };
      for (size_t i = 0; i < sendq_.size() && i < 8 && !waiting; i++) waiting = sendable(sendq_[i]);
      for (size_t i = 0; i < requeue.size() && i < 8 && !waiting; i++) waiting = sendable(requeue[i]);
      if (waiting) {
        if (ngtcp2_conn_get_max_data_left(conn_) == 0) counters.stop_data++;
        else if (ngtcp2_conn_get_cwnd_left(conn_) < payload_) {
          counters.stop_cwnd++;
          window_full_ = true;
          if (cwnd_stop_ts_ == 0) cwnd_stop_ts_ = ts;
        } else {
          counters.stop_pacing++;
        }
      }
      break;
    }
    host_->TxPush(this, ps.path, size_t(nwrite));
    total_pkts++;
    total_bytes += uint64_t(nwrite);
  }
  flush_pkts_ = total_pkts;
  if (cwnd_stop_ts_ != 0 && counters.stream_bytes != bytes_at_start) {
    counters.cwnd_wait_us += (ts - cwnd_stop_ts_) / 1000;
    cwnd_stop_ts_ = 0;
  }
  if (total_pkts > 0) counters.flushes++;
  if (TraceMs() && ts >= trace_next_) Trace(ts, "");
  UpdatePacing(ts, total_bytes);
  if (pmtud_ && ngtcp2_conn_get_handshake_completed(conn_)) {
    // A probe was acknowledged: larger datagrams fit from now on (a few times per connection).
    const size_t room = DatagramRoom();
    if (room != dgram_room_) {
      dgram_room_ = room;
      const double value = double(room);
      Event(kEvDatagramRoom, 0, 0, reinterpret_cast<const uint8_t*>(&value), sizeof value);
    }
  }
  for (int64_t id : requeue) {
    if (Stream* s = Find(id)) Enqueue(s);
  }
  for (int64_t id : dead_) {
    Stream* s = Find(id);
    if (s && !s->in_queue) streams_.erase(id);
  }
  dead_.clear();
  in_flush_ = false;
  if (total_pkts > 0 && read_ts_ != 0) {
    // From the first packet read since the last flush that wrote packets to these packets (the
    // host sends them right after): how long what we read waits for our answer (an ACK, mostly).
    counters.answer_us += (Now() - read_ts_) / 1000;
    counters.answers++;
    read_ts_ = 0;
  }
  if (probing_) {
    probing_ = false;
    ngtcp2_conn_set_keep_alive_timeout(conn_, settings_.keep_alive_ms * NGTCP2_MILLISECONDS);  // 0 is off
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
    if (server_ && !close_packet_.empty()) EnterClosing();
    else Finish();
    return;
  }
  // Cap reached with more to send: go on next turn.
  if (total_pkts >= kMaxPacketsPerFlush) Dirty();
  ArmTimer();
}

// Pacing from the first RTT sample on: before it ngtcp2 paces at cwnd per initial RTT (333 ms),
// so the server's first flight (its certificate chain) held everything ack-eliciting after it
// — HANDSHAKE_DONE, the first response bytes — for ~110 ms.
//
// With OXY_QUIC_PACING=far (opt-in), only on a far path: one whose min RTT is 1 ms or more. ngtcp2 0.12
// sets the next packet's time to the flush's bytes ÷ (1.25 × cwnd ÷ smoothed RTT) later, and lets a
// packet out up to 1 ms early (NGTCP2_PKT_PACING_OVERHEAD); a flush holds at most about a window,
// so its pacing holds a sender back only while the smoothed RTT is above ~1.25 ms. On a path whose
// min RTT is below 1 ms (a local veth, loopback: 40–110 µs here) that is an RTT inflated by a
// stall, not the path: one sample of a process held off a CPU for 17–50 ms (1/8 of it lands in
// the average) paced the connector's window-limited -R sender at about a window per smoothed RTT
// (0.8–1.6 ms) until later samples brought the average down, -R at ~190–310 MB/s against ~400–550
// (docs/decisions.md "The vnet path's -R: the device's out-of-order segments were wireguard-go's").
// There the ACKs clock a window-limited sender, as Linux's TCP without fq is unpaced. The min RTT
// only falls during a path's life (a new path starts over: ngtcp2 resets it with the window), so a
// near path stays unpaced; a far path (an internet edge) keeps ngtcp2's pacing. Not the default:
// in quiet pairs (session 22, lead) it cost device → host ~15 % on the vnet path (the edge, the
// sender there, unpaced: 0.277–0.280x veth against 0.320–0.348x paced) and bought -R nothing
// without a stall. Unset or =1: every path paced; =0: none (pairs).
void Conn::UpdatePacing(uint64_t ts, uint64_t bytes) {
  ngtcp2_conn_stat st;
  ngtcp2_conn_get_conn_stat(conn_, &st);
  if (st.first_rtt_sample_ts == UINT64_MAX) return;
  constexpr uint64_t kNearMinRtt = NGTCP2_MILLISECONDS;
  const bool paced = pacing_ == Pacing::kAlways || (pacing_ == Pacing::kFar && st.min_rtt >= kNearMinRtt);
  if (!paced) {
    // ngtcp2 adds these bytes to the next pacing time it sets: only after a path change, but then
    // it would have held the new path for all that a near one sent (seconds).
    unpaced_bytes_ += bytes;
    if (bytes > 0) counters.unpaced++;
    return;
  }
  uint64_t from = ts;
  if (unpaced_bytes_ > 0) {
    // The time ngtcp2 0.12 would give those bytes (its formula), taken off the start: this
    // flush's bytes alone set the next packet's time.
    const double rate = st.pacing_rate > 0 ? st.pacing_rate : double(st.cwnd) / double(st.smoothed_rtt) * 1.25;
    const uint64_t owed = uint64_t(double(unpaced_bytes_) / rate);
    from = owed < ts ? ts - owed : 0;
    unpaced_bytes_ = 0;
  }
  ngtcp2_conn_update_pkt_tx_time(conn_, from);
}

// The next stream with data this flush can still send, round robin.
Stream* Conn::NextSendable(std::vector<int64_t>& requeue) {
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

size_t Conn::Vecs(Stream* s, ngtcp2_vec* out, size_t max) {
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

void Conn::Advance(Stream* s, uint64_t n, bool fin_offered) {
  s->sent += n;
  if (fin_offered && s->sent == s->total) s->fin_sent = true;
  if (s->want_writable && s->total - s->sent <= kStreamHighWater / 2) {
    s->want_writable = false;
    Event(kEvWritable, 0, s->id, nullptr, 0);
  }
  if (s->pump_blocked && s->total - s->sent <= kStreamHighWater / 2) ResumePump(s);
}

void Conn::SendClose(const ngtcp2_connection_close_error& ccerr) {
  if (!conn_ || ngtcp2_conn_is_in_closing_period(conn_) || ngtcp2_conn_is_in_draining_period(conn_)) return;
  ngtcp2_path_storage ps;
  ngtcp2_path_storage_zero(&ps);
  ngtcp2_pkt_info pi{};
  uint8_t* dest = host_->TxSlot();
  ngtcp2_ssize n = ngtcp2_conn_write_connection_close(conn_, &ps.path, &pi, dest, payload_, &ccerr, Now());
  if (n <= 0) return;
  if (server_) {
    // Kept for the closing period: sent again to whatever the peer still sends (EnterClosing).
    close_packet_.assign(dest, dest + n);
    memcpy(&close_local_, ps.path.local.addr, std::min<size_t>(ps.path.local.addrlen, sizeof(close_local_)));
    memcpy(&close_remote_, ps.path.remote.addr, std::min<size_t>(ps.path.remote.addrlen, sizeof(close_remote_)));
    close_local_len_ = ps.path.local.addrlen;
    close_remote_len_ = ps.path.remote.addrlen;
  }
  host_->TxPush(this, ps.path, size_t(n));
}

// RFC 9000 §10.2.1: a server that closed keeps its connection IDs for three PTOs and answers
// every packet with its CONNECTION_CLOSE again, so a peer whose copy was lost still reads the
// code and reason (not a stateless reset). JS is done with the connection already. Three PTOs
// are tens of ms on loopback: a peer whose next packet waits for a busy core a little longer got a
// stateless reset instead (seen at load 12), so the period lasts at least kMinClosingMs; what it
// holds per connection is the close packet and ngtcp2's state, gone when the listener closes.
void Conn::EnterClosing() {
  constexpr uint64_t kMinClosingMs = 1000;
  closed_ = true;
  closing_ = true;
  uint64_t ms = std::max<uint64_t>(kMinClosingMs, 3 * ngtcp2_conn_get_pto(conn_) / NGTCP2_MILLISECONDS);
  uv_timer_start(timer_, &Conn::OnTimer, ms, 0);
}

void Conn::ResendClose() {
  ngtcp2_path path = {{reinterpret_cast<sockaddr*>(&close_local_), close_local_len_}, {reinterpret_cast<sockaddr*>(&close_remote_), close_remote_len_}, nullptr};
  memcpy(host_->TxSlot(), close_packet_.data(), close_packet_.size());
  host_->TxPush(this, path, close_packet_.size());
}

void Conn::ArmTimer() {
  if (!Usable() || !timer_) return;
  uint64_t expiry = ngtcp2_conn_get_expiry(conn_);
  if (close_pending_ && close_deadline_ < expiry) expiry = close_deadline_;
  if (expiry == UINT64_MAX) {
    uv_timer_stop(timer_);
    return;
  }
  uint64_t now = Now();
  timer_due_ = expiry;
  // libuv's timers count whole milliseconds; on loopback ngtcp2's pacing (not with
  // OXY_QUIC_PACING=far, where a near path is not paced) asks for a few tens of µs between
  // bursts, and a 1 ms wait each time capped bulk at ~cwnd per ms (30–70 MB/s). Data waiting and
  // due within the millisecond: the host's precise timer flushes it then. Not while the window is
  // full: the pacing time then frees nothing (the next ACK does, and its read flushes), and a
  // window-limited sender woke for it about twice per burst to send nothing.
  if (expiry > now && expiry < now + NGTCP2_MILLISECONDS && !sendq_.empty()) {
    if (window_full_) {
      counters.pace_skips++;
    } else {
      host_->FlushAt(this, expiry);
      expiry = now + NGTCP2_MILLISECONDS;  // the uv_timer stays armed behind it, for the other deadlines
    }
  }
  uint64_t ms = expiry <= now ? 0 : (expiry - now + NGTCP2_MILLISECONDS - 1) / NGTCP2_MILLISECONDS;
  uv_timer_start(timer_, &Conn::OnTimer, ms, 0);
}

// ------------------------------------------------------------------ teardown

void Conn::Finish() {
  if (closed_) return;
  closed_ = true;
  if (timer_) uv_timer_stop(timer_);
  host_->Finished(this);
}

void Conn::Teardown() {
  closed_ = true;
  closing_ = false;
  ClosePumps();
  CloseAllAnswers();
  if (fin_hold_timer_) {
    fin_hold_timer_->Close();
    fin_hold_timer_.reset();
  }
  fin_held_.clear();
  if (reset_flush_timer_) {
    reset_flush_timer_->Close();
    reset_flush_timer_.reset();
  }
  reset_flushing_.clear();
  if (timer_) {
    uv_timer_stop(timer_);
    timer_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    timer_ = nullptr;
  }
  if (keepalive_timer_) {
    uv_timer_stop(keepalive_timer_);
    keepalive_timer_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(keepalive_timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    keepalive_timer_ = nullptr;
  }
  keepalive_due_.clear();
  admitted_opens_.clear();
  open_epoch_ = nullptr;
  open_ok_.clear();
  if (conn_) {
    ngtcp2_conn_del(conn_);
    conn_ = nullptr;
  }
  if (session_) {
    gnutls_deinit(session_);
    session_ = nullptr;
  }
  streams_.clear();
  sendq_.clear();
  datagrams_.clear();
}

}  // namespace quic

void InitQuicCore(Napi::Env env, Napi::Object exports) {
  exports.Set("addressKind", Napi::Function::New(env, quic::AddressKindJs, "addressKind"));
}

}  // namespace oxy
