// Base of every JS class that owns one fd watched by uv_poll: fd ownership,
// close/ref/unref/fd for JS, and pinning the JS object while it is being polled
// (so a socket nobody references but that still has work to do is not collected).
#pragma once

#include "common.h"

#include <memory>

namespace oxy {

template <class T>
class PolledWrap : public Napi::ObjectWrap<T>, public FdPoller {
 public:
  explicit PolledWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<T>(info) {}
  ~PolledWrap() override {
    FdPoller::Close();
    CloseFd(fd_);
  }

 protected:
  // Methods every subclass registers under the same JS names.
  static void AddCommonMethods(std::vector<typename Napi::ObjectWrap<T>::PropertyDescriptor>& methods) {
    methods.push_back(T::InstanceMethod("close", &PolledWrap::JsClose));
    methods.push_back(T::InstanceMethod("ref", &PolledWrap::JsRef));
    methods.push_back(T::InstanceMethod("unref", &PolledWrap::JsUnref));
    methods.push_back(T::InstanceAccessor("fd", &PolledWrap::JsFd, nullptr));
  }

  void RequireOpen(Napi::Env env, const char* syscall) const {
    if (fd_ < 0) ThrowErrno(env, syscall, EBADF, "handle is closed");
  }

  // Starts, changes or stops polling; throws on libuv failure.
  void SetWatch(Napi::Env env, int events) {
    RequireOpen(env, "uv_poll_start");
    int rc = Watch(env, fd_, events);
    if (rc != 0) ThrowErrno(env, "uv_poll_start", -rc);
    Pin(events != 0);
  }

  void EnsureContext(Napi::Env env, const char* name) {
    if (!context_) context_ = std::make_unique<Napi::AsyncContext>(env, name);
  }

  // Stops polling, closes the fd and drops JS callbacks (breaking reference cycles).
  virtual void Shutdown() {
    FdPoller::Close();
    CloseFd(fd_);
    Pin(false);
    ResetCallbacks();
  }
  virtual void ResetCallbacks() = 0;

  int fd_ = -1;
  std::unique_ptr<Napi::AsyncContext> context_;

 private:
  void Pin(bool pin) {
    if (pin && !pinned_) {
      this->Ref();
      pinned_ = true;
    } else if (!pin && pinned_) {
      this->Unref();
      pinned_ = false;
    }
  }

  Napi::Value JsClose(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }
  Napi::Value JsRef(const Napi::CallbackInfo& info) {
    SetRef(true);
    return info.Env().Undefined();
  }
  Napi::Value JsUnref(const Napi::CallbackInfo& info) {
    SetRef(false);
    return info.Env().Undefined();
  }
  Napi::Value JsFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

  bool pinned_ = false;
};

}  // namespace oxy
