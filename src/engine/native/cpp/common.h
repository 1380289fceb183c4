// Shared pieces of the oxy_native addon: errno errors, address conversion, and
// the uv_poll_t readiness watcher that every fd-backed class builds on.
#pragma once

#include <napi.h>
#include <uv.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace oxy {

// A switch for A/B runs: on unless the environment's `name` is exactly "0" (OXY_…=0), the rule of
// every TS switch (`process.env.OXY_… !== '0'`; it was any value starting with '0', so `OXY_X=00`
// turned a C++ switch off and a TS one on). unit/native/env-switch holds both to one table. Callers
// keep the answer in a function-local static: the environment is read once.
inline bool EnvSwitchOn(const char* name) {
  const char* v = std::getenv(name);
  return !(v && v[0] == '0' && v[1] == '\0');
}

// A bound for A/B runs: the environment's `name` as an unsigned integer, at most `max` (anything
// that is no number reads 0), or `fallback` when unset or empty. Callers keep the answer in a
// function-local static, as for EnvSwitchOn.
inline uint64_t EnvBound(const char* name, uint64_t fallback, uint64_t max) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::min<unsigned long long>(std::strtoull(v, nullptr, 10), max);
}

// Builds the JS error for a failed system call. The JS side registers a factory
// (setErrorFactory) so the result is a NativeError with code/errno/syscall; the
// fallback is a plain Error with the same properties.
Napi::Object ErrnoError(Napi::Env env, const char* syscall, int err, const std::string& detail = "");

// Throws ErrnoError as a C++ exception; node-addon-api rethrows it into JS.
[[noreturn]] void ThrowErrno(Napi::Env env, const char* syscall, int err, const std::string& detail = "");

void SetErrorFactory(const Napi::CallbackInfo& info);

// Calls into JS from libuv or a thread-safe function: a worker's env stops under such callbacks.
// Worker.terminate() ends whatever JS runs (V8's termination: the call fails with no JS error),
// then the env's loop turns once more and closes handles with JS off, where every call that may
// run JS fails. node-addon-api turns such a failure into a fatal error ("Error::Error
// napi_define_properties", or std::terminate: exit 134, 1 quick tunnel in 2 stopped with SIGINT
// over QUIC). So these calls use the raw API, and an env seen stopping is never called again.
//
// CanCallJs: whether `env` still runs JS (false for good once it did not).
bool CanCallJs(napi_env env);

// Calls `fn` (through MakeCallback when `context` is set: microtasks run after it, as for Node's
// own handles). A JS exception becomes 'uncaughtException'; in an env that stopped, the call is
// dropped. Returns whether it ran.
bool CallJs(napi_env env, napi_value fn, napi_async_context context, size_t argc, const napi_value* argv,
            napi_value* result);

// Runs `body` from a libuv or thread callback: no JS frame is below, so a C++ exception escaping
// would terminate the process. It becomes an 'uncaughtException' instead, unless the env stopped.
void RaiseUncaught(napi_env env, const Napi::Error* js, const char* what);
template <typename Body>
void GuardCallback(napi_env env, Body&& body) {
  try {
    body();
  } catch (const Napi::Error& e) {
    RaiseUncaught(env, &e, nullptr);
  } catch (const std::exception& e) {
    RaiseUncaught(env, nullptr, e.what());
  }
}

// CallJs from a libuv callback with node-addon-api's types.
void InvokeCallback(Napi::Env env, Napi::FunctionReference& fn, Napi::AsyncContext& context,
                    std::initializer_list<napi_value> args);

// Parses a textual IPv4/IPv6 address for a socket of `socket_family`. An IPv4
// address given to an AF_INET6 socket becomes ::ffff:a.b.c.d (dual-stack).
// Returns false when the text is not an address of a usable family.
bool ParseSockaddr(const std::string& text, uint16_t port, int socket_family, sockaddr_storage* out,
                   socklen_t* out_len);

// Writes a 16-byte address field: IPv4 (or IPv4-mapped IPv6) in the first 4 bytes
// and returns 4; plain IPv6 as 16 bytes and returns 6.
int StoreAddress(const sockaddr* addr, uint8_t out[16], uint16_t* port, uint32_t* scope_id);

