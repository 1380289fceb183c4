// Byte relay between two connected stream sockets with splice(2) (or a plain copy), off the JS thread: the
// engine's CONNECT tunnel to a direct destination, where no hook needs the bytes. Each
// direction moves socket → pipe → socket, so the payload is never copied into user space
// and never crosses into JS (issue 16: Node's 64 KiB reads and two stream objects per chunk
// made the proxy slower than squid).
//
// One thread per process runs an epoll loop over every relay. The JS thread only starts
// relays and cancels them; each relay reports exactly once through its own thread-safe
// function (done, failed or cancelled), with the bytes moved each way.
//
// Ownership: Node still holds both sockets (their net.Socket objects log, count and close
// the connection). The relay works on dup(2)s of their fds, so an fd number Node closes can
// never be reused under the relay; the JS side stops Node's reads before starting it and
// cancels it when either socket is destroyed. The relay closes only its own dups and pipes.
#include "common.h"
#include "modules.h"
#include "relay-loop.h"

#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <memory>

namespace oxy {

namespace {

// One direction: from a socket into its pipe, from the pipe into the other socket.
struct Direction {
  int from = -1;
  int to = -1;
  int pipe_r = -1;
  int pipe_w = -1;
  size_t capacity = 0;  // the pipe's size: never ask to splice more into it
  size_t in_pipe = 0;
  size_t head = 0;                 // copy mode: where the unsent bytes start in `buffer`
  std::unique_ptr<char[]> buffer;  // copy mode: read(2)/write(2) through it instead of a pipe
  uint64_t bytes = 0;            // delivered to `to`
  uint64_t* counter = nullptr;   // JS's live view of `bytes` (a BigUint64Array element)
  bool eof = false;    // `from` said end of stream
  bool shut = false;   // `to` was shut down for writing after the last byte
};

struct Outcome {
  int err = 0;
  const char* syscall = nullptr;
  uint64_t a_to_b = 0;
  uint64_t b_to_a = 0;
  bool cancelled = false;
  Napi::Reference<Napi::Object>* counters = nullptr;  // released on the JS thread
};

struct Relay {
  uint64_t id = 0;
  napi_env env = nullptr;
  int fd[2] = {-1, -1};  // our dups of the two sockets
  Direction dir[2];      // [0] a → b, [1] b → a
  Napi::ThreadSafeFunction tsfn;
  Napi::Reference<Napi::Object>* counters = nullptr;  // keeps the counters' memory alive
  int err = 0;
  const char* syscall = nullptr;

  ~Relay() {
    for (Direction& d : dir) {
      CloseFd(d.pipe_r);
      CloseFd(d.pipe_w);
    }
    CloseFd(fd[0]);
    CloseFd(fd[1]);
  }

  bool Failed(const char* call, int e) {
    err = e;
    syscall = call;
    return false;
  }

