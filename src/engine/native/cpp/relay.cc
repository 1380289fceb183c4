// A packet relay between a TUN and a connected SOCK_SEQPACKET socket, entirely in
// C++: each packet the TUN gives is sent as one message, and each message whose first
// byte is an IPv4/IPv6 version nibble is written to the TUN. No JS runs per packet
// (no Buffer per batch, so no garbage for V8 either). Messages that are not IP
// packets (the edge's `{"error":…}` refusal) go to JS. Backpressure instead of
// drops: while one side cannot take a packet, the relay holds that packet and stops
// reading the other side until it can.
//
// End-of-stream is told from an empty message as in seqpacket.cc: the socket has
// SO_PASSCRED, so every real message carries SCM_CREDENTIALS and the end none.
//
// Where it runs: by default on the process's packet-relay thread (relay-loop.h's RelayLoop, named
// oxy-packets: one epoll set of every relay's TUN and socket, and the eventfd that takes start
// commands), so a wake-up is the relays' work and nothing else; what JS must hear (a message, an
// error, the end) goes through the relay's thread-safe function. With `thread: false` it runs on
// the JS thread's libuv loop (two uv_polls), as before session 16: each wake-up was then a whole
// Node loop turn (timers, the check phase's native immediates, and the GC of what a turn
// allocates), ~1 per packet batch. The relay's logic (batches, backpressure, end-of-stream) is
// Pump's either way; only the waiting and the telling differ.
#include "common.h"
#include "fastnat.h"
#include "modules.h"
#include "relay-loop.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

namespace oxy {

namespace {

// Packets moved per direction per wake-up before yielding (to the event loop, or to the other
// direction's and the other relays' events on the relay thread).
constexpr int kPacketsPerWake = 256;
constexpr size_t kControlSize = CMSG_SPACE(sizeof(ucred)) + CMSG_SPACE(sizeof(int) * 8);
// Messages per recvmmsg from the socket (each in a slot of the largest packet).
constexpr size_t kDownSlots = 8;
// Packets read from the TUN before one sendmmsg sends them (each in a slot of the largest packet).
constexpr size_t kUpSlots = 8;

bool IsIpPacket(const uint8_t* data, size_t length) {
  if (length == 0) return false;
  uint8_t version = data[0] >> 4;
  return version == 4 || version == 6;
}

// What JS hears: a non-IP message, an error, the end.
enum class Note : uint8_t { kMessage, kError, kEnd };

// The callbacks that hear it, on the JS thread. Held by the relay's JS object and (thread mode) by
// its thread-safe function, whose notes may still arrive after the object is gone.
struct Sink {
  Napi::FunctionReference on_message;
  Napi::FunctionReference on_end;
  Napi::FunctionReference on_error;
  std::unique_ptr<Napi::AsyncContext> context;

  void Deliver(Napi::Env env, Note note, const uint8_t* data, size_t length, const char* syscall, int err) {
    if (note == Note::kMessage) {
      if (!on_message.IsEmpty()) InvokeCallback(env, on_message, *context, {Napi::Buffer<uint8_t>::Copy(env, data, length)});
    } else if (note == Note::kError) {
      if (!on_error.IsEmpty()) InvokeCallback(env, on_error, *context, {ErrnoError(env, syscall, err)});
    } else if (!on_end.IsEmpty()) {
      InvokeCallback(env, on_end, *context, {});
    }
  }

  void Reset() {
    on_message.Reset();
    on_end.Reset();
    on_error.Reset();
  }
};

// What stats() reads; only the relaying thread writes them.
struct Counters {
  std::atomic<uint64_t> out{0};
  std::atomic<uint64_t> in{0};
  std::atomic<uint64_t> tun_refused{0};
};

// The relay itself: its batches, backpressure and end-of-stream, on whichever thread runs it (the
// JS thread's loop, or the relay thread). It does not own the fds.
class Pump {
 public:
  Pump(int tun_fd, bool tun_vnet, int socket_fd, size_t max_packet, Counters* counters)
      : tun_fd_(tun_fd), tun_vnet_(tun_vnet), socket_fd_(socket_fd), counters_(counters) {
    up_slot_ = max_packet;
    up_.resize(up_slot_ * kUpSlots);
    down_slot_ = max_packet + 64;
    down_.resize(down_slot_ * kDownSlots);
    control_.resize(kControlSize * kDownSlots);
  }
  virtual ~Pump() = default;
  Pump(const Pump&) = delete;
  Pump& operator=(const Pump&) = delete;

