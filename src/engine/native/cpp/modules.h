// Entry points of the addon's parts; binding.cc puts them on the exports object.
#pragma once

#include <napi.h>

namespace oxy {

Napi::Function InitUdp(Napi::Env env);
Napi::Function InitTun(Napi::Env env);
Napi::Function InitPacketRelay(Napi::Env env);
Napi::Function InitSeqpacketSocket(Napi::Env env);
Napi::Function InitSeqpacketServer(Napi::Env env);
void InitSeqpacketFunctions(Napi::Env env, Napi::Object exports);
void InitNetns(Napi::Env env, Napi::Object exports);
void InitTcpInfo(Napi::Env env, Napi::Object exports);
void InitSplice(Napi::Env env, Napi::Object exports);
void InitReusePort(Napi::Env env, Napi::Object exports);
void InitReadAhead(Napi::Env env, Napi::Object exports);
Napi::Function InitQuicClient(Napi::Env env);
Napi::Function InitQuicServer(Napi::Env env);
// flowFinHolds(): quic::FinHolds() of the calling thread.
void InitQuicFunctions(Napi::Env env, Napi::Object exports);
void InitHttp1Answer(Napi::Env env, Napi::Object exports);
void InitQuicCore(Napi::Env env, Napi::Object exports);
Napi::Function InitTcpAcceptor(Napi::Env env);
void InitAesGcm(Napi::Env env, Napi::Object exports);

}  // namespace oxy
