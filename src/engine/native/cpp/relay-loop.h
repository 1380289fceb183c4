// The thread a kind of relay runs on (splice.cc: the CONNECT proxy's socket-to-socket relay;
// readahead.cc: the connector's HTTP/2 read-ahead). One thread and one epoll set per kind: JS
// threads only post start and cancel commands (a queue and an eventfd wake-up); everything
// else, every relay's state included, belongs to the loop thread.
//
// Derived (CRTP) provides, all called on the loop thread:
//   void Started(Relays::iterator)          a relay was added: register its fds, first pump
//   void Event(uint64_t key, uint32_t ev)   an epoll event whose data.u64 is not 0
//   void Finish(Relays::iterator, bool cancelled)   remove it and report to JS
#pragma once

#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>

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

  // The relay (its `id` from NextId()) starts on the loop thread.
  void Start(std::unique_ptr<Relay> relay) { Post(Command{std::move(relay), 0}); }
  // The relay stops and reports `cancelled`, unless it had finished: then its report is on the way.
  void Cancel(uint64_t id) { Post(Command{nullptr, id}); }

 protected:
  explicit RelayLoop(const char* thread_name) : thread_name_(thread_name) {}

  int epoll_ = -1;
  Relays relays_;  // loop thread only

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
    uint64_t one = 1;
    ssize_t ignored = write(wake_, &one, sizeof one);
    (void)ignored;
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
    epoll_event events[64];
    for (;;) {
      int n = epoll_wait(epoll_, events, 64, -1);
      if (n < 0) continue;  // EINTR
      for (int i = 0; i < n; i++) {
        if (events[i].data.u64 == 0) Commands();
        else static_cast<Derived*>(this)->Event(events[i].data.u64, events[i].events);
      }
    }
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
  int wake_ = -1;
  const char* failed_call_ = "";
  int failed_errno_ = 0;
  std::atomic<uint64_t> next_id_{1};
  std::mutex mutex_;
  std::deque<Command> queue_;
};

}  // namespace oxy
