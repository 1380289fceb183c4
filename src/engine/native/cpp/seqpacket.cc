// AF_UNIX SOCK_SEQPACKET sockets, which Node's net module refuses: message
// boundaries, SCM_RIGHTS fd passing, and peer-close detection.
//
// Telling a zero-length message from end-of-stream: both make recvmsg return 0.
// Every socket here has SO_PASSCRED on, so every real message (even an empty one)
// comes with an SCM_CREDENTIALS cmsg, while end-of-stream comes with none. POLLRDHUP
// (UV_DISCONNECT) tells us the peer is gone; we then read until that bare 0.
// Side effect of SO_PASSCRED: an unnamed socket that sends gets an autobound
// abstract name (as with any SO_PASSCRED unix socket); nothing relies on it.
//
// A device's TUN handed over (adoptTun, the IP on-ramp's tunHandoff): the socket's client passed
// the fd of its TUN and stops relaying it; the socket then reads that TUN itself (its packets
// become the socket's messages, through the same fast path) and writeTun() writes to it. The
// device keeps its own copy of the open file, so nothing here may depend on its flags: reads and
// writes are preadv2/pwritev2 with RWF_NOWAIT (they never wait, O_NONBLOCK or not), each packet's
// virtio header is checked as the relay's, and a wake-up reads at most batchSize packets.
#include "fastnat.h"
#include "fd-set.h"
#include "modules.h"
#include "polled.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <vector>

namespace oxy {

namespace {

constexpr size_t kMaxFdsPerMessage = 253;  // SCM_MAX_FD
constexpr size_t kBatchBytes = 128 * 1024;
// recvmmsg slots per call (ReadBatch), for messages of at most kMmsgSlotBytes.
constexpr size_t kMmsgSlots = 8;
constexpr size_t kMmsgSlotBytes = 256 * 1024;
constexpr size_t kRecvControlSize = CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage) + CMSG_SPACE(sizeof(ucred));
// A handed-over TUN's virtio header (struct virtio_net_hdr, no num_buffers), as the device's relay
// sets it (tun.cc's partialChecksums), and the bytes of one TUN read batch.
constexpr int kTunHeaderSize = 10;
constexpr size_t kTunBatchBytes = 1 << 20;

// Filesystem path, or an abstract name when it starts with '\0'.
bool MakeUnixAddress(const std::string& path, sockaddr_un* addr, socklen_t* len) {
  memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  bool abstract = !path.empty() && path[0] == '\0';
  size_t limit = abstract ? sizeof(addr->sun_path) : sizeof(addr->sun_path) - 1;
  if (path.empty() || path.size() > limit) return false;
  memcpy(addr->sun_path, path.data(), path.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (abstract ? 0 : 1));
  return true;
}

std::string Printable(const std::string& path) { return path[0] == '\0' ? "@" + path.substr(1) : path; }

int NewSeqpacketSocket(Napi::Env env) {
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, "socket(AF_UNIX, SOCK_SEQPACKET)", errno);
  return fd;
}

sockaddr_un AddressArg(Napi::Env env, Napi::Value value, socklen_t* len, const char* syscall) {
  std::string path = value.As<Napi::String>();
  sockaddr_un addr;
  if (!MakeUnixAddress(path, &addr, len)) ThrowErrno(env, syscall, ENAMETOOLONG, "bad socket path: " + Printable(path));
  return addr;
}

// seqpacketListen(path, backlog) -> fd
Napi::Value Listen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  socklen_t len = 0;
  sockaddr_un addr = AddressArg(env, info[0], &len, "bind");
  int backlog = info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 128;
  int fd = NewSeqpacketSocket(env);
  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on));  // inherited by accepted sockets
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "bind", err, Printable(info[0].As<Napi::String>()));
  }
  if (listen(fd, backlog) != 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "listen", err, Printable(info[0].As<Napi::String>()));
  }
  return Napi::Number::New(env, fd);
}

