// The JS calls on a connection's fd pumps (quic-pump.cc), shared by QuicClient (its one
// connection; arguments from 0) and QuicServer (the connection's handle first; arguments from 1).
// `c` is null when the connection is gone or not usable: each call then does nothing.
#pragma once

#include <napi.h>

#include <algorithm>

#include "common.h"
#include "quic-core.h"

namespace oxy::quic::pump_js {

// attachPump([handle,] id, fd, mode, source) → true when stream `id` now pumps to and from (a
// duplicate of) the TCP socket `fd` — or, by `source`, the addon's own dial (1, or true: fd is its
// token) or a socket its TcpAcceptor accepted (2: fd is its token);
// mode 0: http1 records, 1 (plain): a private TCP flow (half-closes each way), 2 (flows): one
// private TCP flow of a tcp-flows stream (its records read and written here).
// 3: fd is such a token and the pump starts at the flow's ANSWER if it is `ok` (a Buffer) byte for byte.
inline Napi::Value Attach(Conn* c, const Napi::CallbackInfo& info, int a) {
  // The OK ANSWER (mode 3), and a flow's OPEN record payload to write first (a pump at the flow's
  // ANSWER): each optional.
  ByteView answer = {nullptr, 0};
  ByteView open = {nullptr, 0};
  if (info.Length() > size_t(a + 4)) GetBytes(info[a + 4], &answer);
  if (info.Length() > size_t(a + 5)) GetBytes(info[a + 5], &open);
  bool ok = c && c->AttachPump(info[a].As<Napi::Number>().Int64Value(), info[a + 1].As<Napi::Number>().Int32Value(), info[a + 2].ToNumber().Int32Value(),
                               info[a + 3].ToNumber().Int32Value(), answer.data, answer.length, open.data, open.length);
  return Napi::Boolean::New(info.Env(), ok);
}

// resetPump([handle,] id): a flows pump's flow was reset by the peer (its RESET read by JS): the fd gets a reset.
inline Napi::Value Reset(Conn* c, const Napi::CallbackInfo& info, int a) {
  if (c) c->ResetPump(info[a].As<Napi::Number>().Int64Value());
  return info.Env().Undefined();
}

// shutPump([handle,] id): a plain pump's stream side ended: shut the fd's write side after what is queued (kPumpShut).
inline Napi::Value Shut(Conn* c, const Napi::CallbackInfo& info, int a) {
  if (c) c->ShutPump(info[a].As<Napi::Number>().Int64Value());
  return info.Env().Undefined();
}

// pumpWrite([handle,] id, bytes, head) → bytes not yet written to the fd, -1 when it takes none.
inline Napi::Value Write(Conn* c, const Napi::CallbackInfo& info, int a) {
  Napi::Env env = info.Env();
  ByteView bytes;
  if (!GetBytes(info[a + 1], &bytes)) throw Napi::TypeError::New(env, "pumpWrite: bytes expected");
  if (!c) return Napi::Number::New(env, -1);
  return Napi::Number::New(env, c->PumpWrite(info[a].As<Napi::Number>().Int64Value(), bytes.data, bytes.length, info[a + 2].ToBoolean()));
}

// armPumpHeads([handle,] id, mode, frameLeft, bodyLeft) → 1 armed, 0 ask again after the next
// batch, -1 never (Conn::ArmPumpHeads). Mode 0: whole HEAD records may come as PUMP records; 1
// (records): the addon reads every record from JS's point on (BODY bytes to the fd); 2 (plain):
// every byte; 3 (flows): tcp-flows records, DATA to the fd, END and RESET ending the flow.
inline Napi::Value ArmHeads(Conn* c, const Napi::CallbackInfo& info, int a) {
  auto num = [&](int i) { return uint64_t(std::max<int64_t>(0, info[a + i].As<Napi::Number>().Int64Value())); };
  int armed = c ? c->ArmPumpHeads(info[a].As<Napi::Number>().Int64Value(), info[a + 1].As<Napi::Number>().Int32Value(), num(2), num(3)) : -1;
  return Napi::Number::New(info.Env(), armed);
}

// closePump([handle,] id, reset) → the request bytes it wrote to its fd without JS. `reset`: the
// fd's close sends RST (a flow cut by its stream's death). `c` may be a connection that is
// closing: its counts still come back.
inline Napi::Value Close(Conn* c, const Napi::CallbackInfo& info, int a) {
  return Napi::Number::New(info.Env(), c ? c->ClosePump(info[a].As<Napi::Number>().Int64Value(), info[a + 1].ToBoolean()) : 0);
}

}  // namespace oxy::quic::pump_js
