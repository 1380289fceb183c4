// A QUIC stream pumped to and from a TCP socket without JS (docs/decisions.md "QUIC streams
// pumped natively"): the connector's origin socket of an `http1` stream. The fd's bytes become
// the stream's DATA frames (transport/quic/framing.ts) in the readable callback and leave with the
// turn's flush; JS's bytes for the fd (request heads and bodies) are written at the start of the
// flush, one write per turn. Backpressure both ways: reads stop while the stream has more than
// kStreamHighWater unsent (the peer's flow control), JS pauses its stream while the fd's bytes are
// above it (kPumpDrain). JS hears, per request, the answer's status (a lazy record) and, once,
// the fd's end; it closes the pump.
//
// The stream's receive side (StreamRecv), once JS hands it over at a boundary: frames and http1
// records are read here, BODY bytes go to the fd without JS (credit held back while the fd has
// more than kStreamHighWater unsent), each HEAD goes to JS for the rule choice and what follows
// it waits for JS's answer: the head written (PumpWrite with head) or the pump closed. Whatever
// JS reads itself from then on (records while no pump is armed, the END) comes as whole frames
// made here. See docs/decisions.md "The connector's receive side pumped natively (session 9)".
#include "quic-core.h"

#include "accept.h"
#include "fastnat.h"
#include "uring.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <strings.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace oxy {
namespace quic {

namespace {
constexpr size_t kFrameHeader = 5;
// A non-blocking connect's outcome, once its socket turned writable: 0 or the errno. Asked only
// where epoll said error or hang-up (kFdWatchError): without, the socket had no error (tcp_poll
// reports sk_err as EPOLLERR), and a getsockopt per connection less.
int ConnectError(int fd, int events) {
  if (!(events & kFdWatchError)) return 0;
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
  return err;
}
// OXY_FLOW_PUMP_AT_OPEN=0: an OPEN dialled as it is read (AdmitOpen) gets its pump from JS, as a JS dial's does.
bool PumpAtOpenOn() {
  static const bool on = EnvSwitchOn("OXY_FLOW_PUMP_AT_OPEN");
  return on;
}
bool CloseShuts() {
  static const bool on = EnvSwitchOn("OXY_FLOW_CLOSE_SHUTS");
  return on;
}
constexpr int kReadsPerWake = 16;
// A read at least this long (and at least a quarter of the buffer: PumpRead) becomes the chunk
// itself (no copy); a shorter one is copied into a chunk of its size, so a small answer does not
// hold the whole buffer (kPumpReadBytes) until it is acknowledged.
constexpr size_t kKeepRead = 16 * 1024;
// IPv4's default MSS (RFC 9293): a write of at most this is one segment on the edge's TUN.
constexpr size_t kOneSegment = 536;

uint32_t Be32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]); }

void PutBe32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v >> 24);
  p[1] = uint8_t(v >> 16);
  p[2] = uint8_t(v >> 8);
  p[3] = uint8_t(v);
}

// Bytes for JS: inside the DATA frame being filled (a new one when none is, or it is full).
void JsPayload(StreamRecv& r, const uint8_t* d, size_t n) {
  while (n > 0) {
    if (r.open == SIZE_MAX) {
      r.open = r.js.size();
      const uint8_t h[kFrameHeader] = {kFrameData, 0, 0, 0, 0};
      r.js.insert(r.js.end(), h, h + kFrameHeader);
    }
    size_t have = r.js.size() - r.open - kFrameHeader;
    size_t take = std::min<size_t>(n, kMaxFramePayload - have);
    r.js.insert(r.js.end(), d, d + take);
    d += take;
    n -= take;
    if (have + take == kMaxFramePayload) {
      PutBe32(&r.js[r.open + 1], kMaxFramePayload);
      r.open = SIZE_MAX;
    }
  }
}

void JsCloseFrame(StreamRecv& r) {
  if (r.open == SIZE_MAX) return;
  PutBe32(&r.js[r.open + 1], uint32_t(r.js.size() - r.open - kFrameHeader));
  r.open = SIZE_MAX;
}

// Bytes for JS as they came (after the frames before them).
void JsRaw(StreamRecv& r, const uint8_t* d, size_t n) {
  JsCloseFrame(r);
  r.js.insert(r.js.end(), d, d + n);
}

// Fills the record header from `d`; true once it is whole (type and length read, r.rfill back
// to 0). A record JS's reader refuses (protocol/http1.ts: unknown type, longer than kMaxRecord;
// an empty HEAD does not decode) sets rbad.
bool TakeRecordHeader(StreamRecv& r, const uint8_t*& d, size_t& n) {
  size_t take = std::min<size_t>(kFrameHeader - r.rfill, n);
  memcpy(r.rhdr + r.rfill, d, take);
  r.rfill += uint8_t(take);
  d += take;
  n -= take;
  if (r.rfill < kFrameHeader) return false;
  r.rfill = 0;
  r.rtype = r.rhdr[0];
  r.rleft = Be32(r.rhdr + 1);
  if (r.flows) {
    // tcp-flows records (protocol/tcp-flows.ts FlowRecordParser's limits).
    const uint8_t t = r.rtype;
    const bool ok = (t == kFlowData && r.rleft <= kMaxFlowData) || ((t == kFlowEnd || t == kFlowReset) && r.rleft == 0) ||
                    ((t == kFlowOpen || t == kFlowAnswer) && r.rleft > 0 && r.rleft <= kMaxFlowHeader);
    if (!ok) r.rbad = true;
    return true;
  }
  if ((r.rtype != kRecordHead && r.rtype != kRecordBody) || r.rleft > kMaxRecord || (r.rtype == kRecordHead && r.rleft == 0)) r.rbad = true;
  return true;
}

// Gathers the record's payload into r.head from `d`; true once it is whole.
bool TakeRecordPayload(StreamRecv& r, const uint8_t*& d, size_t& n) {
  const size_t take = std::min<size_t>(r.rleft, n);
  r.head.insert(r.head.end(), d, d + take);
  r.rleft -= uint32_t(take);
  d += take;
  n -= take;
  return r.rleft == 0;
}

}  // namespace

// OXY_FLOW_EARLY_AT_ACCEPT=0: an accepted socket's first chunk is read at its watch's first wake-up
// (a turn after the accept, the OPEN gone alone), as before session 22.
namespace {
bool EarlyAtAccept() {
  static const bool on = EnvSwitchOn("OXY_FLOW_EARLY_AT_ACCEPT");
  return on;
}
}  // namespace

// ------------------------------------------------------------------ OutQueue

namespace {
// Blocks kept for reuse per thread (4 MiB): a backlog larger than that is freed as it drains.
constexpr size_t kPoolBlocks = 64;
thread_local std::vector<std::unique_ptr<uint8_t[]>> block_pool;
}  // namespace

uint8_t* OutQueue::TakeBlock() {
  if (block_pool.empty()) return new uint8_t[kBlock];
  uint8_t* b = block_pool.back().release();
  block_pool.pop_back();
  return b;
}

void OutQueue::GiveBlock(uint8_t* block) {
  if (block_pool.size() < kPoolBlocks) block_pool.emplace_back(block);
  else delete[] block;
}

void OutQueue::Append(const uint8_t* data, size_t len) {
  size_ += len;
  while (len > 0) {
    if (blocks_.empty() || blocks_.back().end == kBlock) blocks_.push_back(Block{TakeBlock(), 0, 0});
    Block& b = blocks_.back();
    const size_t take = std::min(len, kBlock - b.end);
    memcpy(b.data + b.end, data, take);
    b.end += take;
    data += take;
    len -= take;
  }
}

void OutQueue::Clear() {
  for (Block& b : blocks_) GiveBlock(b.data);
  blocks_.clear();
  size_ = 0;
}

int OutQueue::Iov(iovec* iov) const {
  int n = 0;
  for (auto it = blocks_.begin(); it != blocks_.end() && n < int(kWriteBlocks); ++it) iov[n++] = {it->data + it->begin, it->end - it->begin};
  return n;
}

void OutQueue::Consume(size_t left) {
  size_ -= left;
  while (left > 0) {
    Block& b = blocks_.front();
    const size_t take = std::min(left, b.end - b.begin);
    b.begin += take;
    left -= take;
    if (b.begin == b.end) {
      GiveBlock(b.data);
      blocks_.pop_front();
    }
  }
}

ssize_t OutQueue::WriteTo(int fd, bool more) {
  iovec iov[kWriteBlocks];
  const int n = Iov(iov);
  if (n == 0) return 0;
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = size_t(n);
  ssize_t w;
  do w = more ? sendmsg(fd, &msg, MSG_MORE) : writev(fd, iov, n);
  while (w < 0 && errno == EINTR);
  if (w < 0) return -errno;
  Consume(size_t(w));
  return w;
}