  // The fds were closed (the loop mode's close() from a callback of this very pump): it stops.
  void Detach() {
    tun_fd_ = socket_fd_ = -1;
  }

  // What each fd waits for follows from what is held: a held outbound packet waits for the socket
  // to be writable (and the TUN is not read meanwhile); a held inbound one waits for the TUN (and
  // the socket is not read). As epoll's mask (level-triggered; the loop mode maps it to uv_poll's).
  uint32_t TunInterest() const {
    return (up_held_ || up_closed_ || tun_failed_ ? 0 : uint32_t(EPOLLIN)) | (down_held_ && !tun_failed_ ? uint32_t(EPOLLOUT) : 0);
  }
  uint32_t SocketInterest() const {
    return (down_held_ ? 0 : uint32_t(EPOLLIN | EPOLLRDHUP)) | (up_held_ ? uint32_t(EPOLLOUT) : 0);
  }

  // One wake-up's events, the socket's first: an answer from the peer reaches the TUN before the
  // TUN's next batch is read.
  void Serve(uint32_t socket_events, uint32_t tun_events) {
    if (socket_events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) FlushUp();
    if (socket_events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) PumpDown();
    if (tun_events & EPOLLERR) {
      // The TUN's device is gone (tun_chr_poll's answer for a detached fd): told once, then the
      // TUN is left alone (a uv_poll would report it on every turn).
      tun_failed_ = true;
      Tell(Note::kError, nullptr, 0, "epoll_wait", EBADFD);
      return;
    }
    if (tun_events & EPOLLOUT) FlushDown();
    if (tun_events & EPOLLIN) PumpUp();
  }

  bool ended() const { return ended_; }
  int tun_fd() const { return tun_fd_; }
  int socket_fd() const { return socket_fd_; }

 protected:
  virtual void Tell(Note note, const uint8_t* data = nullptr, size_t length = 0, const char* syscall = "", int err = 0) = 0;

 private:
  static void Count(std::atomic<uint64_t>& counter, uint64_t n) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  // TUN → socket: up to kUpSlots packets read (a TUN has no batch read: each is a read(), and
  // the last an EAGAIN), then sent with one sendmmsg. What the socket does not take is held, and
  // the TUN is not read until it went.
  void PumpUp() {
    for (int reads = 0; reads < kPacketsPerWake && !up_held_ && !up_closed_ && socket_fd_ >= 0 && !ended_;) {
      bool drained = false;
      up_count_ = up_next_ = 0;
      while (up_count_ < kUpSlots) {
        ssize_t n = ReadTun(up_.data() + up_count_ * up_slot_);
        reads++;
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno != EAGAIN && errno != EWOULDBLOCK) Tell(Note::kError, nullptr, 0, "read", errno);
          drained = true;
          break;
        }
        up_length_[up_count_++] = static_cast<size_t>(n);
      }
      if (up_count_ > 0) {
        up_held_ = true;
        FlushUp();
      }
      if (drained) return;
    }
  }

  ssize_t ReadTun(uint8_t* at) {
    if (!tun_vnet_) return read(tun_fd_, at, up_slot_);
    uint8_t header[10];
    iovec iov[2] = {{header, sizeof(header)}, {at, up_slot_}};
    for (;;) {  // a read of the header alone (no packet) cannot be an empty message: the end's
      ssize_t n = readv(tun_fd_, iov, 2);
      if (n < 0 || n > ssize_t(sizeof(header))) return n < 0 ? n : n - ssize_t(sizeof(header));
    }
  }

