// The thread a kind of relay runs on (splice.cc: the CONNECT proxy's socket-to-socket relay;
// readahead.cc: the connector's HTTP/2 read-ahead; relay.cc: the device's TUN-to-SEQPACKET relay). One thread and one epoll set per kind: JS
// threads only post start and cancel commands (a queue and an eventfd wake-up); everything
// else, every relay's state included, belongs to the loop thread.
//
// Derived (CRTP) provides, all called where the loop's turns run (below):
//   void Started(Relays::iterator)          a relay was added: register its fds, first pump
//   void Event(uint64_t key, uint32_t ev)   an epoll event whose data.u64 is not 0
//   void Finish(Relays::iterator, bool cancelled)   remove it and report to JS
//   void Unwatch(Relay&)                    remove its fds from epoll_ (Drop, and an env's end)
// and may provide AfterTurn(bool on_js_loop), ThreadTimeoutMs() (see RunInline) and
// Wait(events, max, timeout) (how the thread waits: epoll_wait by default; relay.cc's io_uring).
// A Relay has `id`, `env` (the JS thread's that started it) and `tsfn` (its one report).
//
// Relays never outlive their env: a worker's env that ends (Worker.terminate(), or its loop ran
// out) frees its thread-safe functions and the memory JS lent (splice's counters), whatever
// threads still hold them. A relay finishing after that called into freed memory (a silent
// abort, or worse). An env cleanup hook drops that env's relays first, unreported.
//
// A loop may also run its turns on a JS thread's libuv loop (RunInline: a uv_poll on the epoll
// fd) and move between there and its thread (ToThread/ToJsLoop): turns run one at a time under
// turn_, whichever thread runs them.
#pragma once

#include <napi.h>
#include <pthread.h>
#include <uv.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace oxy {

template <typename Derived, typename Relay>
class RelayLoop {
 public:
  using Relays = std::unordered_map<uint64_t, std::unique_ptr<Relay>>;

  // The process's loop, started on first use; never destroyed (the thread outlives statics at exit).
  static Derived& Get() {
    static Derived* loop = [] {
      auto* l = new Derived();
      l->Launch();
      return l;
    }();
    return *loop;
  }

  // Empty string when the loop runs; else the call that could not set it up.
  const char* failed_call() const { return failed_call_; }
  int failed_errno() const { return failed_errno_; }
  uint64_t NextId() { return next_id_++; }

  // From the relay's env's JS thread: it starts on the loop thread.
  void Start(std::unique_ptr<Relay> relay) {
    WatchEnv(relay->env);
    Post(Command{std::move(relay), 0});
  }
  // The relay stops and reports `cancelled`, unless it had finished: then its report is on the way.
  void Cancel(uint64_t id) { Post(Command{nullptr, id}); }

