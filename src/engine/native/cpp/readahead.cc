// A read-ahead under the connector's TLS (issue 16): a thread that always drains the TCP socket
// to the edge, so Node's HTTP/2 session can run on a native socket and still never deadlock.
//
// Node's Http2Session stops reading its socket while one of its writes is in progress
// (node_http2.cc MaybeStopReading). With large windows, two such sessions sending bulk at
// once both stop reading and both writes stall for good. One side that always drains is
// enough. Before, that was a JS Duplex between the TLS socket and the session (a JS turn, a
// JSStreamSocket and a copy per 16 KiB TLS record: the transport's largest bulk cost). Here the
// session's TLS runs natively over one end of a socketpair; this thread moves bytes between the
// other end and the TCP socket:
//   TCP → pair: always read while the queue is under `max_queued` (a list of blocks that grows
//               as needed), written into the pair as Node takes them. HTTP/2 flow control bounds
//               the queue: the edge cannot send past the windows our session advertised.
//   pair → TCP: through a fixed buffer, at the pace the edge reads.
//
// One thread per process, an edge-triggered epoll loop over every relay. The JS thread starts
// relays (gets the socketpair end for its net.Socket) and cancels them; each relay reports once
// through its own thread-safe function: done, failed (errno) or cancelled. On a failure our end
// of the pair stays open until the report ran, so Node hears of the error before any EOF.
// Ownership: Node keeps its TCP socket (not reading it); the relay works on a dup of its fd.
#include "common.h"
#include "modules.h"
#include "relay-loop.h"

#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <memory>

namespace oxy {

namespace {

constexpr size_t kBlock = 256 * 1024;  // read-ahead block; also the pair → TCP buffer
constexpr int kMaxIov = 16;
constexpr int kPairSndBuf = 1024 * 1024;  // each end of the pair (the kernel doubles it, up to 2 x wmem_max)

struct Block {
  std::unique_ptr<char[]> data;
  size_t head = 0;  // first byte not yet written into the pair
  size_t tail = 0;  // end of what was read from TCP
};

struct Outcome {
  int err = 0;
  const char* syscall = nullptr;
  bool cancelled = false;
  int local = -1;  // closed on the JS thread, after the callback ran
};

struct ReadAhead {
  uint64_t id = 0;
  napi_env env = nullptr;
  int tcp = -1;    // our dup of Node's TCP socket
  int local = -1;  // our end of the socketpair; Node's TLS runs on the other
  size_t max_queued = 0;

  // TCP → pair
  std::deque<Block> queue;
  std::unique_ptr<char[]> spare;  // a drained block kept for the next read
  size_t queued = 0;
  bool down_eof = false;
  bool down_shut = false;
  bool local_gone = false;  // Node closed its end: nothing more to deliver

  // pair → TCP
  std::unique_ptr<char[]> up{new char[kBlock]};
  size_t up_head = 0;
  size_t up_len = 0;
  bool up_eof = false;
  bool up_shut = false;

  Napi::ThreadSafeFunction tsfn;
  size_t moved = 0;  // bytes read either way since the loop last looked (its bulk measure)
  int err = 0;
  const char* syscall = nullptr;

  ~ReadAhead() {
    CloseFd(tcp);
    CloseFd(local);
  }

  bool Failed(const char* call, int e) {
    err = e;
    syscall = call;
    return false;
  }

  // Writes queued bytes into the pair until it is full. EPIPE/ECONNRESET: Node closed its end.
  bool Deliver(bool* progress) {
    while (queued > 0 && !local_gone) {
      iovec iov[kMaxIov];
      int n_iov = 0;
      for (auto it = queue.begin(); it != queue.end() && n_iov < kMaxIov; ++it) {
        if (it->tail == it->head) continue;
        iov[n_iov].iov_base = it->data.get() + it->head;
        iov[n_iov].iov_len = it->tail - it->head;
        n_iov++;
      }
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = static_cast<size_t>(n_iov);
      ssize_t n = sendmsg(local, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return true;
        if (errno == EPIPE || errno == ECONNRESET) {
          DropQueue();
          local_gone = true;
          *progress = true;
          return true;
        }
        return Failed("sendmsg", errno);
      }
      *progress = true;
      size_t left = static_cast<size_t>(n);
      queued -= left;
      while (left > 0) {
        Block& b = queue.front();
        size_t take = std::min(left, b.tail - b.head);
        b.head += take;
        left -= take;
        if (b.head == b.tail && (queue.size() > 1 || b.tail == kBlock)) Recycle();
      }
      if (queue.size() == 1 && queue.front().head == queue.front().tail) queue.front().head = queue.front().tail = 0;
    }
    return true;
  }

