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

// tcpListenReusePort(address, port, backlog, ipv6Only) -> fd (non-blocking, close-on-exec, listening)
Napi::Value TcpListenReusePort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string address = info[0].As<Napi::String>().Utf8Value();
  uint16_t port = static_cast<uint16_t>(info[1].As<Napi::Number>().Uint32Value());
  int backlog = info[2].As<Napi::Number>().Int32Value();
  bool v6only = info[3].ToBoolean();
  sockaddr_storage addr;
  socklen_t len = 0;
  int family = address.find(':') == std::string::npos ? AF_INET : AF_INET6;
  std::string detail = address + " port " + std::to_string(port);
  if (!ParseSockaddr(address, port, family, &addr, &len)) ThrowErrno(env, "bind", EINVAL, "not an IP address: " + address);
  int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, "socket", errno, detail);
  int on = 1;
  int v6 = v6only ? 1 : 0;
  const char* failed = nullptr;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) failed = "setsockopt(SO_REUSEADDR)";
  else if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0) failed = "setsockopt(SO_REUSEPORT)";
  else if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6, sizeof v6) != 0) failed = "setsockopt(IPV6_V6ONLY)";
  else if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) failed = "bind";
  else if (listen(fd, backlog) != 0) failed = "listen";
  if (failed) {
    int err = errno;
    close(fd);
    ThrowErrno(env, failed, err, detail);
  }
  return Napi::Number::New(env, fd);
}

}  // namespace

void InitReusePort(Napi::Env env, Napi::Object exports) {
  exports.Set("tcpListenReusePort", Napi::Function::New(env, TcpListenReusePort, "tcpListenReusePort"));
}

}  // namespace oxy