// seqpacketConnect(path) -> fd. Unix connects complete at once; a full listen
// backlog gives EAGAIN instead of blocking the event loop.
Napi::Value Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  socklen_t len = 0;
  sockaddr_un addr = AddressArg(env, info[0], &len, "connect");
  int fd = NewSeqpacketSocket(env);
  int rc;
  do {
    rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), len);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "connect", err, Printable(info[0].As<Napi::String>()));
  }
  return Napi::Number::New(env, fd);
}

// seqpacketPair() -> [fd, fd]
Napi::Value Pair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    ThrowErrno(env, "socketpair(AF_UNIX, SOCK_SEQPACKET)", errno);
  }
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(0u, fds[0]);
  result.Set(1u, fds[1]);
  return result;
}

class SeqpacketSocket : public PolledWrap<SeqpacketSocket> {
 public:
  static Napi::Function Init(Napi::Env env) {
    std::vector<PropertyDescriptor> methods = {
        InstanceMethod("start", &SeqpacketSocket::Start),
        InstanceMethod("setEvents", &SeqpacketSocket::SetEvents),
        InstanceMethod("send", &SeqpacketSocket::Send),
        InstanceMethod("shutdown", &SeqpacketSocket::ShutdownWrite),
        InstanceMethod("setBufferSizes", &SeqpacketSocket::SetBufferSizes),
        InstanceMethod("joinFastNat", &SeqpacketSocket::JoinFastNat),
        InstanceMethod("adoptTun", &SeqpacketSocket::AdoptTun),
        InstanceMethod("writeTun", &SeqpacketSocket::WriteTun),
    };
    AddCommonMethods(methods);
    return DefineClass(env, "SeqpacketSocket", methods);
  }