  void FlushUp() {
    while (up_held_ && socket_fd_ >= 0) {
      mmsghdr msgs[kUpSlots];
      iovec iovs[kUpSlots];
      memset(msgs, 0, sizeof(msgs));
      size_t count = up_count_ - up_next_;
      for (size_t i = 0; i < count; i++) {
        iovs[i] = {up_.data() + (up_next_ + i) * up_slot_, up_length_[up_next_ + i]};
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
      }
      int sent = sendmmsg(socket_fd_, msgs, unsigned(count), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (sent < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        if (errno == EPIPE || errno == ECONNRESET) {
          // The peer reads no more (it closed): this batch and the TUN's next packets have nowhere
          // to go, but the messages it sent before closing are still queued here. The end comes
          // from reading them (the bare end-of-stream message), not from this send.
          up_held_ = false;
          up_closed_ = true;
          return;
        }
        Tell(Note::kError, nullptr, 0, "sendmsg", errno);
        sent = 1;  // that packet is dropped, as a failed send() dropped it
      } else {
        Count(counters_->out, uint64_t(sent));
      }
      up_next_ += size_t(sent);
      if (up_next_ >= up_count_) up_held_ = false;
    }
  }

  // socket → TUN (or to JS when the message is not an IP packet). recvmmsg takes up to kDownSlots
  // messages a call; one that returns fewer drained the socket, so no EAGAIN read follows (a new
  // connection's SYN-ACK, answer and FIN mostly come one per wake-up: a recvmsg and its EAGAIN
  // were two system calls for each). A batch the TUN cannot take whole is held from its first
  // unwritten message.
  void PumpDown() {
    for (int reads = 0; reads < kPacketsPerWake && !down_held_ && socket_fd_ >= 0 && !ended_;) {
      mmsghdr msgs[kDownSlots];
      iovec iovs[kDownSlots];
      memset(msgs, 0, sizeof(msgs));
      for (size_t i = 0; i < kDownSlots; i++) {
        iovs[i] = {down_.data() + i * down_slot_, down_slot_};
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_control = control_.data() + i * kControlSize;
        msgs[i].msg_hdr.msg_controllen = kControlSize;
      }
      int got = recvmmsg(socket_fd_, msgs, kDownSlots, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, nullptr);
      if (got < 0) {
        reads++;
        if (errno == EINTR || errno == ECONNRESET) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) Tell(Note::kError, nullptr, 0, "recvmsg", errno);
        return;
      }
      if (got == 0) return;
      reads += got;  // packets, as the TUN side counts them
      down_count_ = 0;
      down_next_ = 0;
      for (int i = 0; i < got; i++) {
        msghdr& hdr = msgs[i].msg_hdr;
        bool has_credentials = false;
        for (cmsghdr* c = CMSG_FIRSTHDR(&hdr); c != nullptr; c = CMSG_NXTHDR(&hdr, c)) {
          if (c->cmsg_level != SOL_SOCKET) continue;
          if (c->cmsg_type == SCM_CREDENTIALS) has_credentials = true;
          if (c->cmsg_type == SCM_RIGHTS) {  // never expected here: close, never leak
            size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t k = 0; k < count; k++) {
              int fd;
              memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
              close(fd);
            }
          }
        }
        const size_t n = msgs[i].msg_len;
        Down& d = down_batch_[down_count_++];
        d.slot = size_t(i);
        d.length = n;
        d.kind = n == 0 && !has_credentials ? kDownEnd
                 : (hdr.msg_flags & MSG_TRUNC) ? kDownSkip  // larger than any packet we relay: dropped
                 : IsIpPacket(down_.data() + i * down_slot_, n) ? kDownIp
                 : n > 0 ? kDownJs
                 : kDownSkip;
        if (d.kind == kDownEnd) break;  // nothing follows the end
      }
      FlushDown();
      if (got < int(kDownSlots)) return;  // drained
    }
  }

  // Writes the batch's IP packets to the TUN from the first unwritten one; holds the rest when the
  // TUN cannot take one.
  void FlushDown() {
    while (down_next_ < down_count_ && tun_fd_ >= 0 && !ended_) {
      const Down& d = down_batch_[down_next_];
      uint8_t* data = down_.data() + d.slot * down_slot_;
      if (d.kind == kDownEnd) {
        down_next_ = down_count_ = 0;
        down_held_ = false;
        return End();
      }
      if (d.kind == kDownJs) {
        down_next_++;
        Tell(Note::kMessage, data, d.length);
        continue;
      }
      if (d.kind == kDownIp) {
        ssize_t n;
        do {
          n = tun_vnet_ ? WriteTunPartial(tun_fd_, data, d.length) : write(tun_fd_, data, d.length);
        } while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          down_held_ = true;
          return;
        }
        if (n < 0) Count(counters_->tun_refused, 1);  // a packet the kernel refuses (EINVAL, EIO with the link down): dropped, as Tun does
        else Count(counters_->in, 1);
      }
      down_next_++;
    }
    down_held_ = false;
  }

  // The peer's end-of-stream: the relay stops (it leaves the loop; the loop mode's polls stop).
  void End() {
    if (ended_) return;
    ended_ = true;
    up_held_ = false;
    Tell(Note::kEnd);
  }

  int tun_fd_;
  bool tun_vnet_;  // the TUN has an IFF_VNET_HDR (see PacketRelay's constructor)
  int socket_fd_;
  Counters* counters_;  // the JS object's, which outlives the pump
  std::vector<uint8_t> up_;
  std::vector<uint8_t> down_;
  std::vector<uint8_t> control_;
  // The TUN's last read batch (slots of up_slot_ bytes in up_), sent from up_next_.
  size_t up_slot_ = 0;
  size_t up_length_[kUpSlots] = {};
  size_t up_count_ = 0;
  size_t up_next_ = 0;
  // The socket's last recvmmsg batch (slots of down_slot_ bytes in down_), written from down_next_.
  enum DownKind : uint8_t { kDownIp, kDownJs, kDownSkip, kDownEnd };
  struct Down {
    size_t slot;
    size_t length;
    DownKind kind;
  };
  Down down_batch_[kDownSlots];
  size_t down_slot_ = 0;
  size_t down_count_ = 0;
  size_t down_next_ = 0;
  bool up_held_ = false;
  bool up_closed_ = false;  // the peer reads no more (EPIPE): the TUN is not read; the socket is, to its end
  bool down_held_ = false;
  bool tun_failed_ = false;  // the TUN reported an error (its device is gone)
  bool ended_ = false;
};