  // Reads from `from` into the pipe (or, in copy mode, the buffer's free tail).
  static ssize_t Fill(Direction& d) {
    size_t tail = d.head + d.in_pipe;
    if (d.buffer) return read(d.from, d.buffer.get() + tail, d.capacity - tail);
    return splice(d.from, nullptr, d.pipe_w, nullptr, d.capacity - tail, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  }

  // Writes what the pipe (or buffer) holds into `to`. No SPLICE_F_MORE: it corks the socket,
  // and the tail of a burst would wait for the next one.
  static ssize_t Drain(Direction& d) {
    if (d.buffer) return send(d.to, d.buffer.get() + d.head, d.in_pipe, MSG_NOSIGNAL | MSG_DONTWAIT);
    return splice(d.pipe_r, nullptr, d.to, nullptr, d.in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  }

  // Moves what can move now; false on an error (recorded). Edge-triggered epoll: each
  // direction runs until neither its read nor its write makes progress.
  bool Pump(Direction& d) {
    for (;;) {
      bool progress = false;
      if (!d.eof && d.head + d.in_pipe < d.capacity) {
        ssize_t n = Fill(d);
        if (n > 0) {
          d.in_pipe += static_cast<size_t>(n);
          progress = true;
        } else if (n == 0) {
          d.eof = true;
          progress = true;
        } else if (errno == EINTR) {
          continue;
        } else if (errno != EAGAIN) {
          return Failed(d.buffer ? "read" : "splice", errno);
        }
      }
      if (d.in_pipe > 0) {
        ssize_t n = Drain(d);
        if (n > 0) {
          d.in_pipe -= static_cast<size_t>(n);
          if (d.buffer) d.head = d.in_pipe ? d.head + static_cast<size_t>(n) : 0;
          d.bytes += static_cast<uint64_t>(n);
          __atomic_store_n(d.counter, d.bytes, __ATOMIC_RELAXED);
          progress = true;
        } else if (n < 0 && errno == EINTR) {
          continue;
        } else if (n < 0 && errno != EAGAIN) {
          return Failed(d.buffer ? "send" : "splice", errno);
        }
      }
      if (d.eof && d.in_pipe == 0 && !d.shut) {
        // Half-close: the peer's FIN passes on; the other direction keeps flowing.
        if (shutdown(d.to, SHUT_WR) != 0 && errno != ENOTCONN) return Failed("shutdown", errno);
        d.shut = true;
      }
      if (!progress) return true;
    }
  }

  bool Done() const { return dir[0].shut && dir[1].shut; }
};

class SpliceLoop : public RelayLoop<SpliceLoop, Relay> {
 public:
  SpliceLoop() : RelayLoop("oxy-relay") {}

  void Started(Relays::iterator it) {
    Relay& relay = *it->second;
    bool ok = true;
    for (int fd : relay.fd) {
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
      ev.data.u64 = relay.id;
      if (epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev) != 0) ok = relay.Failed("epoll_ctl", errno);
    }
    // Bytes may already wait in either socket: edge-triggered epoll reports only new ones.
    if (ok) ok = relay.Pump(relay.dir[0]) && relay.Pump(relay.dir[1]);
    if (!ok || relay.Done()) Finish(it, false);
  }

  void Event(uint64_t id, uint32_t) {
    auto it = relays_.find(id);
    if (it == relays_.end()) return;  // finished earlier in this batch
    Relay& r = *it->second;
    bool ok = r.Pump(r.dir[0]) && r.Pump(r.dir[1]);
    if (!ok || r.Done()) Finish(it, false);
  }

  void Unwatch(Relay& r) {
    // Node keeps the sockets open through its own fds, so closing our dups would leave them
    // registered in this epoll: remove them first.
    for (int fd : r.fd) epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
  }

  void Finish(Relays::iterator it, bool cancelled) {
    std::unique_ptr<Relay> r = std::move(it->second);
    relays_.erase(it);
    Unwatch(*r);
    auto* out = new Outcome{r->err, r->syscall, r->dir[0].bytes, r->dir[1].bytes, cancelled, r->counters};
    Napi::ThreadSafeFunction tsfn = r->tsfn;
    r.reset();  // closes our dups and pipes before JS hears of it (and closes the sockets)
    napi_status status = tsfn.BlockingCall(out, Report);
    if (status != napi_ok) delete out;
    if (status != napi_closing) tsfn.Release();  // napi_closing released it already
  }

  static void Report(Napi::Env env, Napi::Function callback, Outcome* out) {
    std::unique_ptr<Outcome> o(out);
    if (env == nullptr || !CanCallJs(env)) return;  // the environment is going away (the reference goes with it)
    delete o->counters;
    GuardCallback(env, [&] {
      Napi::HandleScope scope(env);
      napi_value args[] = {o->err != 0 ? Napi::Value(ErrnoError(env, o->syscall, o->err)) : env.Null(),
                           Napi::Number::New(env, static_cast<double>(o->a_to_b)), Napi::Number::New(env, static_cast<double>(o->b_to_a)),
                           Napi::Boolean::New(env, o->cancelled)};
      CallJs(env, callback, nullptr, 4, args, nullptr);
    });
  }

};

// A pipe of about `size` bytes (F_SETPIPE_SZ; the default 64 KiB if the user's pipe budget
// refuses more). Returns its capacity.
size_t MakePipe(Napi::Env env, Direction& d, int size) {
  int p[2];
  if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) ThrowErrno(env, "pipe2", errno);
  d.pipe_r = p[0];
  d.pipe_w = p[1];
  if (size > 0) fcntl(d.pipe_w, F_SETPIPE_SZ, size);
  int got = fcntl(d.pipe_w, F_GETPIPE_SZ);
  return got > 0 ? static_cast<size_t>(got) : 65536;
}

// spliceSockets(fdA, fdB, pipeSize, counters: BigUint64Array(2), callback(err, aToB, bToA, cancelled), copy) -> id
// counters[0] (a → b) and counters[1] (b → a) follow the bytes delivered as they move. With
// `copy`, each direction reads into and writes from a buffer of pipeSize bytes on the relay
// thread instead of splicing (see native/splice.ts for when that is cheaper).
Napi::Value SpliceSockets(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd_a = info[0].As<Napi::Number>().Int32Value();
  int fd_b = info[1].As<Napi::Number>().Int32Value();
  int pipe_size = info[2].As<Napi::Number>().Int32Value();
  Napi::TypedArray counters = info[3].As<Napi::TypedArray>();
  Napi::Function callback = info[4].As<Napi::Function>();
  bool copy = info[5].ToBoolean().Value();
  if (counters.TypedArrayType() != napi_biguint64_array || counters.ElementLength() < 2)
    throw Napi::TypeError::New(env, "spliceSockets: counters must be a BigUint64Array of 2");
  auto* counter = reinterpret_cast<uint64_t*>(static_cast<uint8_t*>(counters.ArrayBuffer().Data()) + counters.ByteOffset());
  SpliceLoop& loop = SpliceLoop::Get();
  if (loop.failed_call()[0] != '\0') ThrowErrno(env, loop.failed_call(), loop.failed_errno(), "splice relay thread");

  auto relay = std::make_unique<Relay>();
  for (int i = 0; i < 2; i++) {
    relay->fd[i] = fcntl(i == 0 ? fd_a : fd_b, F_DUPFD_CLOEXEC, 0);
    if (relay->fd[i] < 0) ThrowErrno(env, "dup", errno, "fd " + std::to_string(i == 0 ? fd_a : fd_b));
    // Shared with Node's fd (one open file): Node's sockets are non-blocking already.
    int flags = fcntl(relay->fd[i], F_GETFL);
    if (flags >= 0 && !(flags & O_NONBLOCK)) fcntl(relay->fd[i], F_SETFL, flags | O_NONBLOCK);
  }
  for (int i = 0; i < 2; i++) {
    Direction& d = relay->dir[i];
    d.from = relay->fd[i];
    d.to = relay->fd[1 - i];
    if (copy) {
      d.capacity = static_cast<size_t>(pipe_size);
      d.buffer.reset(new char[d.capacity]);
    } else {
      d.capacity = MakePipe(env, d, pipe_size);
    }
    d.counter = &counter[i];
  }
  uint64_t id = loop.NextId();
  relay->id = id;
  relay->env = env;
  relay->counters = new Napi::Reference<Napi::Object>(Napi::Persistent(counters.As<Napi::Object>()));
  relay->tsfn = Napi::ThreadSafeFunction::New(env, callback, "oxySplice", 0, 1);
  loop.Start(std::move(relay));
  return Napi::Number::New(env, static_cast<double>(id));
}

// cancelSplice(id): the relay stops, closes its dups and reports `cancelled` (unless it had
// already finished: then its report is on the way).
Napi::Value CancelSplice(const Napi::CallbackInfo& info) {
  uint64_t id = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
  SpliceLoop::Get().Cancel(id);
  return info.Env().Undefined();
}

}  // namespace

void InitSplice(Napi::Env env, Napi::Object exports) {
  exports.Set("spliceSockets", Napi::Function::New(env, SpliceSockets, "spliceSockets"));
  exports.Set("cancelSplice", Napi::Function::New(env, CancelSplice, "cancelSplice"));
}

}  // namespace oxy
