#include "common.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace oxy {

namespace {

struct InstanceData {
  Napi::FunctionReference error_factory;
  bool stopped = false;  // the env was seen no longer running JS (see CanCallJs)
};

InstanceData* GetInstanceData(Napi::Env env) {
  auto* data = env.GetInstanceData<InstanceData>();
  if (data == nullptr) {
    data = new InstanceData();
    env.SetInstanceData(data);
  }
  return data;
}

}  // namespace

Napi::Object ErrnoError(Napi::Env env, const char* syscall, int err, const std::string& detail) {
  const char* code = uv_err_name(-err);  // libuv names errno values like Node does (EADDRINUSE)
  std::string message = std::string(syscall) + " failed: " + code + " (" + strerror(err) + ")";
  if (!detail.empty()) message += ": " + detail;

  // Any call below may run JS: an env that stopped gets a bare object (nobody will read it).
  if (!CanCallJs(env)) return Napi::Object::New(env);
  InstanceData* data = GetInstanceData(env);
  if (!data->error_factory.IsEmpty()) {
    napi_value args[] = {Napi::String::New(env, syscall), Napi::Number::New(env, err), Napi::String::New(env, code),
                         Napi::String::New(env, message)};
    napi_value made;
    if (CallJs(env, data->error_factory.Value(), nullptr, 4, args, &made)) {
      napi_valuetype type;
      if (napi_typeof(env, made, &type) == napi_ok && type == napi_object) return Napi::Object(env, made);
    } else if (!CanCallJs(env)) {
      return Napi::Object::New(env);
    }
  }
  Napi::Object error = Napi::Error::New(env, message).Value();
  error.Set("code", code);
  error.Set("errno", err);
  error.Set("syscall", syscall);
  return error;
}

void ThrowErrno(Napi::Env env, const char* syscall, int err, const std::string& detail) {
  throw Napi::Error(env, ErrnoError(env, syscall, err, detail));
}

void SetErrorFactory(const Napi::CallbackInfo& info) {
  GetInstanceData(info.Env())->error_factory = Napi::Persistent(info[0].As<Napi::Function>());
}

bool CanCallJs(napi_env env) {
  InstanceData* data = GetInstanceData(env);
  if (data->stopped) return false;
  // napi_strict_equals runs no JS but, like every call that may, fails (napi_pending_exception
  // with none pending) once the env stopped running JS or V8 terminates it.
  napi_value undefined;
  bool same = false;
  bool pending = false;
  if (napi_get_undefined(env, &undefined) == napi_ok && napi_strict_equals(env, undefined, undefined, &same) == napi_ok) return true;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return true;  // a JS error, not the env
  data->stopped = true;
  return false;
}

bool CallJs(napi_env env, napi_value fn, napi_async_context context, size_t argc, const napi_value* argv,
            napi_value* result) {
  bool pending = false;
  if (!CanCallJs(env) || (napi_is_exception_pending(env, &pending) == napi_ok && pending)) return false;  // the pending one wins
  napi_value recv;
  napi_value ignored;
  if (result == nullptr) result = &ignored;
  napi_status status = context != nullptr ? (napi_get_global(env, &recv), napi_make_callback(env, context, recv, fn, argc, argv, result))
                                          : (napi_get_undefined(env, &recv), napi_call_function(env, recv, fn, argc, argv, result));
  if (status == napi_ok) return true;
  napi_value err = nullptr;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) napi_get_and_clear_last_exception(env, &err);
  // An env that stopped has no exception at all, and V8's termination reads as null: dropped
  // (CanCallJs notes a stopped env). Only a JS error goes to 'uncaughtException' — Node's handler
  // would touch a terminating isolate and abort; a literal `throw null` is lost with it.
  napi_valuetype type = napi_null;
  if (err != nullptr) napi_typeof(env, err, &type);
  if (CanCallJs(env) && type != napi_null) napi_fatal_exception(env, err);
  return false;
}

