// TCP_INFO of a connected TCP socket: what the kernel knows of its health
// (retransmissions, RTT, congestion window). Node exposes none of it; the edge reads
// it from an accepted socket's fd just before the socket closes. SO_ERROR tells a reset
// that libuv reported as an end (tcp-info.ts revealResets).
#include "common.h"
#include "modules.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace oxy {

namespace {

// tcpInfo(fd) -> {state, totalRetrans, retransmits, lost, unacked, rttUs, rttVarUs, rtoUs, sndMss, sndCwnd}
Napi::Value TcpInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  tcp_info ti{};
  socklen_t len = sizeof ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) ThrowErrno(env, "getsockopt(TCP_INFO)", errno, "fd " + std::to_string(fd));
  Napi::Object out = Napi::Object::New(env);
  out.Set("state", ti.tcpi_state);
  out.Set("totalRetrans", ti.tcpi_total_retrans);
  out.Set("retransmits", ti.tcpi_retransmits);
  out.Set("lost", ti.tcpi_lost);
  out.Set("unacked", ti.tcpi_unacked);
  out.Set("rttUs", ti.tcpi_rtt);
  out.Set("rttVarUs", ti.tcpi_rttvar);
  out.Set("rtoUs", ti.tcpi_rto);
  out.Set("sndMss", ti.tcpi_snd_mss);
  out.Set("sndCwnd", ti.tcpi_snd_cwnd);
  return out;
}

// socketError(fd) -> the error the socket holds (SO_ERROR, which clears it), 0 for none.
Napi::Value SocketError(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = 0;
  return Napi::Number::New(info.Env(), err);
}

// resetOnClose(fd): SO_LINGER {1, 0}: the socket's last close sends a reset (RST), not a FIN.
Napi::Value ResetOnClose(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  return info.Env().Undefined();
}

// socketOutQueue(fd) -> bytes in the socket's send queue its peer has not acked yet (SIOCOUTQ: sent
// or not), -1 when the kernel cannot say (no TCP socket).
Napi::Value SocketOutQueue(const Napi::CallbackInfo& info) {
  int n = 0;
  if (ioctl(info[0].As<Napi::Number>().Int32Value(), SIOCOUTQ, &n) != 0) n = -1;
  return Napi::Number::New(info.Env(), n);
}

// unreadAfterHangUp(fd) -> -1 while the socket's peer has not closed it both ways (no POLLHUP or
// POLLERR: writes may still complete), else the bytes it sent that wait unread (FIONREAD). For
// sockets with no TCP state to ask (unix).
Napi::Value UnreadAfterHangUp(const Napi::CallbackInfo& info) {
  pollfd p{info[0].As<Napi::Number>().Int32Value(), 0, 0};
  int unread = -1;
  if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)) != 0 && ioctl(p.fd, FIONREAD, &unread) != 0) unread = 0;
  return Napi::Number::New(info.Env(), unread);
}

// tcpCongestion(fd[, name]) -> the socket's congestion control (TCP_CONGESTION), after setting it to
// `name` when given (a name the kernel refuses leaves it as it was); "" when fd is no TCP socket.
Napi::Value TcpCongestion(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (info.Length() > 1 && info[1].IsString()) SetTcpCongestion(fd, info[1]);
  char name[16] = {};  // TCP_CA_NAME_MAX
  socklen_t len = sizeof name;
  if (getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, &len) != 0) return Napi::String::New(info.Env(), "");
  return Napi::String::New(info.Env(), std::string(name, strnlen(name, len)));
}

}  // namespace

void InitTcpInfo(Napi::Env env, Napi::Object exports) {
  exports.Set("tcpCongestion", Napi::Function::New(env, TcpCongestion, "tcpCongestion"));
  exports.Set("tcpInfo", Napi::Function::New(env, TcpInfo, "tcpInfo"));
  exports.Set("socketError", Napi::Function::New(env, SocketError, "socketError"));
  exports.Set("resetOnClose", Napi::Function::New(env, ResetOnClose, "resetOnClose"));
  exports.Set("socketOutQueue", Napi::Function::New(env, SocketOutQueue, "socketOutQueue"));
  exports.Set("unreadAfterHangUp", Napi::Function::New(env, UnreadAfterHangUp, "unreadAfterHangUp"));
}

}  // namespace oxy
