// A TCP listening socket with SO_REUSEPORT, for `edge run --workers N`: every worker
// listens on the same address with a socket of its own and the kernel spreads new
// connections over them by hash (no shared accept queue, no hop through a primary).
// Node 20's net has no reusePort option (Node 22.12/23.1 added it), so the socket is
// made here and handed to `server.listen({fd})`.
#include "common.h"
#include "modules.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace oxy {

namespace {

// A socket of `type` with SO_REUSEADDR + SO_REUSEPORT bound to address:port (non-blocking, close-on-exec).
int BindReusePort(Napi::Env env, int type, const std::string& address, uint16_t port, bool v6only) {
  sockaddr_storage addr;
  socklen_t len = 0;
  int family = address.find(':') == std::string::npos ? AF_INET : AF_INET6;
  std::string detail = address + " port " + std::to_string(port);
  if (!ParseSockaddr(address, port, family, &addr, &len)) ThrowErrno(env, "bind", EINVAL, "not an IP address: " + address);
  int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, "socket", errno, detail);
  int on = 1;
  int v6 = v6only ? 1 : 0;
  const char* failed = nullptr;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) failed = "setsockopt(SO_REUSEADDR)";
  else if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) failed = "setsockopt(SO_REUSEPORT)";
  else if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6, sizeof v6) != 0) failed = "setsockopt(IPV6_V6ONLY)";
  else if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) failed = "bind";
  if (failed) {
    int err = errno;
    close(fd);
    ThrowErrno(env, failed, err, detail);
  }
  return fd;
}

// tcpListenReusePort(address, port, backlog, ipv6Only) -> fd, listening; backlog < 0: bound only
// (reserves the port for the group without taking connections).
Napi::Value TcpListenReusePort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string address = info[0].As<Napi::String>().Utf8Value();
  uint16_t port = static_cast<uint16_t>(info[1].As<Napi::Number>().Uint32Value());
  int backlog = info[2].As<Napi::Number>().Int32Value();
  int fd = BindReusePort(env, SOCK_STREAM, address, port, info[3].ToBoolean());
  if (backlog >= 0 && listen(fd, backlog) != 0) {
    int err = errno;
    close(fd);
    ThrowErrno(env, "listen", err, address + " port " + std::to_string(port));
  }
  return Napi::Number::New(env, fd);
}

// udpBindReusePort(address, port, ipv6Only) -> fd: one socket of a QUIC listener's group, made by
// the primary so the group keeps its members (and the kernel its hashing) while a worker restarts.
Napi::Value UdpBindReusePort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string address = info[0].As<Napi::String>().Utf8Value();
  uint16_t port = static_cast<uint16_t>(info[1].As<Napi::Number>().Uint32Value());
  return Napi::Number::New(env, BindReusePort(env, SOCK_DGRAM, address, port, info[2].ToBoolean()));
}

// socketAddress(fd) -> {family, address, port} (getsockname)
Napi::Value SocketAddress(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = info[0].As<Napi::Number>().Int32Value();
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) ThrowErrno(env, "getsockname", errno, "fd " + std::to_string(fd));
  return SockaddrToObject(env, addr);
}

}  // namespace

void InitReusePort(Napi::Env env, Napi::Object exports) {
  exports.Set("tcpListenReusePort", Napi::Function::New(env, TcpListenReusePort, "tcpListenReusePort"));
  exports.Set("udpBindReusePort", Napi::Function::New(env, UdpBindReusePort, "udpBindReusePort"));
  exports.Set("socketAddress", Napi::Function::New(env, SocketAddress, "socketAddress"));
}

}  // namespace oxy