  // new SeqpacketSocket(fd, {maxMessageSize, batchSize}) takes ownership of fd.
  explicit SeqpacketSocket(const Napi::CallbackInfo& info) : PolledWrap<SeqpacketSocket>(info) {
    Napi::Env env = info.Env();
    int fd = info[0].As<Napi::Number>().Int32Value();
    Napi::Object options = info[1].As<Napi::Object>();
    max_message_ = std::clamp<uint32_t>(options.Get("maxMessageSize").As<Napi::Number>().Uint32Value(), 1, 64 << 20);
    batch_size_ = std::clamp<uint32_t>(options.Get("batchSize").As<Napi::Number>().Uint32Value(), 1, 4096);

    int type = 0;
    socklen_t len = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) ThrowErrno(env, "getsockopt(SO_TYPE)", errno);
    if (type != SOCK_SEQPACKET) ThrowErrno(env, "getsockopt(SO_TYPE)", ENOTSOCK, "fd is not a SOCK_SEQPACKET socket");
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) ThrowErrno(env, "fcntl(O_NONBLOCK)", errno);
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)) != 0) ThrowErrno(env, "setsockopt(SO_PASSCRED)", errno);
    fd_ = fd;
  }

 ~SeqpacketSocket() override {
    LeaveFastNat();
    tun_side_.Close();
    CloseFd(tun_fd_);
  }

 private:
  // Polls the handed-over TUN (adoptTun) for its socket.
  class TunSide : public FdPoller {
   public:
    explicit TunSide(SeqpacketSocket* socket) : socket_(socket) {}

   protected:
    void OnPoll(int status, int events) override { socket_->OnTunPoll(status, events); }

   private:
    SeqpacketSocket* socket_;
  };

  void Shutdown() override {
    LeaveFastNat();
    tun_side_.Close();
    CloseFd(tun_fd_);
    PolledWrap<SeqpacketSocket>::Shutdown();
  }

  void LeaveFastNat() {
    if (fast_) fast_->DropPeer(&peer_);
    fast_.reset();
    peer_.fd = -1;
  }

  // adoptTun(fd): the client's TUN, passed over this socket, is read and written here from now on
  // (see the top of the file). The fd is owned from here on, closed on refusal too. Refused (an
  // Error whose message says why) unless it is a TUN (the character device 10:200) attached as
  // IFF_TUN|IFF_NO_PI|IFF_VNET_HDR with a 10-byte header: what warp's relay opens.
  Napi::Value AdoptTun(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int fd = info[0].As<Napi::Number>().Int32Value();
    auto refuse = [&](int err, const std::string& why) {
      CloseFd(fd);
      ThrowErrno(env, "adoptTun", err, why);
    };
    if (fd_ < 0) refuse(EBADF, "the socket is closed");
    if (tun_fd_ >= 0) refuse(EALREADY, "a TUN was handed over already");
    struct stat st;
    if (fstat(fd, &st) != 0) refuse(errno, "fstat");
    if (!S_ISCHR(st.st_mode) || major(st.st_rdev) != 10 || minor(st.st_rdev) != 200) refuse(EINVAL, "not a TUN (/dev/net/tun)");
    ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    if (ioctl(fd, TUNGETIFF, &ifr) != 0) refuse(errno, "not an attached TUN (TUNGETIFF)");
    const int want = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
    if ((ifr.ifr_flags & (IFF_TUN | IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)) != want)
      refuse(EINVAL, "not a TUN with IFF_TUN|IFF_NO_PI|IFF_VNET_HDR (a TAP, or packet information, or no virtio header)");
    int size = 0;
    if (ioctl(fd, TUNGETVNETHDRSZ, &size) != 0 || size != kTunHeaderSize) refuse(EINVAL, "its virtio header is not 10 bytes");
    int rc = tun_side_.Watch(env, fd, UV_READABLE);
    if (rc != 0) refuse(-rc, "uv_poll_start");
    tun_fd_ = fd;
    PeerIsTun(fast_ != nullptr);
    return env.Undefined();
  }

  // The fast path's packets for this client go to its TUN (to `joined`: on the fast path already), as
  // partial as they come (the header is rewritten for each, WriteTunNoWait); what it reads there may
  // be partial too; no JS queue stands before the TUN.
  void PeerIsTun(bool joined) {
    peer_.fd = joined ? tun_fd_ : -1;
    peer_.tun = true;
    peer_.partial = true;
    peer_.sends_partial = true;
    peer_.js_backlog = false;
  }

  // writeTun(packet) -> whether the handed-over TUN took it (never waits: a packet it does not take
  // is lost, as a TUN drops what it cannot queue). Copied first: its TCP checksum field is rewritten.
  Napi::Value WriteTun(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (tun_fd_ < 0) ThrowErrno(env, "writeTun", EBADF, "no TUN was handed over");
    ByteView bytes;
    if (!GetBytes(info[0], &bytes)) ThrowErrno(env, "writeTun", EINVAL, "data is not a Buffer/Uint8Array");
    thread_local std::vector<uint8_t> copy;
    copy.assign(bytes.data, bytes.data + bytes.length);
    return Napi::Boolean::New(env, WriteTunNoWait(tun_fd_, copy.data(), copy.size()) >= 0);
  }

  void OnTunPoll(int status, int events) {
    Napi::Env env = Env();
    if (status < 0 || !(events & UV_READABLE)) {
      tun_side_.Watch(env, tun_fd_, 0);
      InvokeCallback(env, on_error_, *context_, {ErrnoError(env, "uv_poll", status < 0 ? -status : EIO, "the handed-over TUN")});
      return;
    }
    ReadTun(env);
  }

  // At most batchSize packets of the handed-over TUN, each through the fast path or to JS as a
  // message. A read the kernel refuses otherwise than with EAGAIN (the device detached its queue:
  // EBADFD) stops the watch and is told as an error. Each packet is read past the batch's earlier
  // ones: the fast path's writes of them go to the kernel together (FlushTunWrites) when the buffer
  // is full and at the end, before JS's packets (moved down to the buffer's start then) go to JS.
  void ReadTun(Napi::Env env) {
    thread_local std::vector<uint8_t> scratch;
    thread_local std::vector<uint32_t> offsets_list;
    thread_local std::vector<std::pair<size_t, size_t>> for_js;  // (offset, length) of JS's packets
    const size_t slot = max_message_;
    if (scratch.size() < kTunBatchBytes + slot) scratch.resize(kTunBatchBytes + slot);
    size_t at = 0;  // where the next packet is read
    for_js.clear();
    // The fast path's writes done, JS's packets down to the start: the next read goes after them.
    auto compact = [&] {
      if (fast_) FlushTunWrites();
      size_t to = 0;
      for (auto& [offset, length] : for_js) {
        if (offset != to) memmove(scratch.data() + to, scratch.data() + offset, length);
        offset = to;
        to += length;
      }
      at = to;
    };
    int read_errno = 0;
    double now = 0;
    if (fast_) fast_->BeginClientBatch();
    // One packet read into `data` (its header apart), through the fast path or kept for JS.
    auto take = [&](uint8_t* data, const uint8_t* header, ssize_t got) {
      // Shorter than its header (the device changed the header's size), or a GSO packet (it turned
      // TSO on): not what its relay passed; dropped (an empty read: nothing to do).
      if (got <= kTunHeaderSize || header[1] != 0) return;
      const size_t n = size_t(got) - kTunHeaderSize;
      const bool partial = (header[0] & 1) != 0;
      // A plain TCP packet's partial checksum stays so; any other is completed (bounds checked).
      if (partial) ResolveTunRead(data, n, header);
      if (fast_) {
        if (now == 0) now = NowMs();
        if (fast_->FromClient(peer_id_, data, n, now)) return;
      }
      if (partial) SumTcpChecksum(data, n);  // JS takes whole checksums
      for_js.emplace_back(size_t(data - scratch.data()), n);
    };
    // kAhead reads at a time in one io_uring_enter (with the batch's queued writes), each into a
    // slot of its own, while every one of them brings a packet (OXY_IP_TUN_RING=0: one preadv2 each).
    constexpr uint32_t kAhead = kTunReadsAhead;
    uint8_t headers[kAhead][kTunHeaderSize];
    iovec iovs[kAhead][2];
    int results[kAhead];
    uint32_t reads = 0;
    bool drained = false;
    bool ring = true;
    while (!drained && read_errno == 0 && reads < batch_size_) {
      if (scratch.size() - at < slot) {
        compact();
        if (scratch.size() - at < slot) break;
      }
      uint32_t count = std::min<uint32_t>({kAhead, batch_size_ - reads, uint32_t((scratch.size() - at) / slot)});
      for (uint32_t i = 0; i < count; i++) {
        iovs[i][0] = {headers[i], kTunHeaderSize};
        iovs[i][1] = {scratch.data() + at + i * slot, slot};
      }
      if (!ring || !(ring = ReadTunBatch(tun_fd_, iovs, 2, count, results, TunReader::kDevice))) {
        count = 1;
        ssize_t got = preadv2(tun_fd_, iovs[0], 2, -1, RWF_NOWAIT);
        results[0] = got < 0 ? -errno : int(got);
        if (results[0] == -EINTR) continue;
      }
      reads += count;
      uint32_t filled = 0;
      for (uint32_t i = 0; i < count; i++) {
        if (results[i] < 0) {
          drained = true;
          if (results[i] != -EAGAIN && results[i] != -EWOULDBLOCK && results[i] != -EINTR) read_errno = -results[i];
          continue;
        }
        filled = i + 1;
        take(scratch.data() + at + i * slot, headers[i], results[i]);
      }
      // Slots before the last one filled stay taken until the next compaction (a packet read there
      // may be queued for a write, or JS's); an empty slot after them is free again.
      at += size_t(filled) * slot;
    }
    compact();
    if (fast_) RunFdWatchKicks();
    if (fast_) fast_->ReadBornSynAcks();
    // Flows the fast path registered at their SYN (native SYNs): JS takes them first.
    if (for_js.empty() && fast_ && fast_->HasBorn()) {
      InvokeCallback(env, on_batch_, *context_, {env.Undefined(), env.Undefined(), Napi::Number::New(env, 0), env.Undefined(), Napi::Boolean::New(env, true)});
    }
    if (!for_js.empty()) {
      offsets_list.clear();
      offsets_list.push_back(0);
      for (const auto& [offset, length] : for_js) offsets_list.push_back(static_cast<uint32_t>(offset + length));
      const uint32_t count = static_cast<uint32_t>(for_js.size());
      Napi::Buffer<uint8_t> data = Napi::Buffer<uint8_t>::Copy(env, scratch.data(), at);
      Napi::Uint32Array offsets = CopyToUint32Array(env, offsets_list);
      InvokeCallback(env, on_batch_, *context_, {data, offsets, Napi::Number::New(env, count), env.Undefined(), Napi::Boolean::New(env, fast_ && fast_->HasBorn())});
    }
    if (read_errno != 0 && tun_fd_ >= 0) {
      tun_side_.Watch(env, tun_fd_, 0);
      InvokeCallback(env, on_error_, *context_, {ErrnoError(env, "preadv2", read_errno, "the handed-over TUN")});
    }
  }

  // joinFastNat(nat, partial, sendsPartial) -> the id this socket's flows are registered under
  // (nat.add); partial: its client takes TCP packets with partial checksums (FastPeer::partial);
  // sendsPartial: it may send them so (FastPeer::sends_partial).
  Napi::Value JoinFastNat(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "joinFastNat");
    LeaveFastNat();
    fast_ = FastNat::From(info[0]);
    if (!fast_) ThrowErrno(env, "joinFastNat", EINVAL, "not a FastNat");
    peer_.fd = fd_;
    peer_.js_backlog = (wanted_ & UV_WRITABLE) != 0;
    peer_.partial = info[1].ToBoolean().Value();
    peer_.sends_partial = info[2].ToBoolean().Value();
    if (tun_fd_ >= 0) PeerIsTun(true);
    peer_id_ = fast_->AddPeer(&peer_);
    return Napi::Number::New(env, peer_id_);
  }

  void ResetCallbacks() override {
    on_batch_.Reset();
    on_writable_.Reset();
    on_end_.Reset();
    on_error_.Reset();
  }

  // start(onBatch(data, offsets, count, fds?), onWritable(), onEnd(), onError(err))
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "start");
    on_batch_ = Napi::Persistent(info[0].As<Napi::Function>());
    on_writable_ = Napi::Persistent(info[1].As<Napi::Function>());
    on_end_ = Napi::Persistent(info[2].As<Napi::Function>());
    on_error_ = Napi::Persistent(info[3].As<Napi::Function>());
    EnsureContext(env, "OxySeqpacketSocket");
    return env.Undefined();
  }

  // setEvents(readable, writable). Reading also watches POLLRDHUP; after the end
  // of the stream there is nothing left to read, only queued sends to flush.
  Napi::Value SetEvents(const Napi::CallbackInfo& info) {
    bool readable = info[0].ToBoolean() && !ended_;
    wanted_ = (readable ? UV_READABLE | UV_DISCONNECT : 0) | (info[1].ToBoolean() ? UV_WRITABLE : 0);
    peer_.js_backlog = !peer_.tun && (wanted_ & UV_WRITABLE) != 0;
    SetWatch(info.Env(), wanted_);
    return info.Env().Undefined();
  }

  Napi::Value SetBufferSizes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "setsockopt");
    const int options[2] = {SO_RCVBUF, SO_SNDBUF};
    for (int i = 0; i < 2; i++) {
      if (!info[i].IsNumber()) continue;
      int size = info[i].As<Napi::Number>().Int32Value();
      if (setsockopt(fd_, SOL_SOCKET, options[i], &size, sizeof(size)) != 0) {
        ThrowErrno(env, i == 0 ? "setsockopt(SO_RCVBUF)" : "setsockopt(SO_SNDBUF)", errno);
      }
    }
    return env.Undefined();
  }

  // send(data, fds?) -> true when sent, false when the socket is full (EAGAIN).
  // The fds stay owned by the caller; the kernel duplicates them into the message.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "sendmsg");
    ByteView bytes;
    if (!GetBytes(info[0], &bytes)) ThrowErrno(env, "sendmsg", EINVAL, "data is not a Buffer/Uint8Array");
    iovec iov = {const_cast<uint8_t*>(bytes.data), bytes.length};
    msghdr hdr;
    memset(&hdr, 0, sizeof(hdr));
    hdr.msg_iov = &iov;
    hdr.msg_iovlen = 1;
    std::vector<uint8_t> control;
    if (info.Length() > 1 && info[1].IsArray()) {
      Napi::Array list = info[1].As<Napi::Array>();
      uint32_t count = list.Length();
      if (count > kMaxFdsPerMessage) ThrowErrno(env, "sendmsg", EINVAL, "more than 253 file descriptors");
      if (count > 0) {
        control.assign(CMSG_SPACE(sizeof(int) * count), 0);
        hdr.msg_control = control.data();
        hdr.msg_controllen = control.size();
        cmsghdr* c = CMSG_FIRSTHDR(&hdr);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * count);
        for (uint32_t i = 0; i < count; i++) {
          int fd = list.Get(i).As<Napi::Number>().Int32Value();
          memcpy(CMSG_DATA(c) + i * sizeof(int), &fd, sizeof(int));
        }
      }
    }
    ssize_t n;
    do {
      n = sendmsg(fd_, &hdr, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Boolean::New(env, false);
      ThrowErrno(env, "sendmsg", errno, std::to_string(bytes.length) + " bytes");
    }
    return Napi::Boolean::New(env, true);
  }

  // shutdown(): no more sends (SHUT_WR); the peer sees end-of-stream.
  Napi::Value ShutdownWrite(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "shutdown");
    if (shutdown(fd_, SHUT_WR) != 0) ThrowErrno(env, "shutdown", errno);
    return env.Undefined();
  }

  void OnPoll(int status, int events) override {
    Napi::Env env = Env();
    if (status < 0) {
      // POLLERR: libuv stopped the handle. The socket error (ECONNRESET when the
      // peer closed with our messages unread) is read and dropped by recvmsg;
      // drain what is queued, then look for end-of-stream as usual.
      ReadBatch(env);
      if (fd_ >= 0) SetWatch(env, wanted_);
      return;
    }
    if (events & (UV_READABLE | UV_DISCONNECT)) ReadBatch(env);
    if (fd_ >= 0 && (events & UV_WRITABLE)) InvokeCallback(env, on_writable_, *context_, {});
  }

  // Reads into one scratch buffer shared by every socket on this thread (the
  // data is copied out before JS runs), so idle connections cost no buffer.
  // recvmmsg takes up to kMmsgSlots messages per system call, each into a slot of max_message_
  // bytes past the batch (moved down to its end unless the fast path took it); a call that
  // returns fewer than it asked for drained the socket, so no EAGAIN read follows (a read and
  // its EAGAIN were two system calls for the one packet most wake-ups bring: a new connection's
  // SYN, ACK, request, FIN each came alone).
  void ReadBatch(Napi::Env env) {
    thread_local std::vector<uint8_t> scratch;
    thread_local std::vector<uint8_t> control;
    thread_local std::vector<uint32_t> offsets_list;
    thread_local std::vector<mmsghdr> msgs;
    thread_local std::vector<iovec> iovs;
    // Large messages (a channel's 64 MiB) get one slot: the scratch stays at most ~2 MiB.
    const size_t slots_max = max_message_ <= kMmsgSlotBytes ? kMmsgSlots : 1;
    if (scratch.size() < kBatchBytes + max_message_ * slots_max) scratch.resize(kBatchBytes + max_message_ * slots_max);
    if (control.size() < kRecvControlSize * kMmsgSlots) control.resize(kRecvControlSize * kMmsgSlots);
    if (msgs.size() < kMmsgSlots) {
      msgs.resize(kMmsgSlots);
      iovs.resize(kMmsgSlots);
    }
    size_t used = 0;
    offsets_list.clear();
    offsets_list.push_back(0);
    std::vector<std::pair<uint32_t, std::vector<int>>> passed;
    int read_errno = 0;
    bool eof = false;
    double now = 0;
    if (fast_) fast_->BeginClientBatch();
    // Messages the fast path took count too: a busy peer must not hold the loop.
    uint32_t reads = 0;
    bool drained = false;
    while (!drained && !eof && reads < batch_size_) {
      // The fast path's writes of the last call's messages go first: their slots are read into next.
      if (fast_) FlushTunWrites();
      const size_t room = (scratch.size() - used) / max_message_;
      const size_t slots = std::min({slots_max, room, size_t(batch_size_ - reads)});
      if (slots == 0) break;
      for (size_t i = 0; i < slots; i++) {
        iovs[i] = {scratch.data() + used + i * max_message_, max_message_};
        memset(&msgs[i], 0, sizeof(mmsghdr));
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_control = control.data() + i * kRecvControlSize;
        msgs[i].msg_hdr.msg_controllen = kRecvControlSize;
      }
      int got = recvmmsg(fd_, msgs.data(), static_cast<unsigned>(slots), MSG_DONTWAIT | MSG_CMSG_CLOEXEC, nullptr);
      if (got < 0) {
        if (errno == EINTR || errno == ECONNRESET) {
          reads++;
          continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) read_errno = errno;
        break;
      }
      drained = static_cast<size_t>(got) < slots;
      reads += static_cast<uint32_t>(got);
      for (int m = 0; m < got; m++) {
        msghdr& hdr = msgs[m].msg_hdr;
        uint8_t* data = static_cast<uint8_t*>(iovs[m].iov_base);
        const size_t n = msgs[m].msg_len;
        bool has_credentials = false;
        std::vector<int> fds;
        for (cmsghdr* c = CMSG_FIRSTHDR(&hdr); c != nullptr; c = CMSG_NXTHDR(&hdr, c)) {
          if (c->cmsg_level != SOL_SOCKET) continue;
          if (c->cmsg_type == SCM_CREDENTIALS) has_credentials = true;
          if (c->cmsg_type == SCM_RIGHTS) {
            size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < count; i++) {
              int fd;
              memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
              fds.push_back(fd);
            }
          }
        }
        if (n == 0 && !has_credentials && fds.empty()) {
          // The end (a closed peer reads as empty messages from here on).
          eof = true;
          break;
        }
        if (hdr.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
          // The rest of the message (or some of its fds) is gone; deliver nothing partial.
          for (int fd : fds) close(fd);
          read_errno = EMSGSIZE;
          continue;
        }
        if (fast_ && fds.empty()) {
          if (now == 0) now = NowMs();
          // An established flow's packet: NATed and written to the TUN, its slot not kept.
          if (fast_->FromClient(peer_id_, data, n, now)) continue;
        }
        // JS writes what it gets with whole checksums: a partial one is summed now.
        if (peer_.sends_partial && fds.empty()) SumTcpChecksum(data, n);
        uint32_t index = static_cast<uint32_t>(offsets_list.size() - 1);
        // Down to the batch's end (never past this slot: earlier slots held at most their size).
        if (data != scratch.data() + used) memmove(scratch.data() + used, data, n);
        used += n;
        offsets_list.push_back(static_cast<uint32_t>(used));
        if (!fds.empty()) passed.emplace_back(index, std::move(fds));
      }
    }

    // The accepted sockets the fast path's writes made readable are read now (fd-set.h).
    if (fast_) {
      FlushTunWrites();
      RunFdWatchKicks();
      fast_->ReadBornSynAcks();
    }
    uint32_t count = static_cast<uint32_t>(offsets_list.size() - 1);
    if (count == 0 && fast_ && fast_->HasBorn()) {
      InvokeCallback(env, on_batch_, *context_, {env.Undefined(), env.Undefined(), Napi::Number::New(env, 0), env.Undefined(), Napi::Boolean::New(env, true)});
    }
    if (count > 0) {
      Napi::Buffer<uint8_t> data = Napi::Buffer<uint8_t>::Copy(env, scratch.data(), used);
      Napi::Uint32Array offsets = CopyToUint32Array(env, offsets_list);
      Napi::Value fd_lists = env.Undefined();
      if (!passed.empty()) {
        Napi::Array lists = Napi::Array::New(env, count);
        for (auto& [index, fds] : passed) {
          Napi::Array list = Napi::Array::New(env, fds.size());
          for (size_t i = 0; i < fds.size(); i++) list.Set(static_cast<uint32_t>(i), fds[i]);
          lists.Set(index, list);
        }
        fd_lists = lists;
      }
      InvokeCallback(env, on_batch_, *context_, {data, offsets, Napi::Number::New(env, count), fd_lists, Napi::Boolean::New(env, fast_ && fast_->HasBorn())});
    }
    if (read_errno != 0 && fd_ >= 0) {
      const char* detail = read_errno == EMSGSIZE ? "message larger than maxMessageSize or too many fds, dropped" : "";
      InvokeCallback(env, on_error_, *context_, {ErrnoError(env, "recvmsg", read_errno, detail)});
    }
    if (eof && fd_ >= 0 && !ended_) {
      ended_ = true;
      wanted_ &= UV_WRITABLE;
      SetWatch(env, wanted_);
      InvokeCallback(env, on_end_, *context_, {});
    }
  }

  uint32_t max_message_ = 256 * 1024;
  uint32_t batch_size_ = 64;
  int wanted_ = 0;
  std::shared_ptr<FastNat> fast_;
  FastPeer peer_;
  uint32_t peer_id_ = 0;
  bool ended_ = false;
  int tun_fd_ = -1;  // the client's TUN, handed over (adoptTun)
  TunSide tun_side_{this};
  Napi::FunctionReference on_batch_;
  Napi::FunctionReference on_writable_;
  Napi::FunctionReference on_end_;
  Napi::FunctionReference on_error_;
};

