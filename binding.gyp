{
  # Native addon for src/engine/native (Linux only): UDP with IP_PKTINFO, TUN,
  # SEQPACKET Unix sockets, setns, TCP_INFO, splice(2) relays, the connector's read-ahead, a QUIC
  # client and server on ngtcp2. Built by `npm install` (scripts.install) or
  # `npx node-gyp rebuild`; the wrapper loads build/Release/oxy_native.node.
  "targets": [
    {
      "target_name": "oxy_native",
      "sources": [
        "src/engine/native/cpp/binding.cc",
        "src/engine/native/cpp/common.cc",
        "src/engine/native/cpp/udp.cc",
        "src/engine/native/cpp/tun.cc",
        "src/engine/native/cpp/relay.cc",
        "src/engine/native/cpp/seqpacket.cc",
        "src/engine/native/cpp/netns.cc",
        "src/engine/native/cpp/tcpinfo.cc",
        "src/engine/native/cpp/splice.cc",
        "src/engine/native/cpp/reuseport.cc",
        "src/engine/native/cpp/fastnat.cc",
        "src/engine/native/cpp/readahead.cc",
        "src/engine/native/cpp/quic-core.cc",
        "src/engine/native/cpp/quic-pump.cc",
        "src/engine/native/cpp/quic-answer.cc",
        "src/engine/native/cpp/quic-aead.cc",
        "src/engine/native/cpp/aes-gcm.cc",
        # BoringSSL's AES-GCM on VAES (vendor/boringssl/README.md); empty off x86_64.
        "src/engine/native/cpp/vendor/boringssl/aes-gcm-avx512-x86_64-linux.S",
        "src/engine/native/cpp/vendor/boringssl/aes-gcm-avx2-x86_64-linux.S",
        "src/engine/native/cpp/http1-answer.cc",
        "src/engine/native/cpp/quicclient.cc",
        "src/engine/native/cpp/quicserver.cc",
        "src/engine/native/cpp/accept.cc",
        "src/engine/native/cpp/fd-set.cc"
      ],
      "dependencies": [
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      # SWALLOW_UNTHROWABLE_EXCEPTIONS: a method that fails while a worker's env stops (JS still
      # running after Worker.terminate(), calls into JS refused) returns quietly instead of
      # rethrowing from node-addon-api's wrapper (std::terminate, exit 134): decisions "Leftovers".
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [
        ["OS!='linux'", {"sources=": ["src/engine/native/cpp/unsupported.cc"]}],
        # QUIC client and server on ngtcp2 + GnuTLS (Debian: libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev).
        ["OS=='linux'", {"libraries": ["-lngtcp2_crypto_gnutls", "-lngtcp2", "-lgnutls"]}]
      ]
    }
  ]
}