// ---- The thread mode -------------------------------------------------------------------------

struct Told {
  Note note;
  std::vector<uint8_t> data;  // kMessage
  const char* syscall;        // kError
  int err;                    // kError
};

using SinkRef = std::shared_ptr<Sink>;
void CallJs(Napi::Env env, Napi::Function, SinkRef* sink, Told* told);
using Teller = Napi::TypedThreadSafeFunction<SinkRef, Told, CallJs>;

// On the JS thread: a note the relay thread queued (env is null when the env is going away).
void CallJs(Napi::Env env, Napi::Function, SinkRef* sink, Told* told) {
  std::unique_ptr<Told> owned(told);
  if (env == nullptr || sink == nullptr || !CanCallJs(env)) return;
  Napi::HandleScope scope(env);
  GuardCallback(env, [&] { (*sink)->Deliver(env, told->note, told->data.data(), told->data.size(), told->syscall, told->err); });
}

// A relay on the relay thread: the RelayLoop's Relay (`id`, `env`, `tsfn`).
class LoopedPump : public Pump {
 public:
  using Pump::Pump;

  uint64_t id = 0;
  napi_env env = nullptr;
  Teller tsfn;
  uint32_t tun_now = 0;  // what epoll watches each fd for (0: not in the set)
  uint32_t socket_now = 0;
  uint32_t tun_ready = 0;  // this turn's events, served after the turn's batch
  uint32_t socket_ready = 0;
  bool due = false;

 protected:
  void Tell(Note note, const uint8_t* data, size_t length, const char* syscall, int err) override {
    auto* told = new Told{note, std::vector<uint8_t>(data, data + length), syscall, err};
    if (tsfn.NonBlockingCall(told) != napi_ok) delete told;
  }
};

class PacketLoop : public RelayLoop<PacketLoop, LoopedPump> {
 public:
  PacketLoop() : RelayLoop("oxy-packets") {}

  void Started(Relays::iterator it) { Rewatch(*it->second); }