class SeqpacketServer : public PolledWrap<SeqpacketServer> {
 public:
  static Napi::Function Init(Napi::Env env) {
    std::vector<PropertyDescriptor> methods = {
        InstanceMethod("start", &SeqpacketServer::Start),
        InstanceMethod("setEvents", &SeqpacketServer::SetEvents),
    };
    AddCommonMethods(methods);
    return DefineClass(env, "SeqpacketServer", methods);
  }

  // new SeqpacketServer(fd) takes ownership of a listening socket.
  explicit SeqpacketServer(const Napi::CallbackInfo& info) : PolledWrap<SeqpacketServer>(info) {
    fd_ = info[0].As<Napi::Number>().Int32Value();
  }

 private:
  void ResetCallbacks() override {
    on_connections_.Reset();
    on_error_.Reset();
  }

  // start(onConnections(fds: number[]), onError(err))
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "start");
    on_connections_ = Napi::Persistent(info[0].As<Napi::Function>());
    on_error_ = Napi::Persistent(info[1].As<Napi::Function>());
    EnsureContext(env, "OxySeqpacketServer");
    return env.Undefined();
  }

  Napi::Value SetEvents(const Napi::CallbackInfo& info) {
    SetWatch(info.Env(), info[0].ToBoolean() ? UV_READABLE : 0);
    return info.Env().Undefined();
  }

  void OnPoll(int status, int events) override {
    Napi::Env env = Env();
    if (status < 0) {
      InvokeCallback(env, on_error_, *context_, {ErrnoError(env, "uv_poll", -status)});
      return;
    }
    std::vector<int> accepted;
    int accept_errno = 0;
    while (accepted.size() < 128) {
      int fd = accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) accept_errno = errno;
        break;
      }
      accepted.push_back(fd);
    }
    if (!accepted.empty()) {
      Napi::Array list = Napi::Array::New(env, accepted.size());
      for (size_t i = 0; i < accepted.size(); i++) list.Set(static_cast<uint32_t>(i), accepted[i]);
      InvokeCallback(env, on_connections_, *context_, {list});
    }
    if (accept_errno != 0 && fd_ >= 0) InvokeCallback(env, on_error_, *context_, {ErrnoError(env, "accept4", accept_errno)});
  }

  Napi::FunctionReference on_connections_;
  Napi::FunctionReference on_error_;
};

}  // namespace

Napi::Function InitSeqpacketSocket(Napi::Env env) { return SeqpacketSocket::Init(env); }
Napi::Function InitSeqpacketServer(Napi::Env env) { return SeqpacketServer::Init(env); }

void InitSeqpacketFunctions(Napi::Env env, Napi::Object exports) {
  exports.Set("seqpacketListen", Napi::Function::New(env, Listen, "seqpacketListen"));
  exports.Set("seqpacketConnect", Napi::Function::New(env, Connect, "seqpacketConnect"));
  exports.Set("seqpacketPair", Napi::Function::New(env, Pair, "seqpacketPair"));
}

}  // namespace oxy