void RaiseUncaught(napi_env env, const Napi::Error* js, const char* what) {
  // Reading the error may call into JS too: in an env that stops meanwhile it throws again.
  try {
    if (CanCallJs(env)) napi_fatal_exception(env, js != nullptr ? js->Value() : Napi::Error::New(env, what).Value());
  } catch (const std::exception&) {
    // The env stopped under us: nobody to tell.
  }
}

void InvokeCallback(Napi::Env env, Napi::FunctionReference& fn, Napi::AsyncContext& context,
                    std::initializer_list<napi_value> args) {
  if (fn.IsEmpty()) return;
  CallJs(env, fn.Value(), context, args.size(), args.begin(), nullptr);
}

bool ParseSockaddr(const std::string& text, uint16_t port, int socket_family, sockaddr_storage* out,
                   socklen_t* out_len) {
  memset(out, 0, sizeof(*out));
  in_addr v4;
  in6_addr v6;
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    if (socket_family == AF_INET) {
      auto* sin = reinterpret_cast<sockaddr_in*>(out);
      sin->sin_family = AF_INET;
      sin->sin_port = htons(port);
      sin->sin_addr = v4;
      *out_len = sizeof(sockaddr_in);
      return true;
    }
    // Dual-stack AF_INET6 socket: IPv4 peers are IPv4-mapped IPv6 addresses.
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(out);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    sin6->sin6_addr.s6_addr[10] = 0xff;
    sin6->sin6_addr.s6_addr[11] = 0xff;
    memcpy(&sin6->sin6_addr.s6_addr[12], &v4, 4);
    *out_len = sizeof(sockaddr_in6);
    return true;
  }
  std::string host = text;
  uint32_t scope = 0;
  size_t percent = text.find('%');
  if (percent != std::string::npos) {
    host = text.substr(0, percent);
    std::string zone = text.substr(percent + 1);
    scope = if_nametoindex(zone.c_str());
    if (scope == 0) {
      char* end = nullptr;
      unsigned long numeric = strtoul(zone.c_str(), &end, 10);
      if (zone.empty() || *end != '\0') return false;
      scope = static_cast<uint32_t>(numeric);
    }
  }
  if (socket_family == AF_INET6 && inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(out);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    sin6->sin6_addr = v6;
    sin6->sin6_scope_id = scope;
    *out_len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

int StoreAddress(const sockaddr* addr, uint8_t out[16], uint16_t* port, uint32_t* scope_id) {
  memset(out, 0, 16);
  *scope_id = 0;
  if (addr->sa_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(addr);
    memcpy(out, &sin->sin_addr, 4);
    *port = ntohs(sin->sin_port);
    return 4;
  }
  const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(addr);
  *port = ntohs(sin6->sin6_port);
  if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
    memcpy(out, &sin6->sin6_addr.s6_addr[12], 4);
    return 4;
  }
  memcpy(out, &sin6->sin6_addr, 16);
  *scope_id = sin6->sin6_scope_id;
  return 6;
}

Napi::Object SockaddrToObject(Napi::Env env, const sockaddr_storage& addr) {
  uint8_t bytes[16];
  uint16_t port = 0;
  uint32_t scope = 0;
  int family = StoreAddress(reinterpret_cast<const sockaddr*>(&addr), bytes, &port, &scope);
  char text[INET6_ADDRSTRLEN] = {0};
  inet_ntop(family == 4 ? AF_INET : AF_INET6, bytes, text, sizeof(text));
  Napi::Object result = Napi::Object::New(env);
  result.Set("family", family);
  result.Set("address", text);
  result.Set("port", port);
  return result;
}

bool GetBytes(Napi::Value value, ByteView* out) {
  if (value.IsTypedArray()) {
    Napi::TypedArray array = value.As<Napi::TypedArray>();
    out->data = static_cast<const uint8_t*>(array.ArrayBuffer().Data()) + array.ByteOffset();
    out->length = array.ByteLength();
    return true;
  }
  if (value.IsDataView()) {
    Napi::DataView view = value.As<Napi::DataView>();
    out->data = static_cast<const uint8_t*>(view.ArrayBuffer().Data()) + view.ByteOffset();
    out->length = view.ByteLength();
    return true;
  }
  if (value.IsArrayBuffer()) {
    Napi::ArrayBuffer buffer = value.As<Napi::ArrayBuffer>();
    out->data = static_cast<const uint8_t*>(buffer.Data());
    out->length = buffer.ByteLength();
    return true;
  }
  return false;
}

