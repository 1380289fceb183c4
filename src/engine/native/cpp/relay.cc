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
//
// On the relay thread, where the kernel allows io_uring (and `ring` is asked for, the default), a
// relay's I/O goes through the thread's ring instead (RingIo below: the same batches' rules as
// ops in flight), one io_uring_enter per wake-up; where io_uring_setup is refused (ENOSYS, EPERM)
// the relay uses the epoll set as above.
#include "common.h"
#include "fastnat.h"
#include "modules.h"
#include "relay-loop.h"
#include "uring.h"

#include <fcntl.h>
#include <poll.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cerrno>
#include <cstring>
#include <memory>
#include <thread>
#include <unordered_map>
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

// Whether a message from the socket came with credentials (a zero-length one without them is the
// end); any fds passed with it (never expected here) are closed, never leaked.
bool ScanControl(msghdr& hdr) {
  bool has_credentials = false;
  for (cmsghdr* c = CMSG_FIRSTHDR(&hdr); c != nullptr; c = CMSG_NXTHDR(&hdr, c)) {
    if (c->cmsg_level != SOL_SOCKET) continue;
    if (c->cmsg_type == SCM_CREDENTIALS) has_credentials = true;
    if (c->cmsg_type == SCM_RIGHTS) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t k = 0; k < count; k++) {
        int fd;
        memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
        close(fd);
      }
    }
  }
  return has_credentials;
}

// What a message from the socket is.
enum DownKind : uint8_t { kDownIp, kDownJs, kDownSkip, kDownEnd };

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
  std::atomic<bool> ring{false};  // the relay runs on the relay thread's io_uring
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
  bool tun_vnet() const { return tun_vnet_; }
  size_t max_packet() const { return up_slot_; }
  Counters* counters() const { return counters_; }
  void Say(Note note, const uint8_t* data = nullptr, size_t length = 0, const char* syscall = "", int err = 0) {
    Tell(note, data, length, syscall, err);
  }
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
      if (n < 0) return n;
      if (n <= ssize_t(sizeof(header))) continue;
      n -= ssize_t(sizeof(header));
      ResolveTunRead(at, size_t(n), header);  // after sendPartial(): TUN_F_CSUM
      return n;
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
        const bool has_credentials = ScanControl(hdr);
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
class RingIo;

class LoopedPump : public Pump {
 public:
  using Pump::Pump;
  ~LoopedPump() override;

  uint64_t id = 0;
  napi_env env = nullptr;
  Teller tsfn;
  uint32_t tun_now = 0;  // what epoll watches each fd for (0: not in the set)
  uint32_t socket_now = 0;
  uint32_t tun_ready = 0;  // this turn's events, served after the turn's batch
  uint32_t socket_ready = 0;
  bool due = false;
  bool wants_ring = false;      // run on the loop's io_uring when it has one
  std::unique_ptr<RingIo> ring;  // then: the ops' state

 protected:
  void Tell(Note note, const uint8_t* data, size_t length, const char* syscall, int err) override {
    auto* told = new Told{note, std::vector<uint8_t>(data, data + length), syscall, err};
    if (tsfn.NonBlockingCall(told) != napi_ok) delete told;
  }
};


// ---- The ring mode (io_uring) ----------------------------------------------------------------
//
// With a ring the relay thread's wait is one io_uring_enter that also submits what the last
// completions made due: a TUN read and a socket recvmsg stay in flight (the kernel completes them
// when a packet comes, so no read ends a batch with an EAGAIN), and the sends and TUN writes a
// wake-up makes go in the same call. Per wake-up that is one system call instead of epoll_wait, the
// reads with their EAGAIN, sendmmsg, recvmmsg and one write per packet. The loop's epoll set (its
// eventfd, and relays in the epoll mode) is watched by a multishot poll in the same ring.
//
// The kernel holds an op's buffers and files until it completes, whatever the relay does: a
// relay's ring state (RingIo) has dups of the fds and its buffers, and outlives the relay until
// every op of its was cancelled and completed. Sends and writes are chained (IOSQE_IO_LINK) so
// that they land in order; one refused (a full socket: MSG_DONTWAIT's EAGAIN) cancels the rest of
// its chain, and they go again, in order, once a poll says the socket can take them.

