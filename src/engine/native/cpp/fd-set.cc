// See fd-set.h.
#include "fd-set.h"

#include "common.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <unordered_map>
#include <vector>

namespace oxy {

namespace {

struct FdSet {
  int epfd = -1;
  uv_poll_t* poll = nullptr;
  int holders = 0;
  int watches = 0;
  int wanting = 0;  // watches that want events: the loop stays alive for them, as for a uv_poll each
  bool delivering = false;
  std::vector<FdWatch*> dead;  // freed once the delivery that may still name them is over
};

// Per thread: a worker's edge has its own loop and set.
thread_local FdSet* the_set = nullptr;
thread_local double own_polls = 0;

// Accepted sockets by peer (FdWatch::peer), and the peers kicked in this batch.
using PeerKey = std::array<uint8_t, sizeof(FdWatch::peer)>;
struct PeerHash {
  size_t operator()(const PeerKey& k) const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (uint8_t b : k) h = (h ^ b) * 1099511628211ull;
    return size_t(h);
  }
};
thread_local std::unordered_map<PeerKey, FdWatch*, PeerHash>* by_peer = nullptr;
thread_local std::vector<PeerKey> kicked;
thread_local uint64_t kick_runs = 0;
thread_local double kick_reads = 0;

PeerKey KeyOf(const uint8_t* p) {
  PeerKey k;
  memcpy(k.data(), p, k.size());
  return k;
}

void PeerBytes(uint8_t out[20], int family, const uint8_t* addr, uint16_t port) {
  memset(out, 0, 20);
  out[0] = uint8_t(family);
  memcpy(out + 2, &port, 2);
  memcpy(out + 4, addr, family == 4 ? 4 : 16);
}

void ForgetPeer(FdWatch* w) {
  if (!w->has_peer || !by_peer) return;
  w->has_peer = false;
  auto it = by_peer->find(KeyOf(w->peer));
  if (it != by_peer->end() && it->second == w) by_peer->erase(it);
}

// Wake-ups through the set after which a socket gets a uv_poll of its own (OXY_FD_SET_OWN_AFTER,
// 0: never). A short flow wakes 2-4 times (dial or early read, answer, FIN); a kept connection
// or a bulk transfer keeps waking, and each wake-up through the set costs a second epoll_wait
// after libuv's. The move costs libuv's probe, FIONBIO and its start (~5 system calls), once.
uint32_t OwnAfter() {
  static const uint32_t n = [] {
    const char* e = std::getenv("OXY_FD_SET_OWN_AFTER");
    return e && *e ? uint32_t(std::strtoul(e, nullptr, 10)) : 16u;
  }();
  return n;
}

void Deliver(uv_poll_t* handle, int, int);

FdSet* SetFor(uv_loop_t* loop) {
  if (the_set) return the_set;
  auto* s = new FdSet();
  s->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (s->epfd < 0) {
    delete s;
    return nullptr;
  }
  s->poll = new uv_poll_t();
  if (uv_poll_init(loop, s->poll, s->epfd) != 0) {
    delete s->poll;
    close(s->epfd);
    delete s;
    return nullptr;
  }
  s->poll->data = s;
  uv_unref(reinterpret_cast<uv_handle_t*>(s->poll));
  uv_poll_start(s->poll, UV_READABLE, &Deliver);
  the_set = s;
  return s;
}

void MaybeClose() {
  FdSet* s = the_set;
  if (!s || s->holders > 0 || s->watches > 0 || s->delivering) return;
  the_set = nullptr;
  s->poll->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(s->poll), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  close(s->epfd);
  delete s;
}

void Wanting(FdSet* s, int delta) {
  const bool was = s->wanting > 0;
  s->wanting += delta;
  const bool now = s->wanting > 0;
  if (was != now) {
    if (now) uv_ref(reinterpret_cast<uv_handle_t*>(s->poll));
    else uv_unref(reinterpret_cast<uv_handle_t*>(s->poll));
  }
}

// A uv_poll's events for a watch's: the peer's FIN asked for with a read (kFdWatchHangUp).
int PollEvents(int events) { return (events & UV_READABLE) && FdWatchHangUps() ? events | UV_DISCONNECT : events; }

void OnOwnPoll(uv_poll_t* handle, int status, int events) {
  auto* w = static_cast<FdWatch*>(handle->data);
  if (!w || !w->cb) return;
  int got = events & w->events;
  if ((events & UV_DISCONNECT) && (got & UV_READABLE)) got |= kFdWatchHangUp;
  if (status < 0) {
    // libuv stopped the poll on the error: started again it stays level-triggered as in the set,
    // and the read or write says what happened.
    got = w->events;
    if (w->events) uv_poll_start(handle, PollEvents(w->events), &OnOwnPoll);
  }
  if (got) w->cb(w, got | kFdWatchError);  // may free w; libuv does not tell an error apart
}

// Out of the set to a uv_poll of its own, wanting what it wants now; left in the set if libuv refuses.
void MoveToOwnPoll(FdSet* s, FdWatch* w) {
  auto* h = new uv_poll_t();
  if (uv_poll_init(s->poll->loop, h, w->fd) != 0) {
    delete h;
    return;
  }
  if (w->added) epoll_ctl(s->epfd, EPOLL_CTL_DEL, w->fd, nullptr);
  w->added = false;
  if (w->events) Wanting(s, -1);
  h->data = w;
  w->own = h;
  own_polls++;
  if (w->events && uv_poll_start(h, PollEvents(w->events), &OnOwnPoll) != 0) w->events = 0;
}

uint32_t EpollEvents(int events) {
  const uint32_t in = FdWatchHangUps() ? uint32_t(EPOLLIN | EPOLLRDHUP) : uint32_t(EPOLLIN);
  return ((events & UV_READABLE) ? in : 0u) | ((events & UV_WRITABLE) ? uint32_t(EPOLLOUT) : 0u);
}

void Deliver(uv_poll_t* handle, int, int) {
  auto* s = static_cast<FdSet*>(handle->data);
  if (!s) return;
  epoll_event evs[128];
  int n;
  do n = epoll_wait(s->epfd, evs, 128, 0);
  while (n < 0 && errno == EINTR);
  s->delivering = true;
  for (int i = 0; i < n; i++) {
    auto* w = static_cast<FdWatch*>(evs[i].data.ptr);
    if (!w->cb) continue;  // freed earlier in this delivery
    const uint32_t e = evs[i].events;
    if (w->events == 0) {
      // An error or hang-up reported while nothing is wanted (epoll always reports them): out of
      // the set until something is wanted again, or it would wake the loop forever.
      if ((e & (EPOLLERR | EPOLLHUP)) && w->added) {
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, w->fd, nullptr);
        w->added = false;
      }
      continue;
    }
    int got = ((e & EPOLLIN) ? UV_READABLE : 0) | ((e & EPOLLOUT) ? UV_WRITABLE : 0);
    const bool error = e & (EPOLLERR | EPOLLHUP);
    if (error) got = w->events;  // the read or write says what happened
    got &= w->events;
    if (!got) continue;
    if ((e & EPOLLRDHUP) && (got & UV_READABLE)) got |= kFdWatchHangUp;
    w->cb(w, error ? got | kFdWatchError : got);
    if (w->cb && !w->own && OwnAfter() && ++w->wakes >= OwnAfter()) MoveToOwnPoll(s, w);
  }
  s->delivering = false;
  for (FdWatch* w : s->dead) delete w;
  s->dead.clear();
  MaybeClose();
}

}  // namespace

