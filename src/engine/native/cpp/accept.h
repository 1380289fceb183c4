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
bool ReadAcceptedFirst(double token, uv_loop_t* loop, EarlyChunkFn cb, void* ctx, int64_t id);
// No more calls for `ctx` (it is going).
void ForgetAcceptedReads(void* ctx);

}  // namespace oxy