FdPoller::~FdPoller() { Close(); }

int FdPoller::Watch(Napi::Env env, int fd, int events) {
  env_ = env;
  if (handle_ == nullptr) {
    if (events == 0) return 0;
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    handle_ = new uv_poll_t();
    int rc = uv_poll_init(loop, handle_, fd);
    if (rc != 0) {
      delete handle_;
      handle_ = nullptr;
      return rc;
    }
    handle_->data = this;
    if (!ref_) uv_unref(reinterpret_cast<uv_handle_t*>(handle_));
  }
  if (events == events_) return 0;
  int rc = events == 0 ? uv_poll_stop(handle_) : uv_poll_start(handle_, events, Trampoline);
  if (rc == 0) events_ = events;
  return rc;
}

void FdPoller::Close() {
  if (handle_ == nullptr) return;
  uv_poll_stop(handle_);
  handle_->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(handle_),
           [](uv_handle_t* handle) { delete reinterpret_cast<uv_poll_t*>(handle); });
  handle_ = nullptr;
  events_ = 0;
}

void FdPoller::SetRef(bool ref) {
  ref_ = ref;
  if (handle_ == nullptr) return;
  if (ref) {
    uv_ref(reinterpret_cast<uv_handle_t*>(handle_));
  } else {
    uv_unref(reinterpret_cast<uv_handle_t*>(handle_));
  }
}

void FdPoller::Trampoline(uv_poll_t* handle, int status, int events) {
  auto* self = static_cast<FdPoller*>(handle->data);
  if (self == nullptr) return;
  if (status < 0) self->events_ = 0;  // libuv stops a poll handle that reports an error (POLLERR)
  Napi::Env env(self->env_);
  Napi::HandleScope scope(env);
  // A worker's env that stopped running JS still turns its loop (and closes handles) once more:
  // nothing to tell JS any more. The owner's finalizer closes the handle.
  if (!CanCallJs(env)) {
    uv_poll_stop(handle);
    self->events_ = 0;
    return;
  }
  GuardCallback(env, [self, status, events] { self->OnPoll(status, events); });
  NoteLoopWork(env);
}

namespace {

uint64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// OXY_LOOP_SPIN: the spin's length in µs (unset: 20; 0: off; at most 1,000).
uint64_t SpinBudgetUs() {
  static const uint64_t us = [] {
    const char* v = std::getenv("OXY_LOOP_SPIN");
    if (v == nullptr || *v == '\0') return uint64_t(20);
    char* end = nullptr;
    unsigned long long n = std::strtoull(v, &end, 10);
    return uint64_t(end == v ? 20 : std::min<unsigned long long>(n, 1000));
  }();
  return us;
}

struct LoopSpin {
  uv_idle_t idle;
  uint64_t last_work = 0;
  bool active = false;
  bool spun = false;  // an idle callback ran since the last work
  LoopSpinStats stats;
  napi_async_cleanup_hook_handle cleanup = nullptr;
};

thread_local LoopSpin* tl_spin = nullptr;
thread_local bool tl_spin_gone = false;  // the thread's env went: no new spin for its last turns

void OnSpinIdle(uv_idle_t* handle) {
  auto* s = static_cast<LoopSpin*>(handle->data);
  if (MonotonicNs() - s->last_work >= s->stats.spin_us * 1000) {
    uv_idle_stop(handle);
    s->active = false;
    s->spun = false;
    s->stats.slept++;
    return;
  }
  s->stats.polls++;
  s->spun = true;
  sched_yield();
}

// The env is going (a worker's, or the process's at exit): the handle closes before its loop does
// (an async cleanup hook: Node turns the loop until it is removed).
void CloseLoopSpin(napi_async_cleanup_hook_handle handle, void* arg) {
  auto* s = static_cast<LoopSpin*>(arg);
  if (tl_spin == s) tl_spin = nullptr;
  tl_spin_gone = true;
  s->cleanup = handle;
  uv_close(reinterpret_cast<uv_handle_t*>(&s->idle), [](uv_handle_t* h) {
    auto* spin = static_cast<LoopSpin*>(h->data);
    napi_remove_async_cleanup_hook(spin->cleanup);
    delete spin;
  });
}

}  // namespace

