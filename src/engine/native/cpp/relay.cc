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
// Where it runs: by default on a thread of its own (an epoll set of the TUN, the socket and an
// eventfd that stops it), so a wake-up is the relay's work and nothing else; what JS must hear
// (a message, an error, the end) is queued and told through a uv_async on the JS thread. With
// `thread: false` it runs on the JS thread's libuv loop (two uv_polls), as before session 16:
// each wake-up was then a whole Node loop turn (timers, the check phase's native immediates,
// and the GC of what a turn allocates), ~1 per packet batch. The relay's logic (batches,
// backpressure, end-of-stream) is the same code either way; only the waiting and the telling differ.
#include "fastnat.h"
#include "modules.h"
#include "polled.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

namespace oxy {

namespace {

// Packets moved per direction per wake-up before yielding (to the event loop, or to the other
// direction's events on the relay's thread).
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
    size_t max_packet = std::clamp<uint32_t>(options.Get("maxPacketSize").As<Napi::Number>().Uint32Value(), 576, 65535);
    threaded_ = options.Get("thread").ToBoolean().Value();
    up_slot_ = max_packet;
    up_.resize(up_slot_ * kUpSlots);
    down_slot_ = max_packet + 64;
    down_.resize(down_slot_ * kDownSlots);
    control_.resize(kControlSize * kDownSlots);
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

  // What JS hears: a non-IP message, an error, the end.
  enum class Note : uint8_t { kMessage, kError, kEnd };
  struct Told {
    Note note;
    std::vector<uint8_t> data;  // kMessage
    const char* syscall;        // kError
    int err;                    // kError
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
    if (threaded_ && (thread_.joinable() || ended_)) ThrowErrno(env, "start", EALREADY, "relay already started");
    on_message_ = Napi::Persistent(info[0].As<Napi::Function>());
    on_end_ = Napi::Persistent(info[1].As<Napi::Function>());
    on_error_ = Napi::Persistent(info[2].As<Napi::Function>());
    context_ = std::make_unique<Napi::AsyncContext>(env, "OxyPacketRelay");
    if (!pinned_) {
      Ref();  // kept alive while relaying, even if JS drops it
      pinned_ = true;
    }
    if (threaded_) StartThread(env);
    else Rewatch(env);
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
    stats.Set("packetsOut", static_cast<double>(packets_out_.load(std::memory_order_relaxed)));
    stats.Set("packetsIn", static_cast<double>(packets_in_.load(std::memory_order_relaxed)));
    stats.Set("tunRefused", static_cast<double>(tun_refused_.load(std::memory_order_relaxed)));
    stats.Set("thread", threaded_);
    return stats;
  }