  void Recycle() {
    if (!spare) spare = std::move(queue.front().data);
    queue.pop_front();
  }

  void DropQueue() {
    queue.clear();
    queued = 0;
  }

  // A read that returns less than it asked for emptied the socket: with edge-triggered epoll
  // the next bytes bring a new event, so the Pump* loops do not ask again (a syscall per message).
  bool PumpDown() {
    bool dry = false;
    for (;;) {
      bool progress = false;
      if (!Deliver(&progress)) return false;
      if (!dry && !down_eof && queued < max_queued) {
        if (queue.empty() || queue.back().tail == kBlock) {
          Block b;
          b.data = spare ? std::move(spare) : std::unique_ptr<char[]>(new char[kBlock]);
          queue.push_back(std::move(b));
        }
        Block& b = queue.back();
        size_t room = kBlock - b.tail;
        ssize_t n = read(tcp, b.data.get() + b.tail, room);
        if (n > 0) {
          moved += static_cast<size_t>(n);
          dry = static_cast<size_t>(n) < room;
          if (local_gone) {
            b.head = b.tail = 0;  // nobody to deliver to: read and drop
          } else {
            b.tail += static_cast<size_t>(n);
            queued += static_cast<size_t>(n);
          }
          progress = true;
        } else if (n == 0) {
          down_eof = true;
          progress = true;
        } else if (errno == EINTR) {
          continue;
        } else if (errno != EAGAIN) {
          return Failed("read", errno);
        }
      }
      if (down_eof && queued == 0 && !down_shut) {
        // The edge's FIN passes on to Node; the other direction keeps flowing.
        if (!local_gone && shutdown(local, SHUT_WR) != 0 && errno != ENOTCONN) return Failed("shutdown", errno);
        down_shut = true;
      }
      if (!progress) return true;
    }
  }

  bool PumpUp() {
    bool dry = false;
    for (;;) {
      bool progress = false;
      size_t tail = up_head + up_len;
      if (!dry && !up_eof && tail < kBlock) {
        ssize_t n = read(local, up.get() + tail, kBlock - tail);
        if (n > 0) {
          moved += static_cast<size_t>(n);
          dry = static_cast<size_t>(n) < kBlock - tail;
          up_len += static_cast<size_t>(n);
          progress = true;
        } else if (n == 0) {
          up_eof = true;
          progress = true;
        } else if (errno == EINTR) {
          continue;
        } else if (errno == ECONNRESET) {
          up_eof = true;  // Node closed its end with bytes of ours unread: what it wrote is all read
          progress = true;
        } else if (errno != EAGAIN) {
          return Failed("read", errno);
        }
      }
      if (up_len > 0) {
        ssize_t n = send(tcp, up.get() + up_head, up_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
          up_len -= static_cast<size_t>(n);
          up_head = up_len ? up_head + static_cast<size_t>(n) : 0;
          progress = true;
        } else if (n < 0 && errno == EINTR) {
          continue;
        } else if (n < 0 && errno != EAGAIN) {
          return Failed("send", errno);
        }
      }
      if (up_eof && up_len == 0 && !up_shut) {
        if (shutdown(tcp, SHUT_WR) != 0 && errno != ENOTCONN) return Failed("shutdown", errno);
        up_shut = true;
      }
      if (!progress) return true;
    }
  }

  // Both ends passed on. Once Node closed its end, what the edge still sends is read and
  // dropped until its FIN: closing a socket with unread bytes would reset it, and a reset can
  // discard our last bytes (a GOAWAY) before the edge read them. The JS side bounds the wait.
  bool Done() const { return up_shut && down_shut; }
};

// Where the relays run. On the 2-core box a message that wakes the relay thread cost more than
// the relay's copies (issue 16: ~0.6 wake-ups and ~6 µs of the connector's CPU per small
// request), so by default (kAuto) the turns run on the JS thread's own libuv loop — still a
// drain whether or not the session reads the pair, which is all the deadlock needs — and move to
// the thread while bulk flows, where the second core pays (h2bulk). kThread/kInline: A/B runs.
enum class Placement { kAuto, kThread, kInline };

class ReadAheadLoop : public RelayLoop<ReadAheadLoop, ReadAhead> {
 public:
  ReadAheadLoop() : RelayLoop("oxy-readahead") {}