// What an op was, in user_data's low 3 bits (the rest is its RingIo's address; 0 is the epoll poll).
enum RingOp : uint64_t { kOpRead = 1, kOpSend = 2, kOpRecv = 3, kOpWrite = 4, kOpSendPoll = 5, kOpWritePoll = 6, kOpCancel = 7 };

class RingIo {
 public:
  RingIo(LoopedPump* pump, int tun_fd, int socket_fd)
      : pump_(pump), tun_vnet_(pump->tun_vnet()), counters_(pump->counters()) {
    tun_ = fcntl(tun_fd, F_DUPFD_CLOEXEC, 0);
    socket_ = fcntl(socket_fd, F_DUPFD_CLOEXEC, 0);
    up_slot_ = pump->max_packet();
    down_slot_ = up_slot_ + 64;
    up_buf_.resize(up_slot_ * kUpSlots);
    down_buf_.resize(down_slot_ * kDownSlots);
    control_.resize(kControlSize * kDownSlots);
  }
  ~RingIo() {
    CloseFd(tun_);
    CloseFd(socket_);
  }
  RingIo(const RingIo&) = delete;
  RingIo& operator=(const RingIo&) = delete;

  bool ok() const { return tun_ >= 0 && socket_ >= 0; }
  int inflight() const { return inflight_; }
  bool dead() const { return pump_ == nullptr; }

  // The relay is gone (from any thread, under the loop's turn lock): nothing is told any more.
  void Detach() { pump_ = nullptr; }

  // On the loop's thread: its ops are cancelled; this lives until they all completed.
  void Kill(Ring& ring) {
    for (int fd : {tun_, socket_}) {
      io_uring_sqe* sqe = Sqe(ring, kOpCancel);
      sqe->opcode = IORING_OP_ASYNC_CANCEL;
      sqe->fd = fd;
      sqe->cancel_flags = IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL;
    }
  }

  LoopedPump* pump() const { return pump_; }

  void Complete(RingOp op, int res) {
    inflight_--;
    if (pump_ == nullptr) return;
    switch (op) {
      case kOpRead: return Read(res);
      case kOpSend: return Sent(res);
      case kOpRecv: return Received(res);
      case kOpWrite: return Written(res);
      case kOpSendPoll:
        send_blocked_ = send_polled_ = false;
        return;
      case kOpWritePoll:
        write_blocked_ = write_polled_ = false;
        return;
      case kOpCancel: return;
    }
  }