  Napi::Value JsClose(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  // From the JS thread (close, the finalizer, the env's cleanup): the thread is stopped and
  // joined before the fds close, and what it had queued for JS is dropped (as the loop mode tells
  // nothing after close).
  void Shutdown() {
    StopThread();
    tun_.Close();
    socket_.Close();
    CloseFd(tun_fd_);
    CloseFd(socket_fd_);
    on_message_.Reset();
    on_end_.Reset();
    on_error_.Reset();
    if (pinned_) {
      pinned_ = false;
      Unref();
    }
  }

  // Bumps a counter only the relaying thread writes (JS reads it in stats()).
  static void Count(std::atomic<uint64_t>& counter, uint64_t n) {
    counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  // ---- Telling JS --------------------------------------------------------------------------

  void Tell(Note note, const uint8_t* data = nullptr, size_t length = 0, const char* syscall = "", int err = 0) {
    if (!threaded_) return Deliver(Env(), note, data, length, syscall, err);
    {
      std::lock_guard<std::mutex> lock(told_mutex_);
      told_.push_back(Told{note, std::vector<uint8_t>(data, data + length), syscall, err});
    }
    uv_async_send(async_);
  }

  // On the JS thread: what the relay's thread queued, in order.
  static void OnTold(uv_async_t* handle) {
    auto* self = static_cast<PacketRelay*>(handle->data);
    if (self == nullptr) return;
    std::vector<Told> batch;
    {
      std::lock_guard<std::mutex> lock(self->told_mutex_);
      batch.swap(self->told_);
    }
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    if (!CanCallJs(env)) return;
    for (Told& told : batch) {
      if (handle->data == nullptr) return;  // a callback closed the relay
      if (told.note == Note::kEnd) uv_unref(reinterpret_cast<uv_handle_t*>(handle));  // nothing follows: the loop may end
      GuardCallback(env, [self, &told, env] { self->Deliver(env, told.note, told.data.data(), told.data.size(), told.syscall, told.err); });
    }
  }

  // On the JS thread: the callback for `note` (either mode).
  void Deliver(Napi::Env env, Note note, const uint8_t* data, size_t length, const char* syscall, int err) {
    if (note == Note::kMessage) {
      if (!on_message_.IsEmpty()) InvokeCallback(env, on_message_, *context_, {Napi::Buffer<uint8_t>::Copy(env, data, length)});
    } else if (note == Note::kError) {
      if (!on_error_.IsEmpty()) InvokeCallback(env, on_error_, *context_, {ErrnoError(env, syscall, err)});
    } else if (!on_end_.IsEmpty()) {
      InvokeCallback(env, on_end_, *context_, {});
    }
  }

  // ---- The thread mode ----------------------------------------------------------------------

  void StartThread(Napi::Env env) {
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    async_ = new uv_async_t();
    int rc = uv_async_init(loop, async_, OnTold);
    if (rc != 0) {
      delete async_;
      async_ = nullptr;
      ThrowErrno(env, "uv_async_init", -rc);
    }
    async_->data = this;
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    wake_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epoll_ < 0 || wake_ < 0) {
      int err = errno;
      StopThread();
      ThrowErrno(env, epoll_ < 0 ? "epoll_create1" : "eventfd", err);
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = kWakeKey;
    epoll_ctl(epoll_, EPOLL_CTL_ADD, wake_, &ev);
    // The env's end (a worker's, or the process's teardown) stops the thread before the loop goes.
    napi_add_env_cleanup_hook(env, OnEnvCleanup, this);
    hooked_ = env;
    thread_ = std::thread([this] { Run(); });
  }

  static void OnEnvCleanup(void* arg) {
    auto* self = static_cast<PacketRelay*>(arg);
    self->hooked_ = nullptr;  // the hook is being run: not removed again
    self->StopThread();
  }

  void StopThread() {
    if (thread_.joinable()) {
      stop_.store(true, std::memory_order_relaxed);
      uint64_t one = 1;
      ssize_t ignored = write(wake_, &one, sizeof one);
      (void)ignored;
      thread_.join();
    }
    if (hooked_ != nullptr) {
      napi_remove_env_cleanup_hook(hooked_, OnEnvCleanup, this);
      hooked_ = nullptr;
    }
    CloseFd(epoll_);
    CloseFd(wake_);
    if (async_ != nullptr) {
      async_->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(async_), [](uv_handle_t* handle) { delete reinterpret_cast<uv_async_t*>(handle); });
      async_ = nullptr;
    }
    told_.clear();
  }

  static constexpr uint32_t kTunKey = 1;
  static constexpr uint32_t kSocketKey = 2;
  static constexpr uint32_t kWakeKey = 3;

  // The thread's epoll interest follows what is held, as Rewatch's does (level-triggered; a mask of
  // 0 leaves the set: epoll would report a hang-up or error even without interest, and spin).
  void Interest(int fd, uint32_t key, uint32_t events, uint32_t* current) {
    if (events == *current) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.u32 = key;
    int op = *current == 0 ? EPOLL_CTL_ADD : events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(epoll_, op, fd, &ev) == 0) *current = events;
  }