// {family: 4|6, address: string, port: number} from getsockname/getpeername results.
Napi::Object SockaddrToObject(Napi::Env env, const sockaddr_storage& addr);

// Bytes of a Buffer/TypedArray/DataView/ArrayBuffer argument.
struct ByteView {
  const uint8_t* data;
  size_t length;
};
bool GetBytes(Napi::Value value, ByteView* out);
// A JS Uint32Array holding a copy of `values` (a batch's packet offsets, for one callback).
Napi::Uint32Array CopyToUint32Array(Napi::Env env, const std::vector<uint32_t>& values);

// Watches one fd for readiness with uv_poll_t on the Node event loop (no threads).
// The handle is created on first use and closed with Close(); the owner gets
// OnPoll() on the loop thread.
class FdPoller {
 public:
  FdPoller() = default;
  virtual ~FdPoller();
  FdPoller(const FdPoller&) = delete;
  FdPoller& operator=(const FdPoller&) = delete;

  // events is a UV_READABLE|UV_WRITABLE|UV_DISCONNECT mask; 0 stops polling.
  // Returns 0 or a libuv error code.
  int Watch(Napi::Env env, int fd, int events);
  void Close();
  void SetRef(bool ref);
  int events() const { return events_; }

 protected:
  virtual void OnPoll(int status, int events) = 0;

 private:
  static void Trampoline(uv_poll_t* handle, int status, int events);
  napi_env env_ = nullptr;
  uv_poll_t* handle_ = nullptr;
  int events_ = 0;
  bool ref_ = true;
};

// libuv's idle-time metric (UV_METRICS_IDLE_TIME: Node turns it on for
// performance.eventLoopUtilization()) makes each wait of the loop a poll without waiting first, then
// the waiting one when the first found nothing: ~0.35 system calls per keep-alive request in the edge
// and the connector (docs/decisions.md, session 18). Turns it off for `env`'s loop: one poll per
// wait; eventLoopUtilization() then reads the loop as never idle (nothing of ours reads it).
// OXY_LOOP_ONE_WAIT=0 leaves it as Node set it. Whether the loop now waits once (false where the
// metric was not on, or libuv is not one whose private flag we know).
bool LoopOneWait(napi_env env);
// Turns the metric back on for `env`'s loop (after LoopOneWait turned it off): code that is not
// ours — a hooks module — may read eventLoopUtilization() to shed load, and must not see a loop
// that is never idle. Whether it is on now.
bool LoopIdleTimeBack(napi_env env);

// A short spin before the loop sleeps (OXY_LOOP_SPIN: µs, default 20; 0 = off). On this kind of
// machine a sleep that another CPU ends costs ~20-30 µs of CPU (the waker's IPI, the sleeper's
// switch: docs/decisions.md, session 22), more than a keep-alive request's whole work in a turn,
// while a peer's answer often comes within ~20 µs. After a turn in which an FdPoller callback ran,
// the thread's loop polls without waiting (a uv_idle_t, unref'd: it never keeps the loop alive),
// yielding the CPU between polls (sched_yield: a runnable task on this CPU goes first), until
// `spin` µs passed with no FdPoller work; then it waits in epoll as before. A packet that comes
// meanwhile finds the thread awake: no wake-up, no IPI. NoteLoopWork is called by
// FdPoller::Trampoline; the stats are per thread (a worker's loop has its own).
void NoteLoopWork(napi_env env);
struct LoopSpinStats {
  uint64_t spin_us = 0;  // the budget (0: off)
  uint64_t polls = 0;    // idle callbacks: turns that polled without waiting
  uint64_t caught = 0;   // spins that work ended (a sleep not taken)
  uint64_t slept = 0;    // spins that ran out (the loop then waited)
};
LoopSpinStats GetLoopSpinStats();

// Closes fd once and sets it to -1. Never retried on EINTR: on Linux the fd is gone either way.
void CloseFd(int& fd);

// Sets the TCP socket fd's congestion control (TCP_CONGESTION) to `name`, a JS string: whether the
// kernel took it (it refuses a name not loaded, or not allowed to this process).
bool SetTcpCongestion(int fd, const Napi::Value& name);

}  // namespace oxy