  // Submits what is due now: the TUN read and the socket recvmsg in flight while there is room
  // and nothing is held, the chains of sends and TUN writes, a poll for a full side. Returns how
  // many of them complete at once (the sends and writes: MSG_DONTWAIT, RWF_NOWAIT).
  unsigned Next(Ring& ring) {
    if (pump_ == nullptr) return 0;
    const int prompt_before = sending_ + writing_;
    // socket → TUN: what was received goes first (an answer reaches the TUN before the next batch).
    while (!writing_ && !write_blocked_ && down_write_ == down_done_ && down_done_ < down_recv_) {
      Slot& d = down_slots_[Index(down_done_, kDownSlots)];
      if (d.kind == kDownIp) break;
      down_done_++;
      down_write_++;
      if (d.kind == kDownJs) pump_->Say(Note::kMessage, DownData(down_done_ - 1), d.length);
      if (d.kind == kDownEnd) {
        End();
        return 0;
      }
    }
    if (writing_ == 0 && !write_blocked_ && down_write_ < down_recv_) {
      io_uring_sqe* last = nullptr;
      for (; down_write_ < down_recv_; down_write_++) {
        Slot& d = down_slots_[Index(down_write_, kDownSlots)];
        if (d.kind != kDownIp) break;
        if (last != nullptr) last->flags |= IOSQE_IO_LINK;
        last = Sqe(ring, kOpWrite);
        uint8_t* data = DownData(down_write_);
        if (tun_vnet_) {
          TunPartialHeader(data, d.length, d.header);
          d.iov[0] = {d.header, sizeof(d.header)};
          d.iov[1] = {data, d.length};
          last->opcode = IORING_OP_WRITEV;
          last->addr = reinterpret_cast<uint64_t>(d.iov);
          last->len = 2;
        } else {
          last->opcode = IORING_OP_WRITE;
          last->addr = reinterpret_cast<uint64_t>(data);
          last->len = static_cast<uint32_t>(d.length);
        }
        last->fd = tun_;
        last->off = uint64_t(-1);
        last->rw_flags = RWF_NOWAIT;  // a full TUN says EAGAIN (held, polled) rather than arming a poll of its own
        writing_++;
        Count(counters_->in, 1);  // counted when submitted (a success's completion is read later), taken back if it fails
      }
    }
    if (write_blocked_ && !write_polled_) Poll(ring, tun_, POLLOUT, kOpWritePoll, &write_polled_);
    if (!receiving_ && !ended_ && down_recv_ - down_done_ < kDownSlots) {
      size_t i = Index(down_recv_, kDownSlots);
      Slot& d = down_slots_[i];
      d.iov[0] = {DownData(down_recv_), down_slot_};
      memset(&d.msg, 0, sizeof(d.msg));
      d.msg.msg_iov = d.iov;
      d.msg.msg_iovlen = 1;
      d.msg.msg_control = control_.data() + i * kControlSize;
      d.msg.msg_controllen = kControlSize;
      io_uring_sqe* sqe = Sqe(ring, kOpRecv);
      sqe->opcode = IORING_OP_RECVMSG;
      sqe->fd = socket_;
      sqe->addr = reinterpret_cast<uint64_t>(&d.msg);
      sqe->len = 1;
      sqe->msg_flags = MSG_CMSG_CLOEXEC;
      receiving_ = true;
    }
    // TUN → socket.
    if (sending_ == 0 && !send_blocked_ && up_send_ < up_read_) {
      io_uring_sqe* last = nullptr;
      for (; up_send_ < up_read_; up_send_++) {
        Slot& u = up_slots_[Index(up_send_, kUpSlots)];
        if (last != nullptr) last->flags |= IOSQE_IO_LINK;
        last = Sqe(ring, kOpSend);
        u.iov[0] = {UpData(up_send_), u.length};
        memset(&u.msg, 0, sizeof(u.msg));
        u.msg.msg_iov = u.iov;
        u.msg.msg_iovlen = 1;
        last->opcode = IORING_OP_SENDMSG;
        last->fd = socket_;
        last->addr = reinterpret_cast<uint64_t>(&u.msg);
        last->len = 1;
        last->msg_flags = MSG_DONTWAIT | MSG_NOSIGNAL;
        sending_++;
        Count(counters_->out, 1);
      }
    }
    if (send_blocked_ && !send_polled_) Poll(ring, socket_, POLLOUT, kOpSendPoll, &send_polled_);
    if (!reading_ && !up_closed_ && !tun_failed_ && !send_blocked_ && up_read_ - up_done_ < kUpSlots) {
      Slot& u = up_slots_[Index(up_read_, kUpSlots)];
      io_uring_sqe* sqe = Sqe(ring, kOpRead);
      if (tun_vnet_) {
        u.iov[0] = {u.header, sizeof(u.header)};
        u.iov[1] = {UpData(up_read_), up_slot_};
        sqe->opcode = IORING_OP_READV;
        sqe->addr = reinterpret_cast<uint64_t>(u.iov);
        sqe->len = 2;
      } else {
        sqe->opcode = IORING_OP_READ;
        sqe->addr = reinterpret_cast<uint64_t>(UpData(up_read_));
        sqe->len = static_cast<uint32_t>(up_slot_);
      }
      sqe->fd = tun_;
      sqe->off = uint64_t(-1);
      reading_ = true;
    }
    return static_cast<unsigned>(sending_ + writing_ - prompt_before);
  }

  bool due = false;  // in the loop's list of relays whose completions came this turn

 private:
  struct Slot {
    msghdr msg;
    iovec iov[2];
    uint8_t header[10];
    size_t length = 0;
    DownKind kind = kDownSkip;
  };

  static size_t Index(uint64_t n, size_t slots) { return static_cast<size_t>(n % slots); }
  uint8_t* UpData(uint64_t n) { return up_buf_.data() + Index(n, kUpSlots) * up_slot_; }
  uint8_t* DownData(uint64_t n) { return down_buf_.data() + Index(n, kDownSlots) * down_slot_; }