double FdSetOwnPolls() { return own_polls; }

bool FdWatchHangUps() {
  static const bool on = EnvSwitchOn("OXY_FD_WATCH_HANGUP");
  return on;
}

static bool DelIdle() {
  static const bool on = EnvSwitchOn("OXY_FD_SET_DEL_IDLE");
  return on;
}

bool SameTurnReads() {
  static const bool on = EnvSwitchOn("OXY_SAME_TURN");
  return on;
}

void SetFdWatchPeer(FdWatch* w, int family, const uint8_t* addr, uint16_t port) {
  if (!w || !SameTurnReads() || (family != 4 && family != 6)) return;
  ForgetPeer(w);
  if (!by_peer) by_peer = new std::unordered_map<PeerKey, FdWatch*, PeerHash>();
  PeerBytes(w->peer, family, addr, port);
  w->has_peer = true;
  (*by_peer)[KeyOf(w->peer)] = w;  // a namesake in another namespace: the later socket (a stray kick only reads nothing)
}

void KickFdWatchPeer(int family, const uint8_t* addr, uint16_t port) {
  if (!by_peer || by_peer->empty()) return;
  PeerKey& key = kicked.emplace_back();
  PeerBytes(key.data(), family, addr, port);
}

int RunFdWatchKicks() {
  if (kicked.empty()) return 0;
  // Swapped out (its buffer kept for the next batch): a delivery that kicks again goes to the next run.
  thread_local std::vector<PeerKey> list;
  list.swap(kicked);
  const uint64_t run = ++kick_runs;
  int delivered = 0;
  for (const PeerKey& key : list) {
    // Looked up now: a watch freed by an earlier delivery left the table.
    auto it = by_peer->find(key);
    if (it == by_peer->end()) continue;
    FdWatch* w = it->second;
    if (w->kicked == run || !w->cb || !(w->events & UV_READABLE)) continue;
    w->kicked = run;
    delivered++;
    kick_reads++;
    w->cb(w, UV_READABLE);  // may free w
  }
  list.clear();
  return delivered;
}

