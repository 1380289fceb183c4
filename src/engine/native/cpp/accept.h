// The edge's upgraded TCP connections accepted by the addon (accept.cc): sockets that wait under
// a token until a QUIC pump takes them (Conn::AttachPump), JS takes their fd, or they are closed.
#pragma once

#include "fd-set.h"

namespace oxy {

// The accepted socket `token` leaves the acceptor: its fd (-1: no such socket) and, in `watch`,
// its watch in the thread's epoll set (data unset; nullptr when it never read; it may still want
// UV_READABLE with the acceptor's callback: the caller sets its own callback before the loop
// runs again), both now the caller's.
int TakeAccepted(double token, FdWatch** watch);
// The same, its watch made here when it had none (nullptr if that fails), and known by its peer
// (SetFdWatchPeer: the fast path's TUN writes to it kick its reads).
int TakeAcceptedWatched(double token, uv_loop_t* loop, FdWatch** watch);
// The accepted socket `token`'s first chunk read here for whoever will pump it (a QUIC connection):
// `cb(ctx, id, data, n)` gets it (n > 0), its end (n == 0) or its error (n = -errno), once, unless
// the socket is taken or closed first. Its watch is known by its peer (the fast path's TUN write of
// the chunk reads it in that turn). False: no such socket.
using EarlyChunkFn = void (*)(void* ctx, int64_t id, const uint8_t* data, ssize_t n);
// `now`: nothing is watched yet; ReadAcceptedNow, called once the caller is ready for `cb`, reads
// at once and watches only if nothing was there.
bool ReadAcceptedFirst(double token, uv_loop_t* loop, EarlyChunkFn cb, void* ctx, int64_t id, bool now = false);
// The first chunk of a socket ReadAcceptedFirst(now) armed, read at once: the device's request
// mostly came with the ACK that made the socket acceptable, so it goes in this turn (the flow's
// OPEN and its first DATA in one packet) with no watch (no epoll_ctl, no second turn). Nothing to
// read yet: watched as ReadAcceptedFirst's (false: no such socket, or the watch failed — the pump
// reads the chunk when it takes the socket). True when `cb` got the chunk, the end or an error.
bool ReadAcceptedNow(double token, uv_loop_t* loop);
// No more calls for `ctx` (it is going).
void ForgetAcceptedReads(void* ctx);

}  // namespace oxy
