// The addon's own epoll set for the sockets of private TCP flows (pumps, dials, the edge's
// accepted connections): one uv_poll on the set's epoll fd, and one epoll_ctl per change of a
// socket's events. A uv_poll per socket cost an ADD and a DEL (libuv's probe) and FIONBIO at its
// init, a DEL and an ADD at every start (uv_poll_start invalidates the fd first), a DEL at every
// stop and at its close: 9 epoll_ctls per connection at each end of the vnet path, 3 of them on
// fds not in the set. docs/decisions.md "The vnet path's new connections accepted in the addon".
#pragma once

#include <uv.h>

namespace oxy {

struct FdWatch;
// `events`: UV_READABLE | UV_WRITABLE that came (an error or hang-up comes as every event wanted,
// with kFdWatchError).
using FdWatchCb = void (*)(FdWatch* w, int events);
// With the events: epoll said EPOLLERR or EPOLLHUP (or, on a watch moved to a uv_poll of its own,
// it may have). Without it the socket had no error when the events were read: a connect that
// turned writable without it succeeded (no getsockopt(SO_ERROR) to ask).
constexpr int kFdWatchError = 0x100;
// With UV_READABLE: the peer's FIN is in the socket already (EPOLLRDHUP; UV_DISCONNECT on a watch
// moved to a uv_poll of its own), so a read that drains the data is followed by the EOF's read
// in the same turn (quic-pump.cc PumpRead). Set only where it was asked for (FdWatchHangUps).
constexpr int kFdWatchHangUp = 0x200;

// One socket in the set, level-triggered as uv_poll is. The socket's owner closes its fd after
// FreeFdWatch.
struct FdWatch {
  int fd = -1;
  int events = 0;     // wanted now
  bool added = false;  // in the epoll set
  FdWatchCb cb = nullptr;
  void* data = nullptr;
  // A socket that keeps waking (a kept connection, a bulk transfer) moves to a uv_poll of its own:
  // each wake-up through the set costs a second epoll_wait after libuv's.
  uint32_t wakes = 0;
  uv_poll_t* own = nullptr;
  // The edge's accepted socket of a fast-path flow: known by its peer (the flow's NAT slot).
  bool has_peer = false;
  uint8_t peer[20] = {};  // family (4|6), pad, port (host order), 16 address bytes
  uint64_t kicked = 0;    // the RunFdWatchKicks that last delivered to it
};

// OXY_FD_WATCH_HANGUP=0: watches are not told of the peer's FIN (no EPOLLRDHUP asked for), and a
// pump reads a drained socket's EOF a turn later, as before session 22.
bool FdWatchHangUps();

// Sockets moved to a uv_poll of their own on this thread so far (FdWatch::own).
double FdSetOwnPolls();

// Holds the thread's set open (a QUIC connection, an acceptor): it closes when the last holder
// releases it and no watch is left, so a worker's loop ends with no handle of ours.
void HoldFdSet(uv_loop_t* loop);
void ReleaseFdSet();

// A watch of `fd` (non-blocking already), wanting nothing yet; nullptr when the set cannot be made.
FdWatch* NewFdWatch(uv_loop_t* loop, int fd);
// Wants `events` (0: none, the fd stays in the set) with `cb`; 0 or -errno.
int SetFdWatch(FdWatch* w, int events, FdWatchCb cb);
// Same-turn reads on the edge (docs/decisions.md, session 15): a packet the fast path (fastnat.cc)
// writes to the TUN for an established flow is processed by the kernel within the write, so the
// flow's accepted socket is readable at once; its pump reads it in that loop turn (KickFdWatchPeer
// during the batch, RunFdWatchKicks at its end) instead of in the next one, after an epoll_pwait.
// `family` 4 or 6, `addr` 4 or 16 bytes. OXY_SAME_TURN=0 turns it off (and the TUN's, tun.cc).
bool SameTurnReads();
void SetFdWatchPeer(FdWatch* w, int family, const uint8_t* addr, uint16_t port);
void KickFdWatchPeer(int family, const uint8_t* addr, uint16_t port);
// Delivers UV_READABLE to each watch kicked since the last run that still wants to read; the count.
int RunFdWatchKicks();
// Reads delivered this way on this thread so far.
double FdWatchKicks();

// Out of the set and freed (later, when the set is delivering events now); the fd is the caller's.
void FreeFdWatch(FdWatch* w);

}  // namespace oxy
