// TcpAcceptor: the edge's upgrade listener (netns/upgrader.ts) accepted here instead of by Node's
// net.Server: accept4 gives each connection's peer address (the NAT slot that names its flow: no
// getpeername), and JS gets the wake-up's connections as one buffer of (token, address, port)
// records. Each socket waits under its token: read(token) reads its first chunk (the flow's early
// data, handed to JS), a QUIC pump takes it with its poll handle (TakeAccepted, Conn::AttachPump),
// take(token) gives its fd to JS (a net.Socket where one is needed), drop(token) closes it.
// docs/decisions.md "The vnet path's new connections accepted in the addon (session 12)".
#include "accept.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <unordered_map>

#include "common.h"
#include "modules.h"
#include "polled.h"

namespace oxy {

namespace {

class TcpAcceptor;

struct Accepted {
  double token = 0;
  int fd = -1;
  FdWatch* watch = nullptr;  // made by read(); data is this entry while it reads
  TcpAcceptor* owner = nullptr;
  bool reading = false;
  // ReadAcceptedFirst: the first chunk goes to `early` (not to JS).
  EarlyChunkFn early = nullptr;
  void* early_ctx = nullptr;
  int64_t early_id = 0;
  // The peer as accept4 gave it (family 4|6; none for other families).
  int family = 0;
  uint16_t port = 0;
  uint8_t addr[16] = {};
};

// Per thread: an edge in a worker thread has its own loop, acceptors and pumps.
thread_local std::unordered_map<double, std::unique_ptr<Accepted>> table;
thread_local double next_token = 0;

constexpr size_t kRecord = 32;  // f64 token, u16 port, u8 address length (4|16), pad, 16 address bytes
constexpr int kAcceptsPerWake = 64;
constexpr size_t kEarlyRead = 64 * 1024;
// ReadAcceptedNow's reads that found the chunk, and OnEarlyRead's (after a wake-up).
thread_local uint64_t early_at_accept = 0;
thread_local uint64_t early_at_wake = 0;

uint8_t* EarlyBuffer() {
  static thread_local std::unique_ptr<uint8_t[]> buf(new uint8_t[kEarlyRead]);
  return buf.get();
}

// The first chunk's one read into EarlyBuffer(), again on EINTR: bytes, 0 at the end, or -errno.
ssize_t ReadEarly(int fd) {
  ssize_t n;
  do n = read(fd, EarlyBuffer(), kEarlyRead);
  while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : n;
}

// What ReadEarly got (`n`) to the socket's early callback, once; a chunk counts in `found`.
void GiveEarly(Accepted* a, ssize_t n, uint64_t& found) {
  EarlyChunkFn early = a->early;
  a->early = nullptr;
  if (n > 0) found++;
  early(a->early_ctx, a->early_id, EarlyBuffer(), n);
}

void CloseAccepted(std::unique_ptr<Accepted> a, bool reset) {
  FreeFdWatch(a->watch);
  if (reset) {
    linger l{1, 0};  // an RST, as Node's resetAndDestroy()
    setsockopt(a->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  close(a->fd);
}

class TcpAcceptor : public PolledWrap<TcpAcceptor> {
 public:
  static Napi::Function Init(Napi::Env env) {
    std::vector<PropertyDescriptor> methods = {
        InstanceMethod("start", &TcpAcceptor::Start),
        InstanceMethod("setEvents", &TcpAcceptor::SetEvents),
        InstanceMethod("read", &TcpAcceptor::Read),
        InstanceMethod("take", &TcpAcceptor::Take),
        InstanceMethod("drop", &TcpAcceptor::Drop),
        InstanceMethod("congestion", &TcpAcceptor::Congestion),
        InstanceMethod("earlyReads", &TcpAcceptor::EarlyReads),
    };
    AddCommonMethods(methods);
    return DefineClass(env, "TcpAcceptor", methods);
  }

  // new TcpAcceptor(fd) takes ownership of a listening TCP socket.
  explicit TcpAcceptor(const Napi::CallbackInfo& info) : PolledWrap<TcpAcceptor>(info) {
    fd_ = info[0].As<Napi::Number>().Int32Value();
    napi_get_uv_event_loop(info.Env(), &loop_);
    // Accepted sockets inherit it (Linux): no setsockopt per connection.
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    HoldFdSet(loop_);  // the accepted sockets' first reads
    holding_ = true;
  }

  ~TcpAcceptor() override {
    DropAll();
    Unhold();
  }

 private:
  void ResetCallbacks() override {
    on_accepted_.Reset();
    on_read_.Reset();
    on_error_.Reset();
  }

  void Shutdown() override {
    DropAll();
    Unhold();
    PolledWrap<TcpAcceptor>::Shutdown();
  }

  void Unhold() {
    if (!holding_) return;
    holding_ = false;
    ReleaseFdSet();
  }

  // The sockets still waiting here go with the acceptor.
  void DropAll() {
    for (auto it = table.begin(); it != table.end();) {
      if (it->second->owner != this) {
        ++it;
        continue;
      }
      CloseAccepted(std::move(it->second), false);
      it = table.erase(it);
    }
  }

  // start(onAccepted(records: Buffer, count), onRead(token, chunk | undefined, errno), onError(err))
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "start");
    on_accepted_ = Napi::Persistent(info[0].As<Napi::Function>());
    on_read_ = Napi::Persistent(info[1].As<Napi::Function>());
    on_error_ = Napi::Persistent(info[2].As<Napi::Function>());
    EnsureContext(env, "OxyTcpAcceptor");
    return env.Undefined();
  }

  Napi::Value SetEvents(const Napi::CallbackInfo& info) {
    SetWatch(info.Env(), info[0].ToBoolean() ? UV_READABLE : 0);
    return info.Env().Undefined();
  }

  static Accepted* Find(const Napi::CallbackInfo& info) {
    auto it = table.find(info[0].As<Napi::Number>().DoubleValue());
    return it == table.end() ? nullptr : it->second.get();
  }

  // read(token) → false when there is no such socket: its next bytes (one read) come to onRead,
  // or its EOF (no chunk, errno 0) or error (errno).
  Napi::Value Read(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Accepted* a = Find(info);
    if (!a || a->owner != this) return Napi::Boolean::New(env, false);
    if (!a->watch) a->watch = NewFdWatch(loop_, a->fd);
    if (!a->watch) return Napi::Boolean::New(env, false);
    a->watch->data = a;
    if (SetFdWatch(a->watch, UV_READABLE, &TcpAcceptor::OnEarlyRead) != 0) return Napi::Boolean::New(env, false);
    a->reading = true;
    return Napi::Boolean::New(env, true);
  }

  // take(token) → the socket's fd, now JS's (-1: none).
  Napi::Value Take(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), TakeAccepted(info[0].As<Napi::Number>().DoubleValue(), nullptr));
  }