bool Conn::AttachPump(int64_t id, int socket_fd, int mode, int source, const uint8_t* ok, size_t ok_len, const uint8_t* open,
                      size_t open_len) {
  Stream* s = Usable() ? Find(id) : nullptr;
  if (!s || s->write_closed || s->fin) return false;
  // Mode 3: a flows pump (2) whose stream's next OPEN is read here once its flow is over.
  if (mode == 3) {
    if (source == kPumpAtAnswer || source == kPumpAtAnswerEarly) return false;
    s->open_events = true;
    mode = 2;
  }
  if (source == kPumpAtAnswer || source == kPumpAtAnswerEarly) {
    // Nothing is taken yet: the ANSWER read here does it (RecvAnswer).
    if (mode != 2 || ok_len == 0 || ok_len > kMaxFlowHeader || pumps_.find(id) != pumps_.end() || s->at_answer != 0) return false;
    if (open_len > kMaxFlowHeader) return false;
    const bool early_now = source == kPumpAtAnswerEarly && EarlyAtAccept();
    if (source == kPumpAtAnswerEarly && !ReadAcceptedFirst(double(socket_fd), loop_, &Conn::EarlyChunk, this, id, early_now)) return false;
    s->at_answer = double(socket_fd);
    s->answer_ok.assign(ok, ok + ok_len);
    // The flow's OPEN, given here (no write of JS's): before the early chunk.
    if (open_len > 0) FlowRecord(s, kFlowOpen, open, open_len);
    // The chunk read now when it is there (OXY_FLOW_EARLY_AT_ACCEPT=0: at the watch's wake-up, a
    // turn later): the OPEN and the request leave in this turn's flush, in one packet.
    if (early_now) ReadAcceptedNow(double(socket_fd), loop_);
    return true;
  }
  if (source == kPumpFromDial || source == kPumpAtConnect) {
    auto d = dials_.find(double(socket_fd));
    if (d == dials_.end() || (d->second.connecting != nullptr) != (source == kPumpAtConnect)) return false;
    if (source == kPumpAtConnect && (mode != 2 || ok_len == 0 || ok_len > kMaxFlowHeader)) return false;
  }
  // The pump before (an OPEN read here and held for this one is not given back: ClosePump would).
  if (pumps_.find(id) != pumps_.end() || s->at_answer != 0) ClosePump(id);
  // Our own descriptor: JS closes its socket (a close of one of two descriptors sends no FIN); a
  // dial's or an accepted socket is taken as it is, with its watch.
  FdWatch* watch = nullptr;
  int keepalive_s = 0;
  int fd = source == kPumpFromDial || source == kPumpAtConnect ? TakeDialFd(double(socket_fd), &watch, &keepalive_s)
           : source == kPumpFromAccepted ? TakeAcceptedWatched(double(socket_fd), loop_, &watch)
                                         : fcntl(socket_fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return false;
  if (source == kPumpFromFd) {
    // As libuv's uv_poll_init made it (a duplicate shares the socket's file flags).
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0 && !(flags & O_NONBLOCK)) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  }
  auto p = std::make_unique<Pump>();
  p->conn = this;
  p->id = id;
  p->fd = fd;
  p->watch = watch ? watch : NewFdWatch(loop_, fd);
  if (!p->watch) {
    close(fd);
    return false;
  }
  p->watch->data = p.get();
  // A taken watch may still want what the dial or the early read wanted: the pump's callback at
  // once (no epoll_ctl), its events below (one MOD only where they differ).
  p->events = p->watch->events;
  SetFdWatch(p->watch, p->events, &Conn::OnPumpWatch);
  p->plain = mode != 0;
  p->flows = mode == 2;
  p->dialed = source == kPumpFromDial || source == kPumpAtConnect;
  if (source == kPumpAtConnect) {
    p->connecting = true;
    p->answer_due = true;
    p->dial_token = double(socket_fd);
    p->answer.assign(ok, ok + ok_len);
  }
  Pump* raw = p.get();
  pumps_[id] = std::move(p);
  if (keepalive_s > 0) KeepAliveLater(raw, keepalive_s);
  PumpWatch(raw);
  return true;
}

// ------------------------------------------------------------------ dials

namespace {

// As libuv's uv_tcp_keepalive (Node's keepAliveInitialDelay): the first probe after `idle_s` with
// nothing received, then one a second, ten at most. SO_KEEPALIVE first: TCP_KEEPIDLE on a socket
// whose keep-alive is on arms the timer for `idle_s` after the last segment received
// (tcp_sock_set_keepidle_locked), so set late, before that time passed, the probes come when they
// would have come had it been set at the connect.
void SetKeepAlive(int fd, int idle_s) {
  int one = 1, intvl = 1, cnt = 10;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

}  // namespace

double Conn::Dial(const uint8_t* addr, size_t addr_len, int port, int keepalive_ms, bool keepalive_late) {
  if (!Usable()) return -ENOTCONN;
  sockaddr_storage ss{};
  socklen_t len;
  if (addr_len == 4) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(uint16_t(port));
    memcpy(&a->sin_addr, addr, 4);
    len = sizeof(sockaddr_in);
  } else if (addr_len == 16) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(uint16_t(port));
    memcpy(&a->sin6_addr, addr, 16);
    len = sizeof(sockaddr_in6);
  } else {
    return -EINVAL;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  // As Node's net.connect({ noDelay, keepAlive, keepAliveInitialDelay }) sets them; the keep-alive
  // here or, late, once the flow lived long enough to need it (KeepAliveSweep).
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int keepalive_s = keepalive_ms > 0 ? std::max(1, keepalive_ms / 1000) : 0;
  if (keepalive_s > 0 && !keepalive_late) {
    SetKeepAlive(fd, keepalive_s);
    keepalive_s = 0;
  }
  int rv;
  do rv = connect(fd, reinterpret_cast<sockaddr*>(&ss), len);
  while (rv != 0 && errno == EINTR);
  if (rv != 0 && errno != EINPROGRESS) {
    int e = errno;
    close(fd);
    return -e;
  }
  FdWatch* watch = NewFdWatch(loop_, fd);
  if (!watch) {
    close(fd);
    return -EIO;
  }
  const double token = ++dial_seq_;
  auto* connecting = new DialPoll{this, token};
  watch->data = connecting;
  dials_[token] = DialState{fd, watch, connecting, keepalive_s};
  // Writable once the connect finished, either way (SO_ERROR says how).
  if (SetFdWatch(watch, UV_WRITABLE, &Conn::OnDialWatch) != 0) {
    dials_.erase(token);
    delete connecting;
    FreeFdWatch(watch);
    close(fd);
    return -EIO;
  }
  return token;
}

void Conn::OnDialWatch(FdWatch* handle, int events) {
  auto* connecting = static_cast<DialPoll*>(handle->data);
  if (!connecting) {
    SetFdWatch(handle, 0, &Conn::OnDialWatch);
    return;
  }
  Conn* self = connecting->conn;
  const double token = connecting->token;
  auto it = self->dials_.find(token);
  if (it == self->dials_.end()) return;
  // Still wanting UV_WRITABLE: the pump that takes the socket, mostly in this same loop turn (JS
  // hears kPumpDialed at this turn's flush), wants it too with the edge's early bytes queued, so
  // a MOD to nothing here and back there would be two epoll_ctls for none; woken again before a
  // pump took it, it wants nothing (above).
  handle->data = nullptr;
  delete connecting;
  it->second.connecting = nullptr;
  self->PumpNumber(kPumpDialed, int64_t(token), double(ConnectError(it->second.fd, events)));
}

int Conn::TakeDialFd(double token, FdWatch** watch, int* keepalive_s) {
  auto it = dials_.find(token);
  if (it == dials_.end()) return -1;
  DialState d = it->second;
  dials_.erase(it);
  if (keepalive_s) *keepalive_s = d.keepalive_s;
  else if (d.keepalive_s > 0) SetKeepAlive(d.fd, d.keepalive_s);  // JS's socket from here on
  d.watch->data = nullptr;
  if (watch) {
    // The taker sets its own callback and events at once (AttachPump).
    *watch = d.watch;
  } else {
    FreeFdWatch(d.watch);
  }
  delete d.connecting;
  return d.fd;
}

void Conn::CloseDial(double token) {
  int keepalive_s = 0;
  const int fd = TakeDialFd(token, nullptr, &keepalive_s);
  if (fd >= 0) close(fd);
}

// Per idle time, the sweep wakes about four times while new flows come: each wake-up sets the
// keep-alive of every pump born up to a quarter idle time after the first one due (so each is set
// between a quarter and a half of its idle time after its dial, before a probe was due). Entries
// are due in the order they come (the connector has one keep-alive time); a pump gone, or another
// flow's on the stream since, is skipped.
void Conn::KeepAliveLater(Pump* p, int keepalive_s) {
  p->keepalive_s = keepalive_s;
  p->keepalive_serial = ++keepalive_seq_;
  const uint64_t now = uv_now(loop_), quarter = uint64_t(keepalive_s) * 250;
  keepalive_due_.push_back(KeepAliveDue{p->id, p->keepalive_serial, now + quarter, now + 2 * quarter});
  if (!keepalive_timer_) {
    keepalive_timer_ = new uv_timer_t();
    uv_timer_init(loop_, keepalive_timer_);
    keepalive_timer_->data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(keepalive_timer_));
  }
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(keepalive_timer_))) uv_timer_start(keepalive_timer_, &Conn::KeepAliveSweep, 2 * quarter, 0);
}

