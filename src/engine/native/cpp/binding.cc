// oxy_native: see src/engine/native/README.md for the API and its design.
#include "common.h"
#include "fastnat.h"
#include "modules.h"

#include <linux/if_tun.h>

namespace oxy {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("supported", true);
  exports.Set("loopOneWait", LoopOneWait(env));
  exports.Set("loopIdleTimeBack", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), LoopIdleTimeBack(info.Env()));
  }));
  exports.Set("loopSpin", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    const LoopSpinStats s = GetLoopSpinStats();
    Napi::Object out = Napi::Object::New(info.Env());
    out.Set("spinUs", double(s.spin_us));
    out.Set("polls", double(s.polls));
    out.Set("caught", double(s.caught));
    out.Set("slept", double(s.slept));
    return out;
  }));
  exports.Set("setErrorFactory", Napi::Function::New(env, SetErrorFactory, "setErrorFactory"));
  // envSwitchOn(name): EnvSwitchOn read now (its callers read it once), for unit/native/env-switch.
  exports.Set("envSwitchOn", Napi::Function::New(env, [](const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), EnvSwitchOn(info[0].As<Napi::String>().Utf8Value().c_str()));
  }, "envSwitchOn"));
  exports.Set("UdpSocket", InitUdp(env));
  exports.Set("TunDevice", InitTun(env));
  exports.Set("PacketRelay", InitPacketRelay(env));
  exports.Set("FastNat", InitFastNat(env));
  InitFastNatFunctions(env, exports);
  exports.Set("SeqpacketSocket", InitSeqpacketSocket(env));
  exports.Set("SeqpacketServer", InitSeqpacketServer(env));
  InitSeqpacketFunctions(env, exports);
  InitNetns(env, exports);
  InitTcpInfo(env, exports);
  InitSplice(env, exports);
  InitReusePort(env, exports);
  InitReadAhead(env, exports);
  exports.Set("QuicClient", InitQuicClient(env));
  exports.Set("QuicServer", InitQuicServer(env));
  InitQuicFunctions(env, exports);
  InitHttp1Answer(env, exports);
  InitQuicCore(env, exports);
  exports.Set("TcpAcceptor", InitTcpAcceptor(env));
  InitAesGcm(env, exports);

  Napi::Object offload = Napi::Object::New(env);
  offload.Set("CSUM", TUN_F_CSUM);
  offload.Set("TSO4", TUN_F_TSO4);
  offload.Set("TSO6", TUN_F_TSO6);
  offload.Set("TSO_ECN", TUN_F_TSO_ECN);
  offload.Set("UFO", TUN_F_UFO);
  exports.Set("TUN_F", offload);
  return exports;
}

}  // namespace oxy

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return oxy::Init(env, exports); }

NODE_API_MODULE(oxy_native, InitModule)