void NoteLoopWork(napi_env env) {
  LoopSpin* s = tl_spin;
  if (s == nullptr) {
    if (SpinBudgetUs() == 0 || tl_spin_gone) return;
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) return;
    s = new LoopSpin();
    s->stats.spin_us = SpinBudgetUs();
    uv_idle_init(loop, &s->idle);
    uv_unref(reinterpret_cast<uv_handle_t*>(&s->idle));
    s->idle.data = s;
    if (napi_add_async_cleanup_hook(env, CloseLoopSpin, s, nullptr) != napi_ok) {
      uv_close(reinterpret_cast<uv_handle_t*>(&s->idle), [](uv_handle_t* h) { delete static_cast<LoopSpin*>(h->data); });
      tl_spin_gone = true;
      return;
    }
    tl_spin = s;
  }
  s->last_work = MonotonicNs();
  if (s->active) {
    if (s->spun) s->stats.caught++;
    s->spun = false;
    return;
  }
  uv_idle_start(&s->idle, OnSpinIdle);
  s->active = true;
}

LoopSpinStats GetLoopSpinStats() {
  if (tl_spin != nullptr) return tl_spin->stats;
  LoopSpinStats off;
  off.spin_us = SpinBudgetUs();
  return off;
}

namespace {

// libuv has no call to turn the idle-time metric off or on. Its flag is bit UV_METRICS_IDLE_TIME of
// the first field (`unsigned int flags`) of the loop's uv__loop_internal_fields_t since 1.39, the
// metric's first release (1.46 in Node 20); null for another major version (left alone).
unsigned int* LoopFlags(napi_env env) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr || loop->internal_fields == nullptr) return nullptr;
  const unsigned version = uv_version();
  if ((version >> 16) != 1 || ((version >> 8) & 0xff) < 39) return nullptr;
  return static_cast<unsigned int*>(loop->internal_fields);
}

}  // namespace

bool LoopOneWait(napi_env env) {
  static const bool on = EnvSwitchOn("OXY_LOOP_ONE_WAIT");
  unsigned int* flags = on ? LoopFlags(env) : nullptr;
  if (flags == nullptr || !(*flags & UV_METRICS_IDLE_TIME)) return false;
  *flags &= ~unsigned(UV_METRICS_IDLE_TIME);
  return true;
}

Napi::Uint32Array CopyToUint32Array(Napi::Env env, const std::vector<uint32_t>& values) {
  Napi::ArrayBuffer buffer = Napi::ArrayBuffer::New(env, values.size() * sizeof(uint32_t));
  if (!values.empty()) memcpy(buffer.Data(), values.data(), values.size() * sizeof(uint32_t));
  return Napi::Uint32Array::New(env, values.size(), buffer, 0);
}

bool LoopIdleTimeBack(napi_env env) {
  unsigned int* flags = LoopFlags(env);
  if (flags == nullptr) return false;
  // uv__io_poll reads the flag once per call: set from a callback, it takes effect at the next wait.
  *flags |= UV_METRICS_IDLE_TIME;
  return true;
}

void CloseFd(int& fd) {
  if (fd < 0) return;
  close(fd);
  fd = -1;
}

bool SetTcpCongestion(int fd, const Napi::Value& name) {
  const std::string want = name.As<Napi::String>().Utf8Value();
  return setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, want.data(), socklen_t(want.size())) == 0;
}

}  // namespace oxy