void Conn::KeepAliveSweep(uv_timer_t* handle) {
  auto* self = static_cast<Conn*>(handle->data);
  if (!self) return;
  const uint64_t now = uv_now(self->loop_);
  auto& due = self->keepalive_due_;
  while (!due.empty() && due.front().from <= now) {
    const KeepAliveDue k = due.front();
    due.pop_front();
    auto it = self->pumps_.find(k.id);
    Pump* p = it != self->pumps_.end() ? it->second.get() : nullptr;
    if (p && p->keepalive_serial == k.serial && !p->ended) SetKeepAlive(p->fd, p->keepalive_s);
  }
  if (!due.empty()) uv_timer_start(handle, &Conn::KeepAliveSweep, due.front().by > now ? due.front().by - now : 0, 0);
}

int Conn::TakeDial(double token) { return TakeDialFd(token, nullptr); }

void Conn::AdmitOpen(const uint8_t* payload, size_t len, const uint8_t* addr, size_t addr_len, int port, int keepalive_ms, bool keepalive_late,
                     const int32_t* epoch, const uint8_t* ok, size_t ok_len) {
  if (ok_len > 0 && ok_len <= kMaxFlowHeader) open_ok_.assign(ok, ok + ok_len);
  if (!epoch || len == 0 || len > kMaxAdmittedOpenBytes || (addr_len != 4 && addr_len != 16)) return;
  // Another off-ramp's epoch (not in one connector): what the old one admitted no longer counts.
  if (epoch != open_epoch_) admitted_opens_.clear();
  open_epoch_ = epoch;
  if (admitted_opens_.size() >= kMaxAdmittedOpens) admitted_opens_.clear();
  AdmittedOpen& a = admitted_opens_[std::string(reinterpret_cast<const char*>(payload), len)];
  memcpy(a.addr, addr, addr_len);
  a.addr_len = uint8_t(addr_len);
  a.keepalive_late = keepalive_late;
  a.port = port;
  a.keepalive_ms = keepalive_ms;
  a.epoch = *epoch;
}

double Conn::DialAdmitted(const std::vector<uint8_t>& payload) {
  if (admitted_opens_.empty() || !open_epoch_ || payload.size() > kMaxAdmittedOpenBytes) return 0;
  auto it = admitted_opens_.find(std::string(reinterpret_cast<const char*>(payload.data()), payload.size()));
  if (it == admitted_opens_.end()) return 0;
  const AdmittedOpen& a = it->second;
  // The routes changed since JS admitted it: JS decides again (and admits it again, or refuses).
  if (a.epoch != *open_epoch_) {
    admitted_opens_.erase(it);
    return 0;
  }
  // A dial that fails at once (ENETUNREACH …) goes to JS as a plain OPEN: JS dials and fails it as before.
  const double token = Dial(a.addr, a.addr_len, a.port, a.keepalive_ms, a.keepalive_late);
  if (token <= 0) return 0;
  opens_dialed++;
  return token;
}

double Conn::ClosePump(int64_t id, bool reset) {
  auto it = pumps_.find(id);
  if (it == pumps_.end()) {
    Stream* s = Find(id);
    // An OPEN read here that no pump took at once: JS reads what followed it.
    if (s && s->recv && s->recv->flows && s->recv->held) {
      RecvGiveBack(s);
      return -2;
    }
    // A pump that was to start at the flow's ANSWER and did not: JS reads the records again.
    if (!s || s->at_answer == 0) return 0;
    s->at_answer = 0;
    std::vector<uint8_t>().swap(s->answer_ok);
    if (s->recv && s->recv->await_answer) {
      s->recv->await_answer = false;
      RecvGiveBack(s);
    }
    return -2;
  }
  Pump* p = it->second.get();
  const double body_bytes = double(p->body_bytes);
  PumpNotConnected(p);
  if (p->watch && p->watch->has_peer) NoteTunUncounted();  // the close's FIN or RST
  FreeFdWatch(p->watch);
  // A cut flow: its socket's peer must not take our close for the flow's clean end.
  if (reset) {
    struct linger l = {1, 0};
    setsockopt(p->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  close(p->fd);
  // An answer held for the FIN goes now, as the pump does.
  const bool held = p->hold_until != 0;
  if (held) FinHoldRelease(p, kFinHoldOther);
  pumps_.erase(it);  // pump_out_ may still name it: FlushPumps skips ids it does not find
  if (held) FinHoldRearm();
  if (Stream* s = Find(id)) {
    s->pump_blocked = false;
    PumpCredit(s);
    if (s->recv) RecvGiveBack(s);
  }
  return body_bytes;
}

int Conn::ArmPumpHeads(int64_t id, int mode, uint64_t frame_left, uint64_t body_left) {
  auto it = pumps_.find(id);
  // A pump to start at the flow's ANSWER: JS awaits it (between records).
  Stream* pending = it == pumps_.end() ? Find(id) : nullptr;
  const bool at_answer = pending && pending->at_answer != 0 && mode == 3;
  if (it == pumps_.end() && !at_answer) return -1;  // nothing to arm: JS stops asking
  if (at_answer && body_left != 0) return -1;
  if (mode == 0) {
    it->second->heads = true;
    return 1;
  }
  Stream* s = Find(id);
  if (!s) return -1;
  // JS stands where it does in what it has seen: a batch it has not seen yet may hold more.
  if (s->js_batch > host_->BatchesTaken()) return 0;
  const bool flows = mode == 3;
  if (!at_answer && flows != it->second->flows) return -1;
  if (frame_left > kMaxFramePayload || body_left > (flows ? kMaxFlowData : kMaxRecord)) return -1;
  if (!s->recv) {
    // The first hand-over: from here on the stream's frames are read here, to its END.
    s->recv.reset(new StreamRecv());
    s->recv->fleft = uint32_t(frame_left);
    s->recv->rtype = body_left ? (flows ? kFlowData : kRecordBody) : 0;
    s->recv->rleft = uint32_t(body_left);
    s->recv->plain = mode == 2;
    s->recv->flows = flows;
    s->recv->armed = true;
    s->recv->await_answer = at_answer;
    return 1;
  }
  StreamRecv& r = *s->recv;
  if (flows) {
    // The next flow on the stream: JS reads whole frames made here, and its reader followed the records.
    // After an OPEN read here (held), JS's reader stands right after it.
    if (!r.flows || r.raw || r.rbad || r.end) {
      if (r.held) RecvGiveBack(s);
      return -1;
    }
    if (frame_left != 0 || r.rfill != 0 || r.rleft != body_left || (body_left && r.rtype != kFlowData)) return 0;
    r.armed = true;
    r.await_answer = at_answer;
    if (r.held) RecvRelease(s);
    return 1;
  }
  if (r.raw || r.rbad || r.end || r.plain || r.flows || mode == 2) return -1;
  // Again: JS reads whole frames made here, and its reader followed the records given to it as ours did.
  if (frame_left != 0 || r.rfill != 0 || r.rleft != body_left || (body_left && r.rtype != kRecordBody)) return 0;
  r.armed = true;
  return 1;
}

// Stream framing (framing.ts) DATA [0x00][u32 n] around http1 framing (protocol/http1.ts) HEAD
// [0x01][u32 n - 5]: the edge writes each HEAD as one frame, which mostly arrives in one piece.
bool Conn::PumpHead(int64_t id, const uint8_t* data, size_t len) {
  auto it = pumps_.find(id);
  if (it == pumps_.end() || !it->second->heads) return false;
  auto be32 = [](const uint8_t* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]); };
  if (len < 10 || data[0] != 0x00 || be32(data + 1) != len - 5 || data[5] != 0x01 || be32(data + 6) != len - 10) {
    it->second->heads = false;
    return false;
  }
  Event(kEvPump, kPumpHead, id, data + 10, len - 10);
  return true;
}

void Conn::ClosePumps() {
  ForgetAcceptedReads(this);
  // The connection is gone: a private flow not over both ways (its fd's EOF read, its write side
  // shut) was cut, and its socket is reset, as JS's PumpedFlow.kill() does for a dead stream.
  while (!pumps_.empty()) {
    const Pump* p = pumps_.begin()->second.get();
    ClosePump(pumps_.begin()->first, p->plain && !(p->read_done && p->shut_done));
  }
  pump_out_.clear();
  while (!dials_.empty()) CloseDial(dials_.begin()->first);
}

double Conn::PumpWrite(int64_t id, const uint8_t* data, size_t len, bool head) {
  auto it = pumps_.find(id);
  if (it == pumps_.end()) return -1;
  Pump* p = it->second.get();
  // JS's answer to a HEAD read here: the head goes first, then what waited behind it.
  Stream* s = head ? Find(id) : nullptr;
  const bool release = s && s->recv && s->recv->held && s->recv->armed;
  if (!p->ended) {
    if (head) {
      p->answered = false;
      p->fast = false;
    }
    p->out.Append(data, len);
    PumpQueue(p);
  }
  if (release) RecvRelease(s);
  if (p->ended) return -1;
  double pending = double(p->out.size());
  if (pending > kStreamHighWater) p->want_drain = true;
  return pending;
}