  // From the relay's env's JS thread: the relay stops now, unreported (one not started yet never
  // starts). When this returns no turn uses it any more: its fds may close.
  void Drop(uint64_t id) {
    std::unique_ptr<Relay> unstarted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      for (auto it = queue_.begin(); it != queue_.end(); ++it) {
        if (it->start && it->start->id == id) {
          unstarted = std::move(it->start);
          queue_.erase(it);
          break;
        }
      }
    }
    if (unstarted) {
      unstarted->tsfn.Release();
      return;
    }
    std::lock_guard<std::mutex> lock(turn_);
    auto it = relays_.find(id);
    if (it == relays_.end()) return;
    static_cast<Derived*>(this)->Unwatch(*it->second);
    it->second->tsfn.Release();
    relays_.erase(it);
  }

  // Default hooks: nothing after a turn; the thread waits for events without a timeout, in epoll_wait.
  void AfterTurn(bool) {}
  int ThreadTimeoutMs() const { return -1; }
  int Wait(epoll_event* events, int max, int timeout) { return epoll_wait(epoll_, events, max, timeout); }

  // From `env`'s JS thread: its libuv loop runs the turns from now on (until ToThread). When
  // the env ends (a worker thread's), the turns go back to the thread for good.
  bool RunInline(napi_env env) {
    std::lock_guard<std::mutex> lock(turn_);
    uv_loop_t* uv = nullptr;
    if (inline_ok_ || napi_get_uv_event_loop(env, &uv) != napi_ok || uv == nullptr) return false;
    poll_.data = this;
    back_.data = this;
    if (uv_poll_init(uv, &poll_, epoll_) != 0) return false;
    if (uv_async_init(uv, &back_, OnBack) != 0) {
      uv_close(reinterpret_cast<uv_handle_t*>(&poll_), nullptr);
      return false;
    }
    // The relays keep the loop alive (their thread-safe functions), not these.
    uv_unref(reinterpret_cast<uv_handle_t*>(&poll_));
    uv_unref(reinterpret_cast<uv_handle_t*>(&back_));
    napi_add_async_cleanup_hook(env, OnEnvGone, this, &cleanup_);
    inline_ok_ = true;
    threaded_ = false;
    uv_poll_start(&poll_, UV_READABLE, OnPoll);
    return true;
  }

 protected:
  explicit RelayLoop(const char* thread_name) : thread_name_(thread_name) {}

  // With turn_ held, on the JS loop: the thread runs the turns from the next one.
  void ToThread() {
    threaded_ = true;
    uv_poll_stop(&poll_);
    parked_.notify_one();
  }

  // With turn_ held, on the thread: the JS loop runs the turns again.
  void ToJsLoop() {
    if (!inline_ok_) return;
    threaded_ = false;
    uv_async_send(&back_);
  }

  // Wakes the thread (a turn with no command).
  void Wake() {
    uint64_t one = 1;
    ssize_t ignored = write(wake_, &one, sizeof one);
    (void)ignored;
  }

  int epoll_ = -1;
  Relays relays_;  // under turn_
  std::mutex turn_;  // held while a turn runs
  bool threaded_ = true;    // the thread runs the turns; else the JS loop (RunInline)
  bool inline_ok_ = false;  // a JS loop is attached and alive

 private:
  struct Command {
    std::unique_ptr<Relay> start;  // set: start this relay; else cancel `cancel`
    uint64_t cancel = 0;
  };

  void Post(Command cmd) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(cmd));
    }
    Wake();
  }

  void Launch() {
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_ < 0) {
      failed_call_ = "epoll_create1";
      failed_errno_ = errno;
      return;
    }
    wake_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_ < 0) {
      failed_call_ = "eventfd";
      failed_errno_ = errno;
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = 0;  // key 0: the wake-up eventfd
    epoll_ctl(epoll_, EPOLL_CTL_ADD, wake_, &ev);
    std::thread([this] { Run(); }).detach();
  }

  void Run() {
    pthread_setname_np(pthread_self(), thread_name_);  // what `top -H` and /proc/PID/task/*/comm show
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(turn_);
        parked_.wait(lock, [this] { return threaded_; });
      }
      Turn(static_cast<Derived*>(this)->ThreadTimeoutMs(), false);
    }
  }

  // One batch of events. Across a hand-over both threads may hold a batch: the lock runs them
  // one after the other, and an edge-triggered event is reported to one of them only.
  void Turn(int timeout, bool on_js_loop) {
    epoll_event events[64];
    int n = static_cast<Derived*>(this)->Wait(events, 64, timeout);
    std::lock_guard<std::mutex> lock(turn_);
    auto* self = static_cast<Derived*>(this);
    for (int i = 0; i < n; i++) {  // n < 0: EINTR
      if (events[i].data.u64 == 0) Commands();
      else self->Event(events[i].data.u64, events[i].events);
    }
    self->AfterTurn(on_js_loop);
  }

  static void OnPoll(uv_poll_t* handle, int, int) { static_cast<RelayLoop*>(handle->data)->Turn(0, true); }

  static void OnBack(uv_async_t* handle) {
    auto* self = static_cast<RelayLoop*>(handle->data);
    std::lock_guard<std::mutex> lock(self->turn_);
    if (!self->threaded_ && self->inline_ok_) uv_poll_start(&self->poll_, UV_READABLE, OnPoll);
  }

  struct EnvKey {
    RelayLoop* loop;
    napi_env env;
  };

  // The first relay of an env hooks its cleanup (the hook stays until the env ends).
  void WatchEnv(napi_env env) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!envs_.emplace(env).second) return;
    }
    napi_add_env_cleanup_hook(env, OnEnvCleanup, new EnvKey{this, env});
  }

  // On the env's thread, while it ends (its thread-safe functions are not freed yet).
  static void OnEnvCleanup(void* arg) {
    std::unique_ptr<EnvKey> key(static_cast<EnvKey*>(arg));
    key->loop->Forget(key->env);
  }

  void Forget(napi_env env) {
    std::deque<Command> unstarted;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      envs_.erase(env);
      for (auto it = queue_.begin(); it != queue_.end();) {
        if (it->start && it->start->env == env) {
          unstarted.push_back(std::move(*it));
          it = queue_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (Command& cmd : unstarted) cmd.start->tsfn.Release();
    std::lock_guard<std::mutex> lock(turn_);
    auto* self = static_cast<Derived*>(this);
    for (auto it = relays_.begin(); it != relays_.end();) {
      if (it->second->env != env) {
        ++it;
        continue;
      }
      self->Unwatch(*it->second);
      it->second->tsfn.Release();
      it = relays_.erase(it);
    }
  }

  static void OnEnvGone(napi_async_cleanup_hook_handle handle, void* arg) {
    auto* self = static_cast<RelayLoop*>(arg);
    {
      std::lock_guard<std::mutex> lock(self->turn_);
      self->inline_ok_ = false;
      self->threaded_ = true;
      self->parked_.notify_one();
    }
    self->cleanup_ = handle;
    uv_close(reinterpret_cast<uv_handle_t*>(&self->poll_), OnClosed);
    uv_close(reinterpret_cast<uv_handle_t*>(&self->back_), OnClosed);
  }

  static void OnClosed(uv_handle_t* handle) {
    auto* self = static_cast<RelayLoop*>(handle->data);
    if (++self->closed_ == 2) napi_remove_async_cleanup_hook(self->cleanup_);
  }

  void Commands() {
    uint64_t count;
    ssize_t ignored = read(wake_, &count, sizeof count);
    (void)ignored;
    std::deque<Command> batch;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      batch.swap(queue_);
    }
    auto* self = static_cast<Derived*>(this);
    for (Command& cmd : batch) {
      if (cmd.start) {
        uint64_t id = cmd.start->id;
        self->Started(relays_.emplace(id, std::move(cmd.start)).first);
      } else {
        auto it = relays_.find(cmd.cancel);
        if (it != relays_.end()) self->Finish(it, true);
      }
    }
  }

  const char* thread_name_;
  std::condition_variable parked_;  // the thread waits here while the JS loop runs the turns
  uv_poll_t poll_{};
  uv_async_t back_{};
  napi_async_cleanup_hook_handle cleanup_ = nullptr;
  int closed_ = 0;
  int wake_ = -1;
  const char* failed_call_ = "";
  int failed_errno_ = 0;
  std::atomic<uint64_t> next_id_{1};
  std::mutex mutex_;
  std::deque<Command> queue_;              // under mutex_
  std::unordered_set<napi_env> envs_;      // under mutex_: envs whose cleanup is hooked
};

}  // namespace oxy