  // Keys: the relay's id times 4, plus 1 for its TUN and 2 for its socket (0 is the loop's eventfd).
  void Event(uint64_t key, uint32_t events) {
    auto it = relays_.find(key >> 2);
    if (it == relays_.end()) return;
    LoopedPump& pump = *it->second;
    ((key & 3) == kTun ? pump.tun_ready : pump.socket_ready) |= events;
    if (!pump.due) {
      pump.due = true;
      due_.push_back(pump.id);
    }
  }

  // Each relay's events of the turn together, so its socket is served before its TUN.
  void AfterTurn(bool) {
    for (uint64_t id : due_) {
      auto it = relays_.find(id);
      if (it == relays_.end()) continue;
      LoopedPump& pump = *it->second;
      uint32_t socket_events = pump.socket_ready, tun_events = pump.tun_ready;
      pump.socket_ready = pump.tun_ready = 0;
      pump.due = false;
      pump.Serve(socket_events, tun_events);
      if (pump.ended()) Finish(it, false);
      else Rewatch(pump);
    }
    due_.clear();
  }

  void Unwatch(LoopedPump& pump) {
    Interest(pump.tun_fd(), pump.id * 4 + kTun, 0, &pump.tun_now);
    Interest(pump.socket_fd(), pump.id * 4 + kSocket, 0, &pump.socket_now);
  }

  // The relay ended (its end was told) or was cancelled: it leaves the loop and lets its env go.
  void Finish(Relays::iterator it, bool) {
    std::unique_ptr<LoopedPump> pump = std::move(it->second);
    relays_.erase(it);
    Unwatch(*pump);
    pump->tsfn.Release();
  }

 private:
  static constexpr uint64_t kTun = 1;
  static constexpr uint64_t kSocket = 2;

  void Rewatch(LoopedPump& pump) {
    Interest(pump.tun_fd(), pump.id * 4 + kTun, pump.TunInterest(), &pump.tun_now);
    Interest(pump.socket_fd(), pump.id * 4 + kSocket, pump.SocketInterest(), &pump.socket_now);
  }

  // A mask of 0 leaves the set: epoll would report a hang-up or error even without interest, and spin.
  void Interest(int fd, uint64_t key, uint32_t events, uint32_t* current) {
    if (events == *current || fd < 0) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.u64 = key;
    int op = *current == 0 ? EPOLL_CTL_ADD : events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(epoll_, op, fd, &ev) == 0) *current = events;
  }

  std::vector<uint64_t> due_;  // relays with events this turn, in the order they came
};

// ---- The JS object ---------------------------------------------------------------------------