  void Run() {
    pthread_setname_np(pthread_self(), "oxy-relay");  // what `top -H` and /proc/PID/task/*/comm show
    uint32_t tun_now = 0;
    uint32_t socket_now = 0;
    while (!stop_.load(std::memory_order_relaxed) && !ended_) {
      const uint32_t in = EPOLLIN, out = EPOLLOUT, rdhup = EPOLLRDHUP;
      uint32_t tun_events = (up_held_ || up_closed_ || tun_failed_ ? 0 : in) | (down_held_ && !tun_failed_ ? out : 0);
      uint32_t socket_events = (down_held_ ? 0 : in | rdhup) | (up_held_ ? out : 0);
      Interest(tun_fd_, kTunKey, tun_events, &tun_now);
      Interest(socket_fd_, kSocketKey, socket_events, &socket_now);
      epoll_event events[3];
      int n = epoll_wait(epoll_, events, 3, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        Tell(Note::kError, nullptr, 0, "epoll_wait", errno);
        return;
      }
      // The socket first: an answer from the peer reaches the TUN before the TUN's next batch is read.
      uint32_t tun_ready = 0;
      for (int i = 0; i < n; i++) {
        uint32_t ev = events[i].events;
        if (events[i].data.u32 == kWakeKey) {
          uint64_t count;
          ssize_t ignored = read(wake_, &count, sizeof count);
          (void)ignored;
        } else if (events[i].data.u32 == kSocketKey) {
          if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) FlushUp();
          if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) PumpDown();
        } else {
          tun_ready = ev;
        }
      }
      if (tun_ready & EPOLLERR) {
        // The TUN's device is gone (tun_chr_poll's answer for a detached fd): told once, then the
        // TUN is left alone (the loop mode's uv_poll reported it on every turn).
        tun_failed_ = true;
        Tell(Note::kError, nullptr, 0, "epoll_wait", EBADFD);
      } else {
        if (tun_ready & EPOLLOUT) FlushDown();
        if (tun_ready & EPOLLIN) PumpUp();
      }
    }
  }

  // ---- The loop mode ------------------------------------------------------------------------

  // What each fd is watched for follows from what is held: a held outbound packet
  // waits for the socket to be writable (and the TUN is not read meanwhile); a held
  // inbound one waits for the TUN (and the socket is not read).
  void Rewatch(Napi::Env env) {
    if (socket_fd_ < 0 || ended_) return;
    int tun_events = (up_held_ || up_closed_ ? 0 : UV_READABLE) | (down_held_ ? UV_WRITABLE : 0);
    int socket_events = (down_held_ || ended_ ? 0 : UV_READABLE | UV_DISCONNECT) | (up_held_ ? UV_WRITABLE : 0);
    int rc = tun_.Watch(env, tun_fd_, tun_events);
    if (rc == 0) rc = socket_.Watch(env, socket_fd_, socket_events);
    if (rc != 0) ThrowErrno(env, "uv_poll_start", -rc);
  }

  void OnPoll(Side* side, int status, int events) {
    Napi::Env env = Env();
    if (status < 0 && side == &tun_) {
      Tell(Note::kError, nullptr, 0, "uv_poll", -status);
    } else if (side == &tun_) {
      if (events & UV_WRITABLE) FlushDown();
      if (events & UV_READABLE) PumpUp();
    } else {
      if (status < 0 || (events & UV_WRITABLE)) FlushUp();
      if (status < 0 || (events & (UV_READABLE | UV_DISCONNECT))) PumpDown();
    }
    if (ended_) {
      tun_.Watch(env, tun_fd_, 0);
      socket_.Watch(env, socket_fd_, 0);
    } else if (socket_fd_ >= 0) {
      Rewatch(env);
    }
  }

  // ---- The relay (either mode) --------------------------------------------------------------

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
        Count(packets_out_, uint64_t(sent));
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
        if (n < 0) Count(tun_refused_, 1);  // a packet the kernel refuses (EINVAL, EIO with the link down): dropped, as Tun does
        else Count(packets_in_, 1);
      }
      down_next_++;
    }
    down_held_ = false;
  }

  // The peer's end-of-stream: the relay stops (the thread returns; the loop mode's polls stop).
  void End() {
    if (ended_) return;
    ended_ = true;
    up_held_ = false;
    Tell(Note::kEnd);
  }

  Side tun_;
  Side socket_;
  int tun_fd_ = -1;
  bool tun_vnet_ = false;
  int socket_fd_ = -1;
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
  // The relay's state above and below is the relaying thread's alone while it runs (the relay's
  // thread, or the JS thread in the loop mode); JS reads only the counters.
  bool up_held_ = false;
  bool up_closed_ = false;  // the peer reads no more (EPIPE): the TUN is not read; the socket is, to its end
  bool down_held_ = false;
  bool tun_failed_ = false;  // thread mode: the TUN reported an error (its device is gone)
  bool ended_ = false;
  bool pinned_ = false;
  std::atomic<uint64_t> packets_out_{0};
  std::atomic<uint64_t> packets_in_{0};
  std::atomic<uint64_t> tun_refused_{0};
  std::unique_ptr<Napi::AsyncContext> context_;
  Napi::FunctionReference on_message_;
  Napi::FunctionReference on_end_;
  Napi::FunctionReference on_error_;
  // The thread mode.
  bool threaded_ = false;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  int epoll_ = -1;
  int wake_ = -1;               // an eventfd: close() wakes the thread to stop
  uv_async_t* async_ = nullptr;  // the thread's notes for JS (freed by its close callback)
  napi_env hooked_ = nullptr;    // the env whose cleanup hook stops the thread
  std::mutex told_mutex_;
  std::vector<Told> told_;  // under told_mutex_
};

}  // namespace

Napi::Function InitPacketRelay(Napi::Env env) { return PacketRelay::Init(env); }

}  // namespace oxy