  // The first relay of the process decides (from its env's JS thread).
  void Place(napi_env env, Placement placement) {
    if (placed_.exchange(true)) return;
    placement_ = placement;
    if (placement != Placement::kThread) RunInline(env);
  }

  // Bytes moved (both ways, all relays) in a window that send the turns to the thread, and under
  // which a window brings them back. Small requests at ~20k/s move ~1 MiB per window.
  static constexpr uint64_t kWindowMs = 100;
  static constexpr size_t kToThread = 8 * 1024 * 1024;
  static constexpr size_t kToJsLoop = 2 * 1024 * 1024;

  void AfterTurn(bool on_js_loop) {
    if (placement_ != Placement::kAuto) return;
    uint64_t now = NowMs();
    bool window_over = now - window_start_ >= kWindowMs;
    if (on_js_loop && !threaded_ && window_bytes_ >= kToThread) ToThread();
    else if (!on_js_loop && threaded_ && window_over && window_bytes_ < kToJsLoop) ToJsLoop();
    if (window_over) {
      window_start_ = now;
      window_bytes_ = 0;
    }
  }

  // A quiet spell on the thread ends its window too (and may hand the turns back).
  int ThreadTimeoutMs() const { return placement_ == Placement::kAuto ? static_cast<int>(kWindowMs) : -1; }

  static uint64_t NowMs() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1000000;
  }

  void Started(Relays::iterator it) {
    ReadAhead& relay = *it->second;
    bool ok = true;
    for (int which = 0; which < 2; which++) {
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
      ev.data.u64 = (relay.id << 1) | static_cast<uint64_t>(which);
      if (epoll_ctl(epoll_, EPOLL_CTL_ADD, which ? relay.local : relay.tcp, &ev) != 0) ok = relay.Failed("epoll_ctl", errno);
    }
    if (!ok) Finish(it, false);
    else Step(it);  // bytes may already wait: edge-triggered epoll reports only new ones
  }

  // The key's low bit: 0 the TCP socket, 1 Node's end of the pair.
  void Event(uint64_t key, uint32_t ev) {
    auto it = relays_.find(key >> 1);
    if (it == relays_.end()) return;  // finished earlier in this batch
    ReadAhead& r = *it->second;
    // The pair hung up: Node closed its end (read what it wrote, deliver nothing more).
    if ((key & 1) && (ev & EPOLLHUP)) r.local_gone = true;
    // Only the directions this event can move: readable TCP or writable pair feed Node,
    // readable pair or writable TCP feed the edge.
    bool readable = ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR);
    bool writable = ev & (EPOLLOUT | EPOLLHUP | EPOLLERR);
    bool down = (key & 1) ? writable : readable;
    bool up = (key & 1) ? readable : writable;
    Step(it, down, up);
  }

  void Step(Relays::iterator it, bool down = true, bool up = true) {
    ReadAhead& r = *it->second;
    bool ok = (!up || r.PumpUp()) && (!down || r.PumpDown());
    window_bytes_ += r.moved;
    r.moved = 0;
    if (!ok || r.Done()) Finish(it, false);
  }

  void Unwatch(ReadAhead& r) {
    // Node keeps the TCP socket open through its own fd: remove ours from the epoll before closing it.
    epoll_ctl(epoll_, EPOLL_CTL_DEL, r.tcp, nullptr);
    epoll_ctl(epoll_, EPOLL_CTL_DEL, r.local, nullptr);
  }

  void Finish(Relays::iterator it, bool cancelled) {
    std::unique_ptr<ReadAhead> r = std::move(it->second);
    relays_.erase(it);
    Unwatch(*r);
    auto* out = new Outcome{r->err, r->syscall, cancelled, -1};
    if (r->err != 0) std::swap(out->local, r->local);  // Node must see the error before an EOF
    Napi::ThreadSafeFunction tsfn = r->tsfn;
    r.reset();
    napi_status status = tsfn.BlockingCall(out, Report);
    if (status != napi_ok) {
      CloseFd(out->local);
      delete out;
    }
    if (status != napi_closing) tsfn.Release();  // napi_closing released it already
  }