  io_uring_sqe* Sqe(Ring& ring, RingOp op) {
    io_uring_sqe* sqe = ring.Sqe();
    while (sqe == nullptr) {  // full: what is queued goes first
      ring.Enter(0);
      sqe = ring.Sqe();
    }
    sqe->user_data = reinterpret_cast<uint64_t>(this) | op;
    inflight_++;
    return sqe;
  }

  void Poll(Ring& ring, int fd, uint32_t events, RingOp op, bool* polled) {
    io_uring_sqe* sqe = Sqe(ring, op);
    sqe->opcode = IORING_OP_POLL_ADD;
    sqe->fd = fd;
    sqe->poll32_events = events;
    *polled = true;
  }

  void Read(int res) {
    reading_ = false;
    if (res == -EAGAIN || res == -EINTR || res == -ECANCELED) return;
    if (res < 0) {
      // The TUN's device is gone (EBADFD) or the read failed: told once, then the TUN is left alone.
      tun_failed_ = true;
      pump_->Say(Note::kError, nullptr, 0, "read", -res);
      return;
    }
    size_t n = static_cast<size_t>(res);
    if (tun_vnet_) n = n > sizeof(Slot::header) ? n - sizeof(Slot::header) : 0;
    if (n == 0) return;  // no packet (the header alone)
    if (tun_vnet_) ResolveTunRead(UpData(up_read_), n, up_slots_[Index(up_read_, kUpSlots)].header);
    up_slots_[Index(up_read_, kUpSlots)].length = n;
    up_read_++;
  }

  void Sent(int res) {
    sending_--;
    if (res < 0) Count(counters_->out, uint64_t(-1));  // counted when submitted
    if (res >= 0) {
      up_done_++;
    } else if (res == -EAGAIN || res == -EWOULDBLOCK) {
      send_blocked_ = true;
    } else if (res == -EPIPE || res == -ECONNRESET) {
      // The peer reads no more (it closed): this batch and the TUN's next packets have nowhere to
      // go; the end comes from reading what it sent before closing.
      up_closed_ = true;
    } else if (res != -ECANCELED && res != -EINTR) {
      pump_->Say(Note::kError, nullptr, 0, "sendmsg", -res);
      up_done_++;  // that packet is dropped, as a failed send() dropped it
    }
    if (sending_ == 0) {
      if (up_closed_) up_done_ = up_read_;
      up_send_ = up_done_;  // what a refusal cancelled goes again, in order
    }
  }

  void Received(int res) {
    receiving_ = false;
    if (res == -EAGAIN || res == -EINTR || res == -ECONNRESET || res == -ECANCELED) return;
    if (res < 0) {
      pump_->Say(Note::kError, nullptr, 0, "recvmsg", -res);
      return;
    }
    Slot& d = down_slots_[Index(down_recv_, kDownSlots)];
    msghdr& hdr = d.msg;
    const bool has_credentials = ScanControl(hdr);
    const size_t n = static_cast<size_t>(res);
    d.length = n;
    d.kind = n == 0 && !has_credentials ? kDownEnd
             : (hdr.msg_flags & MSG_TRUNC) ? kDownSkip  // larger than any packet we relay: dropped
             : IsIpPacket(DownData(down_recv_), n) ? kDownIp
             : n > 0 ? kDownJs
             : kDownSkip;
    down_recv_++;
    if (d.kind == kDownEnd) ended_ = true;  // nothing is received after the end
  }

  void Written(int res) {
    writing_--;
    if (res < 0) Count(counters_->in, uint64_t(-1));  // counted when submitted
    if (res >= 0) {
      down_done_++;
    } else if (res == -EAGAIN || res == -EWOULDBLOCK) {
      write_blocked_ = true;
    } else if (res != -ECANCELED && res != -EINTR) {
      Count(counters_->tun_refused, 1);  // a packet the kernel refuses: dropped, as Tun does
      down_done_++;
    }
    if (writing_ == 0) down_write_ = down_done_;  // what a refusal cancelled goes again, in order
  }

  void End() {
    ended_ = true;
    finished_ = true;
    pump_->Say(Note::kEnd);
  }

