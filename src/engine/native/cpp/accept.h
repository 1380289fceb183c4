// The edge's upgraded TCP connections accepted by the addon (accept.cc): sockets that wait under
// a token until a QUIC pump takes them (Conn::AttachPump), JS takes their fd, or they are closed.
#pragma once

#include <uv.h>

namespace oxy {

// The accepted socket `token` leaves the acceptor: its fd (-1: no such socket) and, in `poll`, its
// poll handle (stopped, data unset; nullptr when it never polled), both now the caller's.
int TakeAccepted(double token, uv_poll_t** poll);

}  // namespace oxy
