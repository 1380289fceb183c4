// Network namespaces are per thread: setns(CLONE_NEWNET) on the main thread makes
// every socket or TUN created afterwards (synchronously, on this thread) live in
// the target namespace, until the thread switches back. Also small fd helpers.
#include "modules.h"
#include "common.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>

namespace oxy {

namespace {

int FdArg(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().Int32Value(); }

// setns(fd, nstype = CLONE_NEWNET)
Napi::Value SetNs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int nstype = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : CLONE_NEWNET;
  if (setns(FdArg(info, 0), nstype) != 0) ThrowErrno(env, "setns", errno, "fd " + std::to_string(FdArg(info, 0)));
  return env.Undefined();
}

// openNetns(path) -> fd of /var/run/netns/NAME, /proc/PID/ns/net, ...
Napi::Value OpenNetns(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>();
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) ThrowErrno(env, "open", errno, path);
  return Napi::Number::New(env, fd);
}

Napi::Value CloseFdJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (close(FdArg(info, 0)) != 0 && errno != EINTR) ThrowErrno(env, "close", errno);
  return env.Undefined();
}

Napi::Value DupFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = fcntl(FdArg(info, 0), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) ThrowErrno(env, "fcntl(F_DUPFD_CLOEXEC)", errno);
  return Napi::Number::New(env, fd);
}

}  // namespace

void InitNetns(Napi::Env env, Napi::Object exports) {
  exports.Set("setns", Napi::Function::New(env, SetNs, "setns"));
  exports.Set("openNetns", Napi::Function::New(env, OpenNetns, "openNetns"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFdJs, "closeFd"));
  exports.Set("dupFd", Napi::Function::New(env, DupFd, "dupFd"));
  exports.Set("CLONE_NEWNET", Napi::Number::New(env, CLONE_NEWNET));
}

}  // namespace oxy