  // congestion(token, name) -> whether the socket now sends with congestion control `name`
  // (TCP_CONGESTION; false: not held here any more, or the kernel refused the name).
  Napi::Value Congestion(const Napi::CallbackInfo& info) {
    auto it = table.find(info[0].As<Napi::Number>().DoubleValue());
    const bool set = it != table.end() && it->second->fd >= 0 && SetTcpCongestion(it->second->fd, info[1]);
    return Napi::Boolean::New(info.Env(), set);
  }

  // earlyReads() → [at the accept, at a wake-up]: first chunks read for QUIC pumps on this thread
  // (ReadAcceptedNow, OnEarlyRead), since it started.
  Napi::Value EarlyReads(const Napi::CallbackInfo& info) {
    Napi::Array out = Napi::Array::New(info.Env(), 2);
    out.Set(uint32_t(0), double(early_at_accept));
    out.Set(uint32_t(1), double(early_at_wake));
    return out;
  }

  // drop(token, reset): closes the socket (with an RST when `reset`).
  Napi::Value Drop(const Napi::CallbackInfo& info) {
    auto it = table.find(info[0].As<Napi::Number>().DoubleValue());
    if (it != table.end()) {
      std::unique_ptr<Accepted> a = std::move(it->second);
      table.erase(it);
      CloseAccepted(std::move(a), info[1].ToBoolean());
    }
    return info.Env().Undefined();
  }

