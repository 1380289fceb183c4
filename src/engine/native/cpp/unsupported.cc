// Non-Linux builds: the addon loads but reports itself unsupported, so
// `npm install` succeeds and the TypeScript wrapper throws a clear error on use.
#include <napi.h>

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("supported", false);
  return exports;
}

NODE_API_MODULE(oxy_native, Init)