 public:
  bool finished() const { return finished_; }

 private:
  static void Count(std::atomic<uint64_t>& counter, uint64_t n) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  LoopedPump* pump_;  // null once the relay is gone
  bool tun_vnet_;
  Counters* counters_;
  int tun_ = -1;
  int socket_ = -1;
  size_t up_slot_ = 0;
  size_t down_slot_ = 0;
  std::vector<uint8_t> up_buf_;
  std::vector<uint8_t> down_buf_;
  std::vector<uint8_t> control_;
  Slot up_slots_[kUpSlots];
  Slot down_slots_[kDownSlots];
  // TUN → socket: [up_done_, up_send_) sent or in flight, [up_send_, up_read_) read, not sent yet.
  uint64_t up_read_ = 0, up_send_ = 0, up_done_ = 0;
  // socket → TUN: [down_done_, down_write_) being written, [down_write_, down_recv_) received.
  uint64_t down_recv_ = 0, down_write_ = 0, down_done_ = 0;
  int inflight_ = 0;
  int sending_ = 0;
  int writing_ = 0;
  bool reading_ = false;
  bool receiving_ = false;
  bool send_blocked_ = false;
  bool send_polled_ = false;
  bool write_blocked_ = false;
  bool write_polled_ = false;
  bool up_closed_ = false;
  bool tun_failed_ = false;
  bool ended_ = false;     // the end was received
  bool finished_ = false;  // ... and told, after every packet before it
};

LoopedPump::~LoopedPump() = default;

class PacketLoop : public RelayLoop<PacketLoop, LoopedPump> {
 public:
  PacketLoop() : RelayLoop("oxy-packets") {}

  void Started(Relays::iterator it) {
    LoopedPump& pump = *it->second;
    if (pump.wants_ring && RingReady()) {
      auto io = std::make_unique<RingIo>(&pump, pump.tun_fd(), pump.socket_fd());
      if (io->ok()) {
        pump.counters()->ring.store(true, std::memory_order_relaxed);
        pump.ring = std::move(io);
        prompt_ += pump.ring->Next(*ring_);
        return;
      }
    }
    Rewatch(pump);
  }

  // With a ring: one io_uring_enter submits what the last turn made due and waits for completions
  // or the epoll set (a multishot poll of its fd); completions are kept for AfterTurn, which runs
  // under the turn lock. Else epoll_wait.
  int Wait(epoll_event* events, int max, int timeout) {
    if (!ring_) return epoll_wait(epoll_, events, max, timeout);
    if (!epoll_polled_) {
      io_uring_sqe* sqe = ring_->Sqe();
      if (sqe != nullptr) {
        sqe->opcode = IORING_OP_POLL_ADD;
        sqe->fd = epoll_;
        sqe->poll32_events = POLLIN;
        sqe->len = IORING_POLL_ADD_MULTI;
        sqe->user_data = 0;
        epoll_polled_ = true;
      }
    }
    // The sends and writes just queued complete within this call: the wait is for one completion
    // more (a packet, a message, a poll). Were one of them refused (a full socket), nothing may
    // follow to wake the thread: the wait is then bounded (1 ms) so that the refusal is seen.
    unsigned prompt = prompt_;
    prompt_ = 0;
    if (ring_->Completions() || epoll_more_) ring_->Enter(0);
    else if (!graveyard_.empty()) ring_->Enter(1, kPromptWaitNs);  // a closing relay waits (Settle)
    else ring_->Enter(prompt + 1, prompt > 0 ? kPromptWaitNs : 0);
    bool epoll_due = epoll_more_;
    ring_->Reap([&](const io_uring_cqe& cqe) {
      if (cqe.user_data != 0) return reaped_.push_back({cqe.user_data, cqe.res});
      epoll_due = true;
      if (!(cqe.flags & IORING_CQE_F_MORE)) epoll_polled_ = false;
    });
    if (!epoll_due) return 0;
    int n = epoll_wait(epoll_, events, max, 0);
    epoll_more_ = n == max;
    return n;
  }

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

  // Each relay's events of the turn together, so its socket is served before its TUN; then the
  // ring's completions, and what they make due.
  void AfterTurn(bool) {
    ServeEpoll();
    if (ring_) ServeRing();
  }