  // A report that lands while a worker's env tears down (its loop drained once more) is dropped
  // (CallJs); env is null once the env is gone.
  static void Report(Napi::Env env, Napi::Function callback, Outcome* out) {
    std::unique_ptr<Outcome> o(out);
    if (env != nullptr && CanCallJs(env)) {
      GuardCallback(env, [&] {
        Napi::HandleScope scope(env);
        napi_value args[] = {o->err != 0 ? Napi::Value(ErrnoError(env, o->syscall, o->err)) : env.Null(), Napi::Boolean::New(env, o->cancelled)};
        CallJs(env, callback, nullptr, 2, args, nullptr);
      });
    }
    CloseFd(o->local);
  }

 private:
  std::atomic<bool> placed_{false};
  std::atomic<Placement> placement_{Placement::kThread};
  uint64_t window_start_ = 0;
  size_t window_bytes_ = 0;
};

// A knob for A/B runs (bench/h1-bulk.js): the environment's integer, else `fallback`.
int EnvInt(const char* name, int fallback) {
  const char* v = getenv(name);
  return v && *v ? atoi(v) : fallback;
}

// readAhead(tcpFd, maxQueued, callback(err, cancelled), placement) -> [id, fd]: `fd` is Node's
// end of the socketpair (for a net.Socket that then owns it). The TCP socket must not be read
// by Node. placement: 'auto' (default), 'thread' or 'inline' (see Placement).
Napi::Value StartReadAhead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int tcp_fd = info[0].As<Napi::Number>().Int32Value();
  double max_queued = info[1].As<Napi::Number>().DoubleValue();
  Napi::Function callback = info[2].As<Napi::Function>();
  std::string where = info.Length() > 3 && info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "auto";
  ReadAheadLoop& loop = ReadAheadLoop::Get();
  if (loop.failed_call()[0] != '\0') ThrowErrno(env, loop.failed_call(), loop.failed_errno(), "read-ahead thread");
  loop.Place(env, where == "thread" ? Placement::kThread : where == "inline" ? Placement::kInline : Placement::kAuto);

  auto relay = std::make_unique<ReadAhead>();
  relay->max_queued = max_queued > static_cast<double>(kBlock) ? static_cast<size_t>(max_queued) : kBlock;
  relay->tcp = fcntl(tcp_fd, F_DUPFD_CLOEXEC, 0);
  if (relay->tcp < 0) ThrowErrno(env, "dup", errno, "fd " + std::to_string(tcp_fd));
  int flags = fcntl(relay->tcp, F_GETFL);
  if (flags >= 0 && !(flags & O_NONBLOCK)) fcntl(relay->tcp, F_SETFL, flags | O_NONBLOCK);
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) != 0) ThrowErrno(env, "socketpair", errno);
  // Larger buffers on both ends of the pair. Node's TLS writes a burst of records into its end
  // at once: with the default 208 KiB most writes were partial, and Node copies the rest into a
  // buffer of its own, waits for POLLOUT and writes again; our end's sends into Node's take
  // more per call too (issue 16, 1 MiB: system calls per MB 58-270 -> 38-57 downloading, 79 ->
  // 54 uploading; the connector's CPU per MB -30 % / -18 %). OXY_H2_PAIR_SNDBUF=0 keeps the
  // kernel's default (A/B runs).
  int sndbuf = EnvInt("OXY_H2_PAIR_SNDBUF", kPairSndBuf);
  for (int end : pair)
    if (sndbuf > 0) setsockopt(end, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
  relay->local = pair[0];
  uint64_t id = loop.NextId();
  relay->id = id;
  relay->env = env;
  relay->tsfn = Napi::ThreadSafeFunction::New(env, callback, "oxyReadAhead", 0, 1);
  loop.Start(std::move(relay));
  Napi::Array out = Napi::Array::New(env, 2);
  out.Set(0u, Napi::Number::New(env, static_cast<double>(id)));
  out.Set(1u, Napi::Number::New(env, pair[1]));
  return out;
}

// cancelReadAhead(id): the relay stops, closes its fds and reports `cancelled` (unless it had
// already finished: then its report is on the way).
Napi::Value CancelReadAhead(const Napi::CallbackInfo& info) {
  uint64_t id = static_cast<uint64_t>(info[0].As<Napi::Number>().Int64Value());
  ReadAheadLoop::Get().Cancel(id);
  return info.Env().Undefined();
}

}  // namespace

void InitReadAhead(Napi::Env env, Napi::Object exports) {
  exports.Set("readAhead", Napi::Function::New(env, StartReadAhead, "readAhead"));
  exports.Set("cancelReadAhead", Napi::Function::New(env, CancelReadAhead, "cancelReadAhead"));
}

}  // namespace oxy