void Conn::PumpRoute(int64_t id, bool on, bool any, const uint8_t* host, size_t host_len) {
  auto it = pumps_.find(id);
  if (it == pumps_.end()) return;
  Pump* p = it->second.get();
  p->route = on;
  p->route_any = on && any;
  p->route_host.assign(reinterpret_cast<const char*>(host), on && !any ? host_len : 0);
}

// A whole HEAD record (its payload, http1.ts encodeHead: u32 body length, u16 + host, u16 + path,
// u8 + method, the head) whose host the pump's route takes: its head goes to the fd as JS's
// PumpWrite would write it, and what follows is read on at once. False: JS decides.
bool Conn::PumpFastHead(Stream* s, std::vector<uint8_t>& record) {
  auto it = pumps_.find(s->id);
  if (it == pumps_.end()) return false;
  Pump* p = it->second.get();
  if (!p->route || p->ended || p->plain) return false;
  const uint8_t* d = record.data();
  const size_t n = record.size();
  if (n < 6) return false;
  const size_t host_len = (size_t(d[4]) << 8) | d[5];
  size_t off = 6 + host_len;
  if (off + 2 > n) return false;
  const uint8_t* host = d + 6;
  off += 2 + ((size_t(d[off]) << 8) | d[off + 1]);
  if (off + 1 > n) return false;
  off += 1 + d[off];
  if (off > n) return false;  // JS's decodeHead refuses it: JS says so
  if (!p->route_any && (host_len != p->route_host.size() || memcmp(host, p->route_host.data(), host_len) != 0)) return false;
  p->answered = false;
  p->fast = true;
  p->out.Append(d + off, n - off);
  PumpQueue(p);
  if (p->out.size() > kStreamHighWater) s->pump_full = true;
  p->fast_head.swap(record);
  // Counted as it starts, as JS counts a head it reads (a client may go before the answer).
  if (!host_->EmitLazyCount(this, kEvPump, kPumpFastStart, p->id, 0, &p->starts)) {
    const double one[2] = {0, 1};
    host_->EmitLazy(this, kEvPump, kPumpFastStart, p->id, reinterpret_cast<const uint8_t*>(one), sizeof one);
  }
  return true;
}

void Conn::ShutPump(int64_t id) {
  auto it = pumps_.find(id);
  if (it != pumps_.end() && it->second->flows) return FlowGotEnd(it->second.get());
  if (it == pumps_.end() || !it->second->plain || it->second->shut_pending) return;
  it->second->shut_pending = true;
  PumpQueue(it->second.get());  // the flush writes what is queued, then shuts
}

void Conn::ResetPump(int64_t id) {
  auto it = pumps_.find(id);
  if (it != pumps_.end() && it->second->flows) FlowGotReset(it->second.get());
}

void Conn::PumpQueue(Pump* p) {
  if (p->queued) return;
  p->queued = true;
  pump_out_.push_back(p->id);
  Dirty();
}

void Conn::PumpBody(Stream* s, Pump* p, const uint8_t* data, size_t len) {
  // The fd is gone (JS hears kPumpEnd and closes the pump): dropped, as JS drops a body with no origin.
  if (!p || p->ended) return;
  p->out.Append(data, len);
  p->body_bytes += len;
  PumpQueue(p);
  if (p->out.size() > kStreamHighWater) s->pump_full = true;
}

void Conn::PumpCredit(Stream* s) {
  if (!s->pump_full) return;
  s->pump_full = false;
  if (s->owed_credit > 0 && !s->read_paused && Usable()) {
    ngtcp2_conn_extend_max_stream_offset(conn_, s->id, s->owed_credit);
    s->owed_credit = 0;
    Dirty();
  }
}

void Conn::DataEvent(Stream* s, bool fin, const uint8_t* data, size_t len) {
  s->js_batch = host_->BatchesTaken() + 1;
  Event(kEvData, fin ? 1 : 0, s->id, data, len);
}

// ------------------------------------------------------------------ the receive side (StreamRecv)

void Conn::RecvBytes(Stream* s, const uint8_t* data, size_t len, bool fin) {
  StreamRecv& r = *s->recv;
  if (fin) r.fin = true;
  size_t off = 0;
  while (off < len && !r.raw) {
    if (r.end) {
      r.raw = true;  // bytes after END: JS's parser refuses them
      break;
    }
    if (r.fleft == 0) {
      size_t take = std::min<size_t>(kFrameHeader - r.ffill, len - off);
      memcpy(r.fhdr + r.ffill, data + off, take);
      r.ffill += uint8_t(take);
      off += take;
      if (r.ffill < kFrameHeader) break;
      r.ffill = 0;
      uint32_t n = Be32(r.fhdr + 1);
      if (r.fhdr[0] == kFrameEnd && n == 0) {
        r.end = true;
      } else if (r.fhdr[0] != kFrameData || n == 0 || n > kMaxFramePayload) {
        r.raw = true;  // JS's parser reads this header and says what is wrong with it
        JsRaw(r, r.fhdr, kFrameHeader);
      } else {
        r.fleft = n;
      }
      continue;
    }
    size_t take = std::min<size_t>(r.fleft, len - off);
    RecvPayload(s, data + off, take);
    r.fleft -= uint32_t(take);
    off += take;
  }
  if (off < len) JsRaw(r, data + off, len - off);
  RecvEmit(s);
}

void Conn::RecvPayload(Stream* s, const uint8_t* d, size_t n) {
  StreamRecv& r = *s->recv;
  if (r.flows) return RecvFlows(s, d, n);
  while (n > 0) {
    if (r.held) {
      r.held_bytes.insert(r.held_bytes.end(), d, d + n);
      return;
    }
    if (!r.armed) {
      RecvForward(s, d, n);
      return;
    }
    if (r.plain) {
      auto it = pumps_.find(s->id);
      PumpBody(s, it == pumps_.end() ? nullptr : it->second.get(), d, n);
      return;
    }
    if (r.rleft == 0) {
      if (!TakeRecordHeader(r, d, n)) return;
      if (r.rbad) {
        // JS's reader refuses it: it gets the record from its header on, and the stream from here.
        r.armed = false;
        JsPayload(r, r.rhdr, kFrameHeader);
        RecvForward(s, d, n);
        return;
      }
      if (r.rtype == kRecordHead) r.head.clear();
      continue;
    }
    size_t take = std::min<size_t>(r.rleft, n);
    if (r.rtype == kRecordBody) {
      auto it = pumps_.find(s->id);
      PumpBody(s, it == pumps_.end() ? nullptr : it->second.get(), d, take);
    } else {
      r.head.insert(r.head.end(), d, d + take);
    }
    r.rleft -= uint32_t(take);
    d += take;
    n -= take;
    if (r.rtype == kRecordHead && r.rleft == 0 && !PumpFastHead(s, r.head)) {
      Event(kEvPump, kPumpHead, s->id, r.head.data(), r.head.size());
      r.held = true;
    }
  }
}

// A flows pump's records (armed): DATA to the fd, END and RESET end the flow's way in; an OPEN or
// ANSWER (or a record JS's reader refuses) goes to JS from its header on, and JS resets the stream.
// Once the flow is over (FlowMaybeDone disarms) the rest goes to JS.
void Conn::RecvFlows(Stream* s, const uint8_t* d, size_t n) {
  StreamRecv& r = *s->recv;
  while (n > 0) {
    if (r.held) {
      r.held_bytes.insert(r.held_bytes.end(), d, d + n);
      return;
    }
    if (!r.armed) return RecvForward(s, d, n);
    if (r.await_answer) {
      if (!RecvAnswer(s, d, n)) return;
      continue;
    }
    if (r.await_open) {
      if (!RecvOpen(s, d, n)) return;
      continue;
    }
    auto it = pumps_.find(s->id);
    Pump* p = it == pumps_.end() ? nullptr : it->second.get();
    if (r.rleft == 0) {
      if (!TakeRecordHeader(r, d, n)) return;
      const uint8_t type = r.rtype;
      // A RESET before the flow's ANSWER: JS answers first (as without a pump), then resets the pump.
      if (r.rbad || (type != kFlowData && type != kFlowEnd && type != kFlowReset) || (type == kFlowReset && p && p->answer_due)) {
        r.armed = false;
        JsPayload(r, r.rhdr, kFrameHeader);
        return RecvForward(s, d, n);
      }
      if (type == kFlowEnd) FlowGotEnd(p);
      else if (type == kFlowReset) FlowGotReset(p);
      continue;
    }
    size_t take = std::min<size_t>(r.rleft, n);
    // DATA after the flow's END is dropped, as FlowLink drops it.
    if (p && !p->got_term) PumpBody(s, p, d, take);
    r.rleft -= uint32_t(take);
    d += take;
    n -= take;
  }
}