  void ServeEpoll() {
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

  // From a JS thread after Drop: returns once every relay that left the ring has no op in the
  // kernel any more, so its files are closed when close() returns (a TUN's name is free again, the
  // socket's peer sees the end), as in the epoll mode. Bounded (1 s) in case the thread is stuck.
  void Settle() {
    std::unique_lock<std::mutex> lock(turn_);
    settled_.wait_for(lock, std::chrono::seconds(1), [this] { return dying_.empty() && graveyard_.empty(); });
  }

  void Unwatch(LoopedPump& pump) {
    if (pump.ring) {
      // Its ops end on the loop's thread (AfterTurn): the ring is that thread's alone.
      pump.ring->Detach();
      dying_.push_back(std::move(pump.ring));
      if (std::this_thread::get_id() != loop_thread_) Wake();
      return;
    }
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

  bool RingReady() {
    if (ring_state_ == 0) {
      loop_thread_ = std::this_thread::get_id();
      ring_ = std::make_unique<Ring>();
      ring_errno_ = ring_->Setup(256);
      ring_state_ = ring_errno_ == 0 ? 1 : -1;
      if (ring_errno_ != 0) ring_.reset();
    }
    return ring_state_ == 1;
  }

  void ServeRing() {
    for (const Reaped& c : reaped_) {
      auto* io = reinterpret_cast<RingIo*>(c.user_data & ~uint64_t(7));
      io->Complete(static_cast<RingOp>(c.user_data & 7), c.res);
      if (io->dead()) {
        auto grave = graveyard_.find(io);
        if (grave != graveyard_.end() && io->inflight() == 0) graveyard_.erase(grave);
      } else if (!io->due) {
        io->due = true;
        ring_due_.push_back(io);
      }
    }
    reaped_.clear();
    for (RingIo* io : ring_due_) {
      io->due = false;
      if (io->dead()) continue;
      prompt_ += io->Next(*ring_);
      if (io->finished()) {
        auto it = relays_.find(io->pump()->id);
        if (it != relays_.end()) Finish(it, false);
      }
    }
    ring_due_.clear();
    for (std::unique_ptr<RingIo>& io : dying_) {
      io->Kill(*ring_);
      RingIo* key = io.get();
      graveyard_.emplace(key, std::move(io));
    }
    dying_.clear();
    if (graveyard_.empty()) settled_.notify_all();
  }

  std::vector<uint64_t> due_;  // relays with events this turn, in the order they came
  // The ring mode (the loop's thread alone, but for dying_: under the turn lock).
  struct Reaped {
    uint64_t user_data;
    int res;
  };
  static constexpr uint64_t kPromptWaitNs = 1000000;
  std::unique_ptr<Ring> ring_;
  unsigned prompt_ = 0;  // completions the queued entries make at once (see Wait)
  int ring_state_ = 0;  // 0: not tried yet; 1: set up; -1: refused (ring_errno_)
  int ring_errno_ = 0;
  std::thread::id loop_thread_;
  bool epoll_polled_ = false;  // the multishot poll of the epoll set is armed
  bool epoll_more_ = false;    // the last epoll_wait filled its array: more may wait
  std::vector<Reaped> reaped_;
  std::vector<RingIo*> ring_due_;
  std::vector<std::unique_ptr<RingIo>> dying_;
  std::unordered_map<RingIo*, std::unique_ptr<RingIo>> graveyard_;  // cancelled, ops still in flight
  std::condition_variable settled_;  // graveyard_ emptied (under turn_)
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
                           InstanceMethod("sendPartial", &PacketRelay::SendPartial),
                           InstanceMethod("offerTun", &PacketRelay::OfferTun),
                           InstanceMethod("handOver", &PacketRelay::HandOver),
                       });
  }

  // new PacketRelay(tunFd, socketFd, {maxPacketSize, sendBufferSize, thread, ring}) takes ownership
  // of both fds (closed on refusal too).
  explicit PacketRelay(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PacketRelay>(info), tun_(this), socket_(this) {
    Napi::Env env = info.Env();
    tun_fd_ = info[0].As<Napi::Number>().Int32Value();
    socket_fd_ = info[1].As<Napi::Number>().Int32Value();
    Napi::Object options = info[2].As<Napi::Object>();
    max_packet_ = std::clamp<uint32_t>(options.Get("maxPacketSize").As<Napi::Number>().Uint32Value(), 576, 65535);
    threaded_ = options.Get("thread").ToBoolean().Value();
    ring_ = options.Get("ring").ToBoolean().Value();
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
    pump->wants_ring = ring_;
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

  // sendPartial() -> whether the TUN now leaves checksums partial: TUN_F_CSUM on a TUN with the
  // addon's IFF_VNET_HDR, once the edge said it sums TCP checksums where it must (FastPeer's
  // sends_partial). Its kernel then sums no TCP segment it sends (nor copies one to segment it:
  // the device gets scatter-gather with the checksum offload); the relay passes plain TCP packets
  // on partial and completes any other partial checksum (ResolveTunRead). Either thread may read
  // meanwhile: a packet is partial or not by its own header.
  Napi::Value SendPartial(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (tun_fd_ < 0 || !tun_vnet_) return Napi::Boolean::New(env, false);
    if (ioctl(tun_fd_, TUNSETOFFLOAD, static_cast<unsigned long>(TUN_F_CSUM)) != 0) ThrowErrno(env, "ioctl(TUNSETOFFLOAD)", errno);
    partial_sends_ = true;
    return Napi::Boolean::New(env, true);
  }

  // offerTun(message) -> true when sent (false: the socket is full): `message` with the TUN's fd
  // (SCM_RIGHTS), for an edge that said it takes the TUN (tunHandoff). The relay goes on meanwhile:
  // until handOver(), both read the TUN, and a packet either reads reaches the edge.
  Napi::Value OfferTun(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (socket_fd_ < 0 || tun_fd_ < 0) ThrowErrno(env, "sendmsg", EBADF, "relay is closed");
    ByteView bytes;
    if (!GetBytes(info[0], &bytes)) ThrowErrno(env, "sendmsg", EINVAL, "data is not a Buffer/Uint8Array");
    iovec iov = {const_cast<uint8_t*>(bytes.data), bytes.length};
    alignas(cmsghdr) uint8_t control[CMSG_SPACE(sizeof(int))] = {};
    msghdr hdr = {};
    hdr.msg_iov = &iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control;
    hdr.msg_controllen = sizeof(control);
    cmsghdr* c = CMSG_FIRSTHDR(&hdr);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &tun_fd_, sizeof(int));
    ssize_t n;
    do {
      n = sendmsg(socket_fd_, &hdr, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
      ThrowErrno(env, "sendmsg", errno, "the TUN's fd");
    }
    return Napi::Boolean::New(env, true);
  }

  // handOver() -> the socket's fd, now the caller's: the edge took the TUN, so the relay stops
  // (as close() stops it: what it held is dropped) and closes its fd of the TUN, but not the
  // socket, which stays the device's control channel (its end: the edge let the TUN go).
  Napi::Value HandOver(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (socket_fd_ < 0) ThrowErrno(env, "handOver", EBADF, "relay is closed");
    int fd = socket_fd_;
    socket_fd_ = -1;
    Shutdown();
    return Napi::Number::New(env, fd);
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object stats = Napi::Object::New(env);
    stats.Set("packetsOut", static_cast<double>(counters_.out.load(std::memory_order_relaxed)));
    stats.Set("packetsIn", static_cast<double>(counters_.in.load(std::memory_order_relaxed)));
    stats.Set("tunRefused", static_cast<double>(counters_.tun_refused.load(std::memory_order_relaxed)));
    stats.Set("thread", threaded_);
    stats.Set("ring", counters_.ring.load(std::memory_order_relaxed));
    stats.Set("partialSends", partial_sends_);
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
      PacketLoop& loop = PacketLoop::Get();
      loop.Drop(id_);
      if (ring_) loop.Settle();
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
  bool partial_sends_ = false;  // sendPartial() turned TUN_F_CSUM on
  int socket_fd_ = -1;
  size_t max_packet_ = 0;
  bool threaded_ = false;
  bool ring_ = false;  // thread mode: on the relay thread's io_uring when it has one
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