double FdWatchKicks() { return kick_reads; }

void HoldFdSet(uv_loop_t* loop) {
  if (FdSet* s = SetFor(loop)) s->holders++;
}

void ReleaseFdSet() {
  if (!the_set) return;
  the_set->holders--;
  MaybeClose();
}

FdWatch* NewFdWatch(uv_loop_t* loop, int fd) {
  FdSet* s = SetFor(loop);
  if (!s) return nullptr;
  auto* w = new FdWatch();
  w->fd = fd;
  s->watches++;
  return w;
}

int SetFdWatch(FdWatch* w, int events, FdWatchCb cb) {
  FdSet* s = the_set;
  if (!s) return -EBADF;
  w->cb = cb;
  if (w->own) {
    if (events == w->events) return 0;
    int rc = events ? uv_poll_start(w->own, PollEvents(events), &OnOwnPoll) : uv_poll_stop(w->own);
    if (rc != 0) return rc;
    w->events = events;
    return 0;
  }
  if (events == w->events && (w->added || events == 0)) return 0;
  epoll_event ev{};
  ev.events = EpollEvents(events);
  ev.data.ptr = w;
  int op = w->added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (!w->added && events == 0) {
    // Not in the set and nothing wanted: nothing to tell the kernel yet.
    return 0;
  }
  // Nothing wanted any more: out of the set (a DEL where a MOD to nothing would be, and none at
  // FreeFdWatch: a socket whose reads and writes are over before its close — a flow's end — costs
  // one epoll_ctl less); wanted again, it is added again. OXY_FD_SET_DEL_IDLE=0: a MOD, kept in the set.
  if (events == 0 && DelIdle()) op = EPOLL_CTL_DEL;
  if (epoll_ctl(s->epfd, op, w->fd, &ev) != 0) return -errno;
  w->added = op != EPOLL_CTL_DEL;
  Wanting(s, (events != 0) - (w->events != 0));
  w->events = events;
  return 0;
}

void FreeFdWatch(FdWatch* w) {
  if (!w) return;
  ForgetPeer(w);
  FdSet* s = the_set;
  if (w->own) {
    // uv_close stops it now (libuv's epoll_ctl DEL): the fd may close right after.
    w->own->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(w->own), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    w->own = nullptr;
    w->events = 0;
  }
  if (s) {
    // Before the fd closes: another descriptor of the socket (a dup) would keep it in the set.
    if (w->added) epoll_ctl(s->epfd, EPOLL_CTL_DEL, w->fd, nullptr);
    if (w->events) Wanting(s, -1);
    s->watches--;
  }
  w->cb = nullptr;
  w->added = false;
  w->events = 0;
  if (s && s->delivering) s->dead.push_back(w);
  else delete w;
  MaybeClose();
}

}  // namespace oxy