// The flow's ANSWER, for a pump that starts at it (AttachPump kPumpAtAnswer): the OK one byte for
// byte starts the pump on the accepted socket (JS hears it lazily) and the records after it are
// the flow's; anything else (another answer, a record before it, a socket gone) goes to JS from
// its header on, as without this. False: every byte taken, the answer not whole yet.
bool Conn::RecvAnswer(Stream* s, const uint8_t*& d, size_t& n) {
  StreamRecv& r = *s->recv;
  if (r.rleft == 0) {
    if (!TakeRecordHeader(r, d, n)) return false;
    if (r.rbad || r.rtype != kFlowAnswer || r.rleft != s->answer_ok.size()) {
      r.head.clear();
      AnswerToJs(s);
      return true;
    }
    r.head.clear();
  }
  if (!TakeRecordPayload(r, d, n)) return false;
  const double token = s->at_answer;
  if (r.head == s->answer_ok) {
    s->at_answer = 0;
    r.await_answer = false;
    if (AttachPump(s->id, int(token), 2, kPumpFromAccepted)) {
      r.head.clear();
      std::vector<uint8_t>().swap(s->answer_ok);
      host_->EmitLazy(this, kEvPump, kPumpFlowAnswered, s->id, nullptr, 0);
      return true;
    }
    s->at_answer = token;
  }
  AnswerToJs(s);
  return true;
}

// The record read so far (its header, an ANSWER's payload) and what follows go to JS; the pump
// never starts (JS's ClosePump says so).
void Conn::AnswerToJs(Stream* s) {
  StreamRecv& r = *s->recv;
  r.await_answer = false;
  r.armed = false;
  uint8_t h[kFrameHeader] = {r.rtype, 0, 0, 0, 0};
  const bool gathered = r.rtype == kFlowAnswer && !r.rbad;
  PutBe32(h + 1, uint32_t(r.rleft + (gathered ? r.head.size() : 0)));
  JsPayload(r, r.rbad ? r.rhdr : h, kFrameHeader);
  if (gathered) JsPayload(r, r.head.data(), r.head.size());
  std::vector<uint8_t>().swap(r.head);
}

// Between flows of a stream with open_events: a whole OPEN goes to JS as one event (kPumpFlowOpen,
// not through its stream's reader) and what follows waits (held) for JS: a flows pump armed reads
// it as the new flow's records (ArmPumpHeads), else JS gets it (ClosePump without a pump). Any
// other record (the last words of the flow before, one JS's reader refuses) goes to JS from its
// header on, as without this. False: every byte taken, the OPEN not whole yet.
bool Conn::RecvOpen(Stream* s, const uint8_t*& d, size_t& n) {
  StreamRecv& r = *s->recv;
  // JS has seen every batch that carried the stream's bytes, and none wait for it in this one.
  const bool js_clear = r.js.empty() && s->js_batch <= host_->BatchesTaken();
  if (r.rleft == 0) {
    if (!TakeRecordHeader(r, d, n)) return false;
    if (r.rbad || r.rtype != kFlowOpen) {
      r.await_open = false;
      r.armed = false;
      JsPayload(r, r.rhdr, kFrameHeader);
      return true;
    }
    r.head.clear();
  }
  if (!TakeRecordPayload(r, d, n)) return false;
  r.await_open = false;
  r.held = true;
  // What JS gets of this delivery so far goes before the OPEN.
  JsCloseFrame(r);
  if (!r.js.empty()) {
    DataEvent(s, false, r.js.data(), r.js.size());
    r.js.clear();
  }
  // Admitted before: the origin's connect starts now, before this turn's ACKs and JS (OXY_FLOW_DIAL_AT_OPEN).
  const double token = DialAdmitted(r.head);
  if (token > 0) {
    // Where JS's reader stands at rest (it has seen every batch with the stream's bytes, none go
    // to it in this one) the pump is attached now too, and what follows the OPEN is its.
    const bool pump = js_clear && !open_ok_.empty() && !s->want_writable && PumpAtOpenOn();
    r.head.insert(r.head.begin(), reinterpret_cast<const uint8_t*>(&token), reinterpret_cast<const uint8_t*>(&token) + 8);
    Event(kEvPump, pump ? kPumpFlowOpenPumped : kPumpFlowOpenDialed, s->id, r.head.data(), r.head.size());
    r.head.clear();
    if (pump && PumpAtOpen(s, token)) return true;
    if (pump) {
      // Not attached (cannot be, short of a connection going away): JS's attachPump fails alike and resets the stream.
      r.held = false;
      r.armed = false;
    }
    return true;
  }
  Event(kEvPump, kPumpFlowOpen, s->id, r.head.data(), r.head.size());
  r.head.clear();
  return true;
}

bool Conn::PumpAtOpen(Stream* s, double token) {
  StreamRecv& r = *s->recv;
  if (!AttachPump(s->id, int(token), 3, kPumpAtConnect, open_ok_.data(), open_ok_.size())) return false;
  opens_pumped++;
  // Armed as ArmPumpHeads arms a flows pump after a held OPEN: the records from here are the pump's
  // (the caller reads on with them).
  r.held = false;
  r.armed = true;
  r.await_answer = false;
  auto it = pumps_.find(s->id);
  if (it == pumps_.end()) return true;
  Pump* p = it->second.get();
  // A near host (loopback, a namespace): its handshake ran inside connect(). Then the ANSWER and
  // the request's DATA (the records the caller reads next) go at this turn's flush, before JS.
  pollfd pfd{p->fd, POLLOUT, 0};
  if (p->connecting && poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLOUT | POLLERR | POLLHUP))) {
    PumpConnected(p, UV_WRITABLE | ((pfd.revents & (POLLERR | POLLHUP)) ? kFdWatchError : 0));
    PumpWatch(p);
  }
  return true;
}

// One record without payload (END, RESET) in a DATA frame of its own, after what the stream holds.
void Conn::FlowRecord(Stream* s, uint8_t type, const uint8_t* payload, size_t len) {
  if (!s || s->write_closed || s->fin) return;
  const size_t total = 2 * kFrameHeader + len;
  Chunk c{std::unique_ptr<uint8_t[]>(new uint8_t[total]), total};
  uint8_t* b = c.data.get();
  b[0] = kFrameData;
  PutBe32(b + 1, uint32_t(kFrameHeader + len));
  b[5] = type;
  PutBe32(b + 6, uint32_t(len));
  if (len > 0) memcpy(b + 2 * kFrameHeader, payload, len);
  s->chunks.push_back(std::move(c));
  s->total += total;
  Enqueue(s);
}

// The first chunk of an accepted socket whose pump starts at the ANSWER (kPumpAtAnswerEarly): the
// flow's DATA after its OPEN, as JS would write it. Its end is read again by the pump; its error
// goes to JS (the flow is reset there). Written also when the ANSWER came to JS meanwhile (its
// pump or socket takes the socket later: this chunk comes before their bytes).
void Conn::EarlyChunk(void* ctx, int64_t id, const uint8_t* data, ssize_t n) {
  auto* self = static_cast<Conn*>(ctx);
  if (n > 0) {
    self->FlowRecord(self->Find(id), kFlowData, data, size_t(n));
  } else if (n < 0) {
    self->PumpNumber(kPumpEarlyError, id, double(-n));
  }
}

// A pump that took its dial while connecting (kPumpAtConnect): the connect finished. JS hears it
// as the dial's (kPumpDialed, errno). Connected: the flow's OK ANSWER goes first, then what the
// pump holds for the fd (the edge's early DATA, its END) and its reads. Failed: nothing moves;
// JS refuses the flow (its ANSWER, then ResetPump: the RESET).
void Conn::PumpConnected(Pump* p, int events) {
  p->connecting = false;
  const int err = ConnectError(p->fd, events);
  PumpNumber(kPumpDialed, int64_t(p->dial_token), double(err));
  std::vector<uint8_t> answer;
  answer.swap(p->answer);
  if (err != 0) {
    p->ended = true;
    p->out.Clear();
    if (Stream* s = Find(p->id)) PumpCredit(s);
    PumpWatch(p);
    return;
  }
  p->answer_due = false;
  FlowRecord(Find(p->id), kFlowAnswer, answer.data(), answer.size());
  PumpWriteOut(p);
}

// A connecting pump that goes before its connect finished (closed, reset): JS's dial hears it
// (ECANCELED), as a dial closed by JS does not.
void Conn::PumpNotConnected(Pump* p) {
  if (!p->connecting) return;
  p->connecting = false;
  PumpNumber(kPumpDialed, int64_t(p->dial_token), double(ECANCELED));
}

// The edge's END: the fd's write side is shut once it took every byte for it.
void Conn::FlowGotEnd(Pump* p) {
  if (!p || p->got_term) return;
  p->got_term = true;
  if (!p->ended && !p->shut_pending) {
    p->shut_pending = true;
    PumpQueue(p);
  }
  FlowMaybeDone(p);
}