  void OnPoll(int status, int events) override {
    Napi::Env env = Env();
    if (status < 0) {
      InvokeCallback(env, on_error_, *context_, {ErrnoError(env, "uv_poll", -status)});
      return;
    }
    uint8_t records[kAcceptsPerWake * kRecord];
    int count = 0;
    int accept_errno = 0;
    while (count < kAcceptsPerWake) {
      sockaddr_storage ss;
      socklen_t len = sizeof ss;
      int fd = accept4(fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) accept_errno = errno;
        break;
      }
      uint8_t* r = records + count * kRecord;
      memset(r, 0, kRecord);
      uint16_t port = 0;
      uint32_t scope = 0;
      const int kind = StoreAddress(reinterpret_cast<sockaddr*>(&ss), r + 16, &port, &scope);
      auto a = std::make_unique<Accepted>();
      a->token = ++next_token;
      a->fd = fd;
      a->owner = this;
      a->family = kind == 4 || kind == 6 ? kind : 0;
      a->port = port;
      memcpy(a->addr, r + 16, 16);
      memcpy(r, &a->token, 8);
      memcpy(r + 8, &port, 2);
      r[10] = kind == 4 ? 4 : 16;
      table[a->token] = std::move(a);
      count++;
    }
    if (count > 0) {
      Napi::Buffer<uint8_t> buf = Napi::Buffer<uint8_t>::Copy(env, records, size_t(count) * kRecord);
      InvokeCallback(env, on_accepted_, *context_, {buf, Napi::Number::New(env, count)});
    }
    if (accept_errno != 0 && fd_ >= 0) InvokeCallback(env, on_error_, *context_, {ErrnoError(env, "accept4", accept_errno)});
  }

 public:
  // The first chunk's read (read(), ReadAcceptedFirst).
  static void OnEarlyRead(FdWatch* handle, int) {
    auto* a = static_cast<Accepted*>(handle->data);
    if (!a || !a->reading) {
      // Bytes after the first chunk before a pump took the socket: they wait for it (see below).
      SetFdWatch(handle, 0, &TcpAcceptor::OnEarlyRead);
      return;
    }
    TcpAcceptor* self = a->owner;
    a->reading = false;
    const ssize_t n = ReadEarly(a->fd);
    if (n == -EAGAIN || n == -EWOULDBLOCK) {
      // Woken with nothing to read: wait again.
      a->reading = true;
      return;
    }
    // One read: the flow's first chunk; the next bytes wait for the pump. The watch still wants
    // them until it wakes again (above): the device mostly sends nothing more before the answer,
    // and the pump that takes the watch wants them too, so neither change costs an epoll_ctl.
    // Its end or error stays readable: wanted no more at once.
    if (n <= 0) SetFdWatch(handle, 0, &TcpAcceptor::OnEarlyRead);
    if (a->early) return GiveEarly(a, n, early_at_wake);
    const int err = n < 0 ? int(-n) : 0;
    const double token = a->token;
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    if (!CanCallJs(env)) return;
    GuardCallback(env, [&] {
      napi_value chunk = n > 0 ? Napi::Buffer<uint8_t>::Copy(env, EarlyBuffer(), size_t(n)) : env.Undefined();
      InvokeCallback(env, self->on_read_, *self->context_, {Napi::Number::New(env, token), chunk, Napi::Number::New(env, err)});
    });
  }

 private:
  uv_loop_t* loop_ = nullptr;
  bool holding_ = false;
  Napi::FunctionReference on_accepted_;
  Napi::FunctionReference on_read_;
  Napi::FunctionReference on_error_;
};

}  // namespace

int TakeAccepted(double token, FdWatch** watch) {
  auto it = table.find(token);
  if (it == table.end()) return -1;
  std::unique_ptr<Accepted> a = std::move(it->second);
  table.erase(it);
  if (a->watch) {
    a->watch->data = nullptr;
    if (watch) {
      // Still wanting what it wanted (the taker sets its own callback and events at once).
      *watch = a->watch;
    } else {
      FreeFdWatch(a->watch);
    }
  } else if (watch) {
    *watch = nullptr;
  }
  return a->fd;
}

int TakeAcceptedWatched(double token, uv_loop_t* loop, FdWatch** watch) {
  auto it = table.find(token);
  if (it == table.end()) return -1;
  const Accepted a = *it->second;
  const int fd = TakeAccepted(token, watch);
  if (!*watch) *watch = NewFdWatch(loop, fd);
  if (*watch && a.family) SetFdWatchPeer(*watch, a.family, a.addr, a.port);
  return fd;
}

namespace {

bool WatchFirst(Accepted* a, uv_loop_t* loop) {
  if (!a->watch) a->watch = NewFdWatch(loop, a->fd);
  if (!a->watch) return false;
  a->watch->data = a;
  if (SetFdWatch(a->watch, UV_READABLE, &TcpAcceptor::OnEarlyRead) != 0) return false;
  if (a->family) SetFdWatchPeer(a->watch, a->family, a->addr, a->port);
  return true;
}

}  // namespace

bool ReadAcceptedFirst(double token, uv_loop_t* loop, EarlyChunkFn cb, void* ctx, int64_t id, bool now) {
  auto it = table.find(token);
  if (it == table.end()) return false;
  Accepted* a = it->second.get();
  if (!now && !WatchFirst(a, loop)) return false;
  a->reading = true;
  a->early = cb;
  a->early_ctx = ctx;
  a->early_id = id;
  return true;
}

bool ReadAcceptedNow(double token, uv_loop_t* loop) {
  auto it = table.find(token);
  if (it == table.end()) return false;
  Accepted* a = it->second.get();
  if (!a->reading || !a->early) return false;
  const ssize_t n = ReadEarly(a->fd);
  if (n == -EAGAIN || n == -EWOULDBLOCK) {
    if (WatchFirst(a, loop)) return false;
    // Not watched: the pump that takes the socket at the ANSWER reads the chunk.
    a->reading = false;
    a->early = nullptr;
    return false;
  }
  // As OnEarlyRead's one read: the next bytes, the end after a chunk, wait for the pump.
  a->reading = false;
  GiveEarly(a, n, early_at_accept);
  return true;
}

void ForgetAcceptedReads(void* ctx) {
  for (auto& [token, a] : table)
    if (a->early_ctx == ctx) a->early = nullptr;
}

Napi::Function InitTcpAcceptor(Napi::Env env) { return TcpAcceptor::Init(env); }

}  // namespace oxy