class PacketRelay : public Napi::ObjectWrap<PacketRelay> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "PacketRelay",
                       {
                           InstanceMethod("start", &PacketRelay::Start),
                           InstanceMethod("send", &PacketRelay::Send),
                           InstanceMethod("close", &PacketRelay::JsClose),
                           InstanceMethod("stats", &PacketRelay::Stats),
                       });
  }

  // new PacketRelay(tunFd, socketFd, {maxPacketSize, sendBufferSize, thread}) takes ownership
  // of both fds (closed on refusal too).
  explicit PacketRelay(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PacketRelay>(info), tun_(this), socket_(this) {
    Napi::Env env = info.Env();
    tun_fd_ = info[0].As<Napi::Number>().Int32Value();
    socket_fd_ = info[1].As<Napi::Number>().Int32Value();
    Napi::Object options = info[2].As<Napi::Object>();
    max_packet_ = std::clamp<uint32_t>(options.Get("maxPacketSize").As<Napi::Number>().Uint32Value(), 576, 65535);
    threaded_ = options.Get("thread").ToBoolean().Value();
    int type = 0;
    socklen_t len = sizeof(type);
    if (getsockopt(socket_fd_, SOL_SOCKET, SO_TYPE, &type, &len) != 0 || type != SOCK_SEQPACKET) {
      Fail(env, "getsockopt(SO_TYPE)", type == 0 ? errno : ENOTSOCK, "socket fd is not SOCK_SEQPACKET");
    }
    // A TUN opened with partialChecksums (tun.cc) has an IFF_VNET_HDR that JS never sees: its
    // reads lose the (all-zero) header, and its TCP packets are written as CHECKSUM_PARTIAL.
    ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    tun_vnet_ = ioctl(tun_fd_, TUNGETIFF, &ifr) == 0 && (ifr.ifr_flags & IFF_VNET_HDR) != 0;
    int on = 1;
    if (setsockopt(socket_fd_, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) != 0) Fail(env, "setsockopt(SO_PASSCRED)", errno, "");
    Napi::Value send_buffer = options.Get("sendBufferSize");
    if (send_buffer.IsNumber()) {
      // A unix socket's send buffer bounds the bytes the peer has not read yet: the
      // default (~200 KiB) is three 64 KiB packets. Capped by net.core.wmem_max.
      int size = send_buffer.As<Napi::Number>().Int32Value();
      setsockopt(socket_fd_, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    }
    for (int fd : {tun_fd_, socket_fd_}) {
      int flags = fcntl(fd, F_GETFL);
      if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) Fail(env, "fcntl(O_NONBLOCK)", errno, "");
    }
  }

  ~PacketRelay() override { Shutdown(); }

 private:
  // One uv_poll per fd, forwarding to the relay (the loop mode).
  class Side : public FdPoller {
   public:
    explicit Side(PacketRelay* relay) : relay_(relay) {}

   protected:
    void OnPoll(int status, int events) override { relay_->OnPoll(this, status, events); }

   private:
    PacketRelay* relay_;
  };

  // The loop mode's pump: it tells JS at once (it runs on the JS thread).
  class InlinePump : public Pump {
   public:
    InlinePump(PacketRelay* relay, int tun_fd, bool tun_vnet, int socket_fd, size_t max_packet, Counters* counters)
        : Pump(tun_fd, tun_vnet, socket_fd, max_packet, counters), relay_(relay) {}

   protected:
    void Tell(Note note, const uint8_t* data, size_t length, const char* syscall, int err) override {
      relay_->sink_->Deliver(relay_->Env(), note, data, length, syscall, err);
    }

   private:
    PacketRelay* relay_;
  };

  [[noreturn]] void Fail(Napi::Env env, const char* syscall, int err, const std::string& detail) {
    CloseFd(tun_fd_);
    CloseFd(socket_fd_);
    ThrowErrno(env, syscall, err, detail);
  }

  // start(onMessage(data), onEnd(), onError(err))
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (socket_fd_ < 0) ThrowErrno(env, "start", EBADF, "relay is closed");
    if (started_) ThrowErrno(env, "start", EALREADY, "relay already started");
    PacketLoop* loop = nullptr;
    if (threaded_) {
      loop = &PacketLoop::Get();
      if (loop->failed_call()[0] != '\0') ThrowErrno(env, loop->failed_call(), loop->failed_errno(), "packet relay thread");
    }
    sink_->on_message = Napi::Persistent(info[0].As<Napi::Function>());
    sink_->on_end = Napi::Persistent(info[1].As<Napi::Function>());
    sink_->on_error = Napi::Persistent(info[2].As<Napi::Function>());
    sink_->context = std::make_unique<Napi::AsyncContext>(env, "OxyPacketRelay");
    started_ = true;
    if (!pinned_) {
      Ref();  // kept alive while relaying, even if JS drops it
      pinned_ = true;
    }
    if (!threaded_) {
      inline_ = std::make_unique<InlinePump>(this, tun_fd_, tun_vnet_, socket_fd_, max_packet_, &counters_);
      Rewatch(env);
      return env.Undefined();
    }
    auto pump = std::make_unique<LoopedPump>(tun_fd_, tun_vnet_, socket_fd_, max_packet_, &counters_);
    pump->id = id_ = loop->NextId();
    pump->env = env;
    // The notes hold the loop open until the relay leaves the loop (its end told, or close()).
    pump->tsfn = Teller::New(env, "OxyPacketRelay", 0, 1, new SinkRef(sink_),
                             [](Napi::Env, void*, SinkRef* sink) { delete sink; });
    loop->Start(std::move(pump));
    return env.Undefined();
  }

  // send(data) -> true when sent, false when the socket is full. For messages of
  // our own (the context); packets never pass through here. From the JS thread in either mode:
  // a socket takes sends from two threads, each message whole.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (socket_fd_ < 0) ThrowErrno(env, "sendmsg", EBADF, "relay is closed");
    ByteView bytes;
    if (!GetBytes(info[0], &bytes)) ThrowErrno(env, "sendmsg", EINVAL, "data is not a Buffer/Uint8Array");
    ssize_t n;
    do {
      n = send(socket_fd_, bytes.data, bytes.length, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
      ThrowErrno(env, "sendmsg", errno, std::to_string(bytes.length) + " bytes");
    }
    return Napi::Boolean::New(env, true);
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object stats = Napi::Object::New(env);
    stats.Set("packetsOut", static_cast<double>(counters_.out.load(std::memory_order_relaxed)));
    stats.Set("packetsIn", static_cast<double>(counters_.in.load(std::memory_order_relaxed)));
    stats.Set("tunRefused", static_cast<double>(counters_.tun_refused.load(std::memory_order_relaxed)));
    stats.Set("thread", threaded_);
    return stats;
  }

  Napi::Value JsClose(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  // From the JS thread (close, the finalizer): the relay leaves the loop thread before the fds
  // close (a turn running it finishes first), and what it had queued for JS is dropped (as the
  // loop mode tells nothing after close).
  void Shutdown() {
    if (id_ != 0) {
      PacketLoop::Get().Drop(id_);
      id_ = 0;
    }
    sink_->Reset();
    tun_.Close();
    socket_.Close();
    if (inline_) inline_->Detach();
    CloseFd(tun_fd_);
    CloseFd(socket_fd_);
    if (pinned_) {
      pinned_ = false;
      Unref();
    }
  }

  // ---- The loop mode ------------------------------------------------------------------------

  void Rewatch(Napi::Env env) {
    if (socket_fd_ < 0 || inline_->ended()) return;
    int rc = tun_.Watch(env, tun_fd_, UvEvents(inline_->TunInterest()));
    if (rc == 0) rc = socket_.Watch(env, socket_fd_, UvEvents(inline_->SocketInterest()));
    if (rc != 0) ThrowErrno(env, "uv_poll_start", -rc);
  }

  static int UvEvents(uint32_t epoll_events) {
    return (epoll_events & EPOLLIN ? int(UV_READABLE) : 0) | (epoll_events & EPOLLOUT ? int(UV_WRITABLE) : 0) |
           (epoll_events & EPOLLRDHUP ? int(UV_DISCONNECT) : 0);
  }

  void OnPoll(Side* side, int status, int events) {
    Napi::Env env = Env();
    uint32_t ready = (events & UV_READABLE ? uint32_t(EPOLLIN) : 0) | (events & UV_WRITABLE ? uint32_t(EPOLLOUT) : 0) |
                     (events & UV_DISCONNECT ? uint32_t(EPOLLRDHUP) : 0);
    if (status < 0 && side == &tun_) sink_->Deliver(env, Note::kError, nullptr, 0, "uv_poll", -status);
    else if (side == &tun_) inline_->Serve(0, ready);
    else inline_->Serve(status < 0 ? uint32_t(EPOLLERR) : ready, 0);
    if (inline_->ended()) {
      tun_.Watch(env, tun_fd_, 0);
      socket_.Watch(env, socket_fd_, 0);
    } else if (socket_fd_ >= 0) {
      Rewatch(env);
    }
  }

  Side tun_;
  Side socket_;
  int tun_fd_ = -1;
  bool tun_vnet_ = false;
  int socket_fd_ = -1;
  size_t max_packet_ = 0;
  bool threaded_ = false;
  bool started_ = false;
  bool pinned_ = false;
  Counters counters_;
  SinkRef sink_ = std::make_shared<Sink>();
  std::unique_ptr<InlinePump> inline_;  // the loop mode
  uint64_t id_ = 0;                     // the thread mode: the relay's id on the loop while it may run there
};

}  // namespace

Napi::Function InitPacketRelay(Napi::Env env) { return PacketRelay::Init(env); }

}  // namespace oxy