namespace {

// OXY_FLOW_RESET_FLUSH: ms a flow's RESET waits for the bytes the peer sent before it to leave the
// socket (unset: 1,000; 0: off, the reset drops them at once; at most 10,000).
uint64_t ResetFlushNs() {
  static const uint64_t ns = EnvBound("OXY_FLOW_RESET_FLUSH", 1000, 10000) * 1000000;
  return ns;
}

// Bytes in the socket's send queue not yet acked by its peer (SIOCOUTQ; 0 when it cannot say).
int SocketOutQueue(int fd) {
  int n = 0;
  return ioctl(fd, SIOCOUTQ, &n) == 0 ? n : 0;
}

}  // namespace

// The peer's RESET (also after its END): this side's socket gets a reset (the close after the flow
// sends RST) and the peer a RESET unless one went. Bytes the peer sent before its RESET and still
// queued here or in the socket go first (a host that answers and resets at once: the device gets
// the answer, then the reset, as over a direct path): the close waits, bounded (ResetFlushNs), for
// the socket's send queue to empty (FlushPumps, OnResetFlushTimer). Nothing pending: at once.
void Conn::FlowGotReset(Pump* p) {
  if (!p) return;
  const bool was_connecting = p->connecting;
  PumpNotConnected(p);
  p->got_term = true;
  bool flush = false;
  if (!p->ended) {
    const uint64_t bound = ResetFlushNs();
    flush = bound != 0 && !was_connecting && !p->lingering && (!p->out.empty() || SocketOutQueue(p->fd) > 0);
    if (flush) {
      p->reset_by = Now() + bound;
      p->read_done = true;  // nothing more is read: the flow is over this way
    } else {
      struct linger l = {1, 0};
      setsockopt(p->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      p->ended = true;
      p->out.Clear();
      if (Stream* s = Find(p->id)) PumpCredit(s);
      PumpWatch(p);
    }
  }
  FlowAbort(p);
  if (!flush) return;
  // Lingering now, under its own key: its bytes are written at this turn's flush (PumpQueue), and
  // the timer polls the socket's send queue once they are all in it.
  PumpQueue(p);
  reset_flushing_.push_back(p->id);
  if (!reset_flush_timer_) {
    reset_flush_timer_.reset(new SoonTimer());
    reset_flush_timer_->Init(loop_, this, &Conn::OnResetFlushTimer);
  }
  reset_flush_step_ = 250000;
  if (reset_flush_timer_->usable()) reset_flush_timer_->At(Now() + reset_flush_step_);
}

bool Conn::ResetFlushed(Pump* p, uint64_t now) {
  if (p->ended || now >= p->reset_by) return true;
  return p->out.empty() && SocketOutQueue(p->fd) == 0;
}

void Conn::OnResetFlushTimer(void* owner) {
  auto* self = static_cast<Conn*>(owner);
  const uint64_t now = Now();
  std::vector<int64_t> keep;
  uint64_t first_by = UINT64_MAX;
  for (int64_t key : self->reset_flushing_) {
    auto it = self->pumps_.find(key);
    if (it == self->pumps_.end()) continue;  // closed already (FlushPumps, the connection's end)
    Pump* p = it->second.get();
    if (self->ResetFlushed(p, now)) {
      self->ClosePump(key, true);
      continue;
    }
    first_by = std::min(first_by, p->reset_by);
    keep.push_back(key);
  }
  self->reset_flushing_.swap(keep);
  if (self->reset_flushing_.empty()) return;
  self->reset_flush_step_ = std::min<uint64_t>(self->reset_flush_step_ * 2, 64000000);
  self->reset_flush_timer_->At(std::min(first_by, now + self->reset_flush_step_));
}

// The flow aborts here (the fd failed, or the edge reset it): RESET, also after this side's END.
void Conn::FlowAbort(Pump* p) {
  if (!p->reset_sent) {
    p->reset_sent = true;
    p->sent_term = true;
    FlowRecord(Find(p->id), kFlowReset);
  }
  FlowMaybeDone(p);
}

// Both terminators crossed: JS hears it first (its records come after), the stream's credit and
// reads are no longer held for the fd, and the pump lingers under a key of its own (the stream's
// next flow may get a pump) until the fd took what is queued for it and is shut (FlushPumps).
void Conn::FlowMaybeDone(Pump* p) {
  if (p->lingering || !p->sent_term || !p->got_term) return;
  const int64_t id = p->id;
  Event(kEvPump, kPumpFlowDone, id, nullptr, 0);
  auto node = pumps_.extract(id);
  const int64_t key = --linger_seq_;
  node.key() = key;
  pumps_.insert(std::move(node));
  p->id = key;
  p->lingering = true;
  p->read_done = true;
  p->want_drain = false;
  p->queued = false;
  if (Stream* s = Find(id)) {
    s->pump_blocked = false;
    PumpCredit(s);
    if (s->recv) {
      // The next OPEN is read here (RecvOpen) where the stream wants it and its records are at a boundary.
      StreamRecv& r = *s->recv;
      if (s->open_events && r.armed && r.flows && !r.raw && !r.end && !r.held && r.AtRecordBoundary() && Usable()) {
        r.await_open = true;
      } else {
        RecvGiveBack(s);
      }
    }
  }
  PumpWatch(p);
  PumpQueue(p);
}

// Not armed: the payload goes to JS; records are only followed, so that JS can arm again at a boundary.
void Conn::RecvForward(Stream* s, const uint8_t* d, size_t n) {
  StreamRecv& r = *s->recv;
  JsPayload(r, d, n);
  while (n > 0 && !r.rbad && !r.plain) {
    if (r.rleft == 0) {
      TakeRecordHeader(r, d, n);
      continue;
    }
    size_t take = std::min<size_t>(r.rleft, n);
    r.rleft -= uint32_t(take);
    d += take;
    n -= take;
  }
}

// Hands JS what this delivery has for it: its frames, the END once nothing waits before it, the FIN after.
void Conn::RecvEmit(Stream* s) {
  StreamRecv& r = *s->recv;
  JsCloseFrame(r);
  if (r.end && !r.end_sent && !r.held) {
    r.end_sent = true;
    const uint8_t end[kFrameHeader] = {kFrameEnd, 0, 0, 0, 0};
    r.js.insert(r.js.end(), end, end + kFrameHeader);
  }
  const bool fin = r.fin && !r.fin_sent && (!r.held || r.raw);
  if (r.js.empty() && !fin) return;
  if (fin) r.fin_sent = true;
  DataEvent(s, fin, r.js.data(), r.js.size());
  r.js.clear();
  if (r.js.capacity() > kStreamHighWater) std::vector<uint8_t>().swap(r.js);
}

// JS wrote the HEAD's head to the fd: what waited behind it is read now.
void Conn::RecvRelease(Stream* s) {
  StreamRecv& r = *s->recv;
  r.held = false;
  std::vector<uint8_t> held;
  held.swap(r.held_bytes);
  RecvPayload(s, held.data(), held.size());  // the next HEAD holds again: the rest goes back to held_bytes
  RecvEmit(s);
  Dirty();
}

// The pump closed: JS reads the records again, from a boundary of its reader (which stood at one
// when it armed): what of the current record was read here goes to it first.
void Conn::RecvGiveBack(Stream* s) {
  StreamRecv& r = *s->recv;
  if (!r.armed || !Usable()) return;
  r.armed = false;
  r.await_open = false;
  if (r.rfill > 0) {
    JsPayload(r, r.rhdr, r.rfill);
  } else if (r.rleft > 0) {
    // A HEAD (http1), an ANSWER (flows, a pump at the answer) or an OPEN (flows, between flows)
    // gathered here goes back as read so far.
    const bool gathered = r.flows ? r.rtype == kFlowAnswer || r.rtype == kFlowOpen : r.rtype == kRecordHead;
    uint8_t h[kFrameHeader] = {r.rtype, 0, 0, 0, 0};
    PutBe32(h + 1, uint32_t(r.rleft + (gathered ? r.head.size() : 0)));
    JsPayload(r, h, kFrameHeader);
    if (gathered) JsPayload(r, r.head.data(), r.head.size());
  }
  std::vector<uint8_t>().swap(r.head);
  if (r.held) {
    r.held = false;
    std::vector<uint8_t> held;
    held.swap(r.held_bytes);
    RecvForward(s, held.data(), held.size());
  }
  RecvEmit(s);
  Dirty();
}

namespace {

// The thread's ring for its pumps' writes (RingWrites): set up on first use; nullptr where the
// kernel refuses io_uring (the writes then go one writev each).
constexpr unsigned kRingWrites = 64;
struct PumpRing {
  Ring ring;
  int state = 0;  // 0: not tried, 1: up, -1: refused or failed
  struct Slot {
    msghdr msg;
    iovec iov[OutQueue::kWriteBlocks];
    Pump* pump;
    size_t offered;
  };
  Slot slots[kRingWrites];
};
thread_local std::unique_ptr<PumpRing> tl_pump_ring;

PumpRing* ThePumpRing() {
  if (!tl_pump_ring) {
    tl_pump_ring = std::make_unique<PumpRing>();
    tl_pump_ring->state = tl_pump_ring->ring.Setup(kRingWrites) == 0 ? 1 : -1;
  }
  return tl_pump_ring->state == 1 ? tl_pump_ring.get() : nullptr;
}

}  // namespace

// Several pumps' bytes in one io_uring_enter, before FlushPumps' own pass. On the connector a
// keep-alive request's write to its host wakes the host, which on this kind of machine takes the
// CPU at the write's return (the loop's yields leave the connector behind it) and answers before
// the next pump's write: with 16 requests read from one packet, ~8 switches to the host and back in
// one flush (docs/decisions.md, session 24). The kernel's wake-ups within one enter take effect at
// its return: the host is switched to once and finds all of them. Each write is a sendmsg with
// MSG_DONTWAIT (a full socket completes at once with EAGAIN, never waits in the ring); what a
// write left (a short write, an error) is FlushPumps' pass's, as if the ring had not been there.
// Only the plain case: no pump still connecting, ending, holding its FIN's MSG_MORE, or whose
// socket is the edge's own accepted one (its segments are counted for the TUN: NoteTunDue).
// OXY_PUMP_RING=0 (read per connection): each pump's own writev, as before.
void Conn::RingWrites(const std::vector<int64_t>& ids) {
  if (!ring_writes_) return;
  // The pump of `id` if the ring may write it now (the plain case above), else nullptr.
  auto plain = [this](int64_t id) -> Pump* {
    auto it = pumps_.find(id);
    if (it == pumps_.end()) return nullptr;
    Pump* p = it->second.get();
    return p->connecting || p->ended || p->out.empty() || p->shut_pending || p->watch->has_peer ? nullptr : p;
  };
  PumpRing* r = nullptr;
  unsigned n = 0;
  for (size_t i = 0; i < ids.size(); i++) {
    Pump* p = plain(ids[i]);
    if (p == nullptr) continue;
    // An id twice in the list (a flows stream's pump closed and a new one queued): one write.
    bool twice = false;
    for (unsigned k = 0; k < n && !twice; k++) twice = r->slots[k].pump == p;
    if (twice) continue;
    if (r == nullptr) {
      // Two at least, or the ring saves nothing.
      bool more = false;
      for (size_t j = i + 1; j < ids.size() && !more; j++) more = plain(ids[j]) != nullptr;
      if (!more || (r = ThePumpRing()) == nullptr) return;
    }
    PumpRing::Slot& slot = r->slots[n];
    memset(&slot.msg, 0, sizeof(slot.msg));
    slot.msg.msg_iov = slot.iov;
    slot.msg.msg_iovlen = size_t(p->out.Iov(slot.iov));
    slot.pump = p;
    slot.offered = 0;
    for (size_t k = 0; k < slot.msg.msg_iovlen; k++) slot.offered += slot.iov[k].iov_len;
    io_uring_sqe* sqe = r->ring.Sqe();
    if (sqe == nullptr) break;
    sqe->opcode = IORING_OP_SENDMSG;
    sqe->fd = p->fd;
    sqe->addr = reinterpret_cast<uint64_t>(&slot.msg);
    sqe->len = 1;
    sqe->msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL;
    sqe->user_data = n;
    if (++n == kRingWrites) break;  // the rest: FlushPumps' pass
  }
  if (n == 0) return;
  if (r->ring.Enter(0) != 0 || r->ring.queued() != 0) {
    // Not taken (or not all): the entries may still be in the ring with this turn's pointers, so
    // the ring is not used again; the bytes are all still queued for FlushPumps' pass.
    r->state = -1;
    return;
  }
  unsigned done = 0;
  r->ring.Reap([&](const io_uring_cqe& cqe) {
    if (cqe.user_data >= n) return;
    done++;
    PumpRing::Slot& slot = r->slots[cqe.user_data];
    if (cqe.res < 0 || size_t(cqe.res) < slot.offered) counters.ring_short++;
    if (cqe.res <= 0) return;  // EAGAIN (full), an error: FlushPumps' writev sees it
    slot.pump->out.Consume(size_t(cqe.res));
    counters.ring_writes++;
  });
  if (done != n) {
    // A write left in the ring (MSG_DONTWAIT should not let one wait): wait for it, then no more
    // rings on this thread.
    while (done < n && r->ring.Enter(1, 1000000000ull) == 0) {
      r->ring.Reap([&](const io_uring_cqe& cqe) {
        if (cqe.user_data >= n) return;
        done++;
        if (cqe.res > 0) r->slots[cqe.user_data].pump->out.Consume(size_t(cqe.res));
      });
    }
    r->state = -1;
    if (done != n) {
      fprintf(stderr, "oxy: a pump's write stayed in the io_uring (OXY_PUMP_RING=0 avoids the ring)\n");
      abort();  // its buffers would be written after they were reused
    }
  }
  counters.ring_enters++;
}

void Conn::FlushPumps() {
  std::vector<int64_t> ids;
  ids.swap(pump_out_);
  if (ids.size() >= 2) RingWrites(ids);
  for (int64_t id : ids) {
    auto it = pumps_.find(id);
    if (it == pumps_.end()) continue;
    Pump* p = it->second.get();
    p->queued = false;
    PumpWriteOut(p);
    // A lingering flows pump is closed once its fd took everything and is shut (or failed); one
    // reset while bytes were pending, once its socket's peer has them all (or its time is up).
    if (p->lingering && p->reset_by != 0) {
      if (ResetFlushed(p, Now())) ClosePump(id, true);
    } else if (p->lingering && (p->ended || (p->out.empty() && p->shut_done))) {
      ClosePump(id);
    }
  }
}

static bool FinOnData() {
  static const bool on = EnvSwitchOn("OXY_FLOW_FIN_ON_DATA");
  return on;
}

void Conn::PumpWriteOut(Pump* p) {
  if (p->connecting) return;  // PumpConnected writes what waits
  // A flow's last bytes (its END is in): held in the socket (MSG_MORE) for the FIN that the
  // shutdown or close below sends on them, one segment, so the peer cannot read the data before
  // the FIN is in (OXY_FLOW_FIN_ON_DATA=0: the data's segment, then the FIN's).
  const bool more = p->flows && p->shut_pending && !p->shut_done && FinOnData();
  while (!p->ended && !p->out.empty()) {
    const size_t offered = p->out.Offered();
    const ssize_t n = p->out.WriteTo(p->fd, more);
    if (n < 0) {
      if (n != -EAGAIN && n != -EWOULDBLOCK) PumpEnd(p, int(-n));
      break;
    }
    // An accepted socket of the edge's fast path: its segments are on the TUN now (tun.cc reads
    // them after this flush, in this turn). A write taken whole of at most IPv4's smallest MSS
    // is one segment (Nagle holding it back only means the read ends at the EAGAIN, as uncounted).
    if (n > 0 && p->watch->has_peer) NoteTunDue(size_t(n) == offered && size_t(n) <= kOneSegment ? 1 : 0);
    // A short write: the socket is full (the level-triggered watch says when it has room).
    if (size_t(n) < offered) break;
  }
  if (p->shut_pending && !p->shut_done && !p->ended && p->out.empty()) {
    p->shut_done = true;
    // A flow over both ways whose fd's end was read (its END went, no RESET): its close follows at
    // this turn's flush (FlushPumps) and sends the FIN itself — nothing is unread after an end —
    // so no shutdown before it (OXY_FLOW_CLOSE_SHUTS=0: one anyway).
    const bool close_sends_fin = p->lingering && !p->reset_sent && CloseShuts();
    if (p->watch->has_peer) NoteTunUncounted();  // its FIN, or the close's
    if (!close_sends_fin) {
      if (shutdown(p->fd, SHUT_WR) != 0 && errno != ENOTCONN) PumpEnd(p, errno);
      else if (!p->flows) Event(kEvPump, kPumpShut, p->id, nullptr, 0);
    }
  }
  if (p->out.size() <= kStreamHighWater / 2) {
    if (p->want_drain) {
      p->want_drain = false;
      Event(kEvPump, kPumpDrain, p->id, nullptr, 0);
    }
    if (Stream* s = Find(p->id)) PumpCredit(s);
  }
  PumpWatch(p);
}

namespace {

// OXY_FLOW_FIN_HOLD: µs a dialed flow's closing answer waits for the host's FIN (unset: 300; 0: off;
// at most 1 s: a test sets it that long so that an answer held by mistake stands out at any load).
uint64_t FinHoldNs() {
  static const uint64_t ns = EnvBound("OXY_FLOW_FIN_HOLD", 300, 1000000) * 1000;
  return ns;
}

}  // namespace

FinHoldCounts& FinHolds() {
  static thread_local FinHoldCounts counts;
  return counts;
}

void Conn::FinHoldRelease(Pump* p, int why) {
  if (p->hold_until == 0) return;
  FinHoldCounts& c = FinHolds();
  const uint64_t now = Now(), since = p->hold_until - FinHoldNs();
  c.held_us += now > since ? double(now - since) / 1000 : 0;
  (why == kFinHoldFin ? c.fin : why == kFinHoldDeadline ? c.deadline : c.other)++;
  p->hold_until = 0;
  if (Stream* s = Find(p->id)) Enqueue(s);
}

void Conn::FinHoldRearm() {
  while (!fin_held_.empty()) {
    auto it = pumps_.find(fin_held_.front());
    if (it != pumps_.end() && it->second->hold_until != 0) break;
    fin_held_.pop_front();
  }
  if (fin_held_.empty()) {
    fin_hold_timer_->Stop();
    return;
  }
  // Armed for an earlier entry that let go since: it wakes once for nothing and comes back here.
  fin_hold_timer_->At(pumps_.find(fin_held_.front())->second->hold_until);
}

void Conn::OnFinHoldTimer(void* owner) {
  auto* self = static_cast<Conn*>(owner);
  FinHolds().wakes++;
  const uint64_t now = Now();
  // The FIN did not come in time: the answers whose hold is over go alone.
  while (!self->fin_held_.empty()) {
    auto it = self->pumps_.find(self->fin_held_.front());
    Pump* p = it == self->pumps_.end() ? nullptr : it->second.get();
    if (p && p->hold_until > now) break;
    if (p) self->FinHoldRelease(p, kFinHoldDeadline);
    self->fin_held_.pop_front();
  }
  self->FinHoldRearm();
}

void Conn::PumpRead(Pump* p, bool hang_up) {
  bool hold = false;
  Stream* s = Find(p->id);
  if (!s || s->write_closed || s->fin || !Usable()) {
    // The stream takes no more: JS hears why from the stream and closes the pump.
    p->ended = true;
    PumpWatch(p);
    return;
  }
  for (int i = 0; i < kReadsPerWake && !p->ended; i++) {
    if (s->total - s->sent > kStreamHighWater) {
      s->pump_blocked = true;
      break;
    }
    // Room for a DATA frame's header, and a flows pump's DATA record header inside it.
    const size_t want = pump_read_;
    if (!pump_buf_) pump_buf_.reset(new uint8_t[2 * kFrameHeader + want]);
    uint8_t* buf = pump_buf_.get();
    const size_t hdr = p->flows ? 2 * kFrameHeader : kFrameHeader;
    ssize_t n = read(p->fd, buf + hdr, want);
    if (n > 0) {
      if (!p->answered) {
        p->answered = true;
        double status = AnswerStatus(buf + hdr, size_t(n));
        // A routed request's answer is only counted: one record per status and batch counts them all.
        if (!p->fast || !host_->EmitLazyCount(this, kEvPump, kPumpFastAnswer, p->id, status, &p->answers))
          host_->EmitLazy(this, kEvPump, p->fast ? kPumpFastAnswer : kPumpAnswer, p->id, reinterpret_cast<const uint8_t*>(&status), 8);
      }
      buf[0] = kFrameData;
      PutBe32(buf + 1, uint32_t(hdr - kFrameHeader + size_t(n)));
      if (p->flows) {
        buf[kFrameHeader] = kFlowData;
        PutBe32(buf + kFrameHeader + 1, uint32_t(n));
      }
      size_t len = hdr + size_t(n);
      Chunk c{nullptr, len};
      counters.pump_reads++;
      counters.pump_read_bytes += uint64_t(n);
      counters.pump_read_max = std::max<uint64_t>(counters.pump_read_max, uint64_t(n));
      // A quarter of the buffer at least (16 KiB of 64): a short read does not hold a 256 KiB
      // buffer until its bytes are acknowledged.
      if (size_t(n) >= std::max(kKeepRead, want / 4)) {
        c.data = std::move(pump_buf_);  // the next read gets a fresh buffer
      } else {
        c.data.reset(new uint8_t[len]);
        memcpy(c.data.get(), buf, len);
      }
      s->chunks.push_back(std::move(c));
      s->total += len;
      if (size_t(n) < want) {
        // Likely drained: the poll says when there is more. But where the peer's FIN is in already
        // (an answer and its close both there when the watch woke), one more read takes the EOF
        // now, so the flow's END rides in this turn's packet with the answer's last bytes, and
        // the edge closes the device's socket in the turn it writes them: the device reads the
        // answer and the FIN together and is not the side that closes first (and keeps the
        // TIME_WAIT). Without it the END went a turn later, often in a QUIC packet of its own.
        if (!hang_up) {
          // A dialed flow's first answer, whole and saying the host closes after it: its FIN
          // follows (Node's server sends it 70-200 µs after its answer), so the answer waits for
          // it, up to OXY_FLOW_FIN_HOLD µs, and goes with the END in one packet. Else the END
          // often went in a packet of its own that the edge took a turn later, after the device's
          // client had read the answer and closed first (keeping the TIME_WAIT): 2-4 % of the
          // bench's connections. Keep-alive answers and every later read are not held. The head is
          // read by the edge's framer's rules (ClosingAnswerWhole, http1-answer.cc).
          hold = i == 0 && !p->read_once && p->flows && p->dialed && FinHoldNs() > 0 && ClosingAnswerWhole(buf + hdr, size_t(n));
          p->read_once = true;
          break;
        }
        hang_up = false;
      }
      p->read_once = true;
      continue;
    }
    if (n == 0 && p->flows) {
      // The host's FIN: END after what it sent; the flow may be over with it.
      p->read_done = true;
      p->sent_term = true;
      FlowRecord(s, kFlowEnd);
      FlowMaybeDone(p);
    } else if (n == 0 && p->plain) {
      // The peer's FIN ends this direction only: the stream's END follows what was read (JS writes it).
      p->read_done = true;
      PumpNumber(kPumpEnd, p->id, 0);
    } else if (n == 0) {
      PumpEnd(p, 0);
    } else if (errno == EINTR) {
      continue;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
      PumpEnd(p, errno);
    }
    break;
  }
  if (hold && !p->ended && !fin_hold_timer_) {
    fin_hold_timer_.reset(new SoonTimer());
    fin_hold_timer_->Init(loop_, this, &Conn::OnFinHoldTimer);
  }
  if (hold && !p->ended && fin_hold_timer_->usable()) {
    // The loop sleeps until the host's FIN or the hold's end, whichever comes first (the timer
    // is armed only where no earlier hold's end is: the holds end in the order they began).
    p->hold_until = Now() + FinHoldNs();
    FinHolds().held++;
    fin_held_.push_back(p->id);
    fin_hold_timer_->At(p->hold_until);
  } else {
    if (p->hold_until != 0) {
      // The FIN (or more bytes, or an error) came: what waited goes now.
      FinHoldRelease(p, p->read_done ? kFinHoldFin : kFinHoldOther);
      FinHoldRearm();
    }
    Enqueue(s);
  }
  PumpWatch(p);
}

void Conn::ResumePump(Stream* s) {
  s->pump_blocked = false;
  auto it = pumps_.find(s->id);
  if (it != pumps_.end()) PumpWatch(it->second.get());
  // The edge's reads of a request body (quic-answer.cc) wait the same way.
  auto a = answers_.find(s->id);
  if (a != answers_.end() && a->second->body) AnswerWatch(a->second.get());
}

void Conn::PumpEnd(Pump* p, int err) {
  if (p->ended) return;
  // An answer held for the FIN goes before whatever ends the flow (a RESET rides after it).
  if (p->hold_until != 0) {
    FinHoldRelease(p, kFinHoldOther);
    FinHoldRearm();
  }
  PumpNotConnected(p);
  p->ended = true;
  p->out.Clear();
  if (Stream* s = Find(p->id)) PumpCredit(s);
  if (p->flows) {
    // No kPumpEnd: the flow aborts in band (a lingering pump's flow is over already).
    if (!p->lingering) FlowAbort(p);
    Dirty();
    return;
  }
  if (p->fast) {
    // JS's request is the last head written here: it resends it or answers for it.
    p->fast = false;
    p->fast_head.insert(p->fast_head.begin(), uint8_t(p->answered ? 1 : 0));
    Event(kEvPump, kPumpFastHead, p->id, p->fast_head.data(), p->fast_head.size());
  }
  PumpNumber(kPumpEnd, p->id, double(err));
}

void Conn::PumpWatch(Pump* p) {
  int events = 0;
  if (p->connecting && !p->ended) {
    events = UV_WRITABLE;  // the connect's end
  } else if (!p->ended) {
    Stream* s = Find(p->id);
    if (!p->out.empty()) events |= UV_WRITABLE;
    if (s && !s->pump_blocked && !p->read_done) events |= UV_READABLE;
  }
  if (events == p->events) return;
  p->events = events;
  SetFdWatch(p->watch, events, &Conn::OnPumpWatch);
}

// An error or hang-up comes as every event wanted: the read or write below reads it (ECONNRESET...).
void Conn::OnPumpWatch(FdWatch* handle, int events) {
  auto* p = static_cast<Pump*>(handle->data);
  if (!p) return;
  Conn* self = p->conn;
  if (p->connecting) return self->PumpConnected(p, events);
  if (events & UV_WRITABLE) self->PumpWriteOut(p);
  if ((events & UV_READABLE) && !p->ended) self->PumpRead(p, events & kFdWatchHangUp);
  // A lingering flows pump is closed at the flush once it is done (FlushPumps).
  if (p->lingering) self->PumpQueue(p);
}

}  // namespace quic
}  // namespace oxy
