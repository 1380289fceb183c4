// Where one HTTP/1 response ends, and the head the edge's client gets: protocol/http1.ts's
// ResponseReader in C++, byte for byte (the edge's answer pump, quic-answer.cc; and, reading only,
// the connector's FIN hold: ClosingAnswerWhole below). Interim 1xx heads, then no body (HEAD, 204,
// 304), Content-Length, chunked (passed on as chunked) or the end of the stream; the head loses Connection / Keep-Alive / Proxy-Connection and gains
// `Connection: close` or the edge's keep-alive lines, then the extra lines (Proxy-Status). Any
// change here is a change there: test/unit/http1-answer.test.ts compares the two on generated input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace oxy {

class AnswerFramer {
 public:
  enum State : uint8_t { kHead, kLength, kChunkSize, kChunkData, kChunkCrlf, kTrailer, kClose, kDone };

  // A new answer: to a HEAD request (no body), `close` when the client asked to close;
  // `keep_alive` and `extra`: header lines (CRLF-terminated) for a kept connection / every final head.
  void Start(bool head_request, bool close, const std::string* keep_alive, const std::string* extra);
  // Appends what goes to the client to `out`. Returns the bytes of `data` used (fewer only once
  // the answer ended), or -1 when the answer cannot be framed (error()).
  long Feed(const uint8_t* data, size_t len, std::vector<uint8_t>& out) { return Feed(data, len, &out); }
  // The same with `out` null: only where the answer ends (ClosingAnswerWhole; `keep_alive` and
  // `extra` may be null then).
  long Feed(const uint8_t* data, size_t len, std::vector<uint8_t>* out);
  // The stream ended: a close-delimited answer is whole.
  bool End();

  State state() const { return state_; }
  bool done() const { return state_ == kDone; }
  int status() const { return status_; }
  bool close() const { return close_; }
  // The final head's Connection header names `close` (a comma-separated token, any case, as
  // protocol/http1.ts scanRequest reads a request's): the server closes after this answer.
  bool server_close() const { return server_close_; }
  const char* error() const { return error_; }
  // Nothing of this answer framed yet (no head, interim ones included): a refusal now can be
  // replaced by the edge's 502 page (ResponseReader.untouched).
  bool untouched() const { return state_ == kHead && heads_ == 0; }
  bool head_request() const { return head_request_; }

 private:
  long Keep(const uint8_t* buf, size_t off, size_t n, size_t used);
  bool Head(const uint8_t* p, size_t n, std::vector<uint8_t>* out);
  long Fail(const char* why) {
    error_ = why;
    return -1;
  }

  State state_ = kDone;
  int status_ = 0;
  bool close_ = false;
  bool server_close_ = false;
  bool head_request_ = false;
  uint32_t heads_ = 0;
  uint64_t left_ = 0;
  std::string pending_;
  const std::string* keep_alive_ = nullptr;
  const std::string* extra_ = nullptr;
  const char* error_ = "";
};

// The connector's FIN hold (quic-pump.cc): `d[0..n)`, a dialed flow's first read, is exactly one
// whole HTTP/1 answer — as AnswerFramer frames it for any request but HEAD, interim heads first,
// its body to the last byte of its Content-Length or chunked framing and nothing after — whose
// final head says `Connection: close`, so the host's FIN follows. A head the framer refuses, a
// close-delimited body, an answer cut short or followed by more bytes: false.
bool ClosingAnswerWhole(const uint8_t* d, size_t n);

// The status an answer's first read starts with, for the counts (quic-pump.cc): "HTTP/1.0 NNN" or
// "HTTP/1.1 NNN", else 0 — protocol/http1.ts answerStatus, which the connector's JS path counts with.
int AnswerStatus(const uint8_t* p, size_t n);

// A request the edge's reader forwards without JS (quic-answer.cc, the client's reads): `p[0..n)` is
// exactly one whole head that protocol/http1.ts scanRequest accepts, with no body (no
// Content-Length but 0, no Transfer-Encoding), no Expect, and no Connection header but
// `keep-alive`. Then `frame` gets the stream's DATA frame holding the HEAD record encodeHeadRecord
// makes of it (X-Forwarded-For with `client`, hop-by-hop headers dropped), byte for byte; `host`
// the Host value JS routes by. Anything else is false: JS reads those bytes itself.
// test/unit/protocol/http1-request.test.ts compares the two on generated heads.
bool ScanPlainRequest(const uint8_t* p, size_t n, const std::string& client, std::vector<uint8_t>& frame, std::string* host, bool* head_method);

// protocol/http1.ts ChunkedBody in C++, byte for byte: the framing of a chunked request body
// checked as it comes (the edge's native body reads, quic-answer.cc), continuing from where JS's
// checker stood (ChunkedBody.handOver: its state before the trailers, as numbers). Any change here
// is a change there: test/unit/protocol/http1-chunked-native.test.ts compares the two.
class ChunkCheck {
 public:
  // ChunkedBody's states (its const enum Chunk, same numbers).
  enum State : uint8_t {
    kSize, kExtName, kExtValue, kSizeLf, kData, kDataCr, kDataLf,
    kTrailerStart, kTrailerName, kTrailerValue, kTrailerLf, kEndLf, kDone,
  };
  // [state, left, digits, ext, extBytes] from ChunkedBody.handOver (a state before the trailers). False: not one.
  bool Restore(const double* s, size_t n);
  // Bytes of `data` that are body, all checked (fewer than `len` only once the body ended), or -1
  // when the framing is not taken (error()).
  long Feed(const uint8_t* data, size_t len);
  bool done() const { return state_ == kDone; }
  const char* error() const { return error_; }

 private:
  long Fail(const char* why) {
    error_ = why;
    return -1;
  }
  State state_ = kSize;
  uint32_t digits_ = 0;
  uint32_t ext_ = 0;
  uint32_t ext_bytes_ = 0;
  uint64_t left_ = 0;
  uint32_t trailer_bytes_ = 0;
  std::string name_;
  const char* error_ = "";
};

}  // namespace oxy
