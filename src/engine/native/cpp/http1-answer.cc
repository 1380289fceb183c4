#include "http1-answer.h"

#include <napi.h>

#include <algorithm>
#include <cstring>

#include "common.h"

namespace oxy {

namespace {

constexpr size_t kMaxLine = 64 * 1024;
constexpr uint64_t kMaxSafe = (uint64_t(1) << 53) - 1;

// JS's String.prototype.trim and /\s/ on a latin1 string: \t \n \v \f \r, space, NBSP.
bool Space(uint8_t c) { return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0xa0; }

void Trim(const uint8_t*& p, size_t& n) {
  while (n > 0 && Space(p[0])) p++, n--;
  while (n > 0 && Space(p[n - 1])) n--;
}

uint8_t Lower(uint8_t c) { return c >= 'A' && c <= 'Z' ? uint8_t(c | 0x20) : c; }

// `p[0..n)` equals the lower-case ASCII `name`, ignoring ASCII case.
bool Is(const uint8_t* p, size_t n, const char* name) {
  size_t len = strlen(name);
  if (n != len) return false;
  for (size_t i = 0; i < n; i++) {
    if (Lower(p[i]) != uint8_t(name[i])) return false;
  }
  return true;
}

bool Digit(uint8_t c) { return c >= '0' && c <= '9'; }

// `p[0..n)` holds only what a field value or a reason phrase may: HTAB, SP, VCHAR, obs-text (RFC
// 9110 §5.5, RFC 9112 §4) — no NUL, CR, LF or other control. ResponseReader's FIELD_VALUE.
bool FieldValue(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (p[i] != '\t' && (p[i] < 0x20 || p[i] == 0x7f)) return false;
  }
  return true;
}

// `p[0..n)` is a field name: a token (RFC 9110 §5.6.2), ResponseReader's FIELD_NAME.
bool FieldName(const uint8_t* p, size_t n) {
  if (n == 0) return false;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = p[i];
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) continue;
    if (c == 0 || !strchr("!#$%&'*+-.^_`|~", c)) return false;
  }
  return true;
}

int Hex(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

const uint8_t* Find(const uint8_t* p, size_t n, const char* what, size_t wn) {
  return static_cast<const uint8_t*>(memmem(p, n, what, wn));
}

// `value[0..n)` (a Connection header's) holds the token `close`: /(^|,)\s*close\s*(,|$)/i.
bool NamesClose(const uint8_t* value, size_t n) {
  size_t at = 0;
  while (at <= n) {
    const uint8_t* comma = static_cast<const uint8_t*>(memchr(value + at, ',', n - at));
    size_t stop = comma ? size_t(comma - value) : n;
    const uint8_t* token = value + at;
    size_t len = stop - at;
    Trim(token, len);
    if (Is(token, len, "close")) return true;
    at = stop + 1;
  }
  return false;
}

}  // namespace

void AnswerFramer::Start(bool head_request, bool close, const std::string* keep_alive, const std::string* extra) {
  state_ = kHead;
  status_ = 0;
  close_ = close;
  server_close_ = false;
  head_request_ = head_request;
  heads_ = 0;
  left_ = 0;
  pending_.clear();
  keep_alive_ = keep_alive;
  extra_ = extra;
  error_ = "";
}

bool AnswerFramer::End() {
  if (state_ == kClose) state_ = kDone;
  return state_ == kDone;
}

long AnswerFramer::Keep(const uint8_t* buf, size_t off, size_t n, size_t used) {
  if (n - off > kMaxLine) return Fail("response head too large");
  pending_.assign(reinterpret_cast<const char*>(buf + off), n - off);
  return long(used);
}

long AnswerFramer::Feed(const uint8_t* data, size_t len, std::vector<uint8_t>* out) {
  std::string joined;
  const uint8_t* buf = data;
  size_t n = len;
  size_t base = 0;
  if (!pending_.empty()) {
    base = pending_.size();
    joined.swap(pending_);
    joined.append(reinterpret_cast<const char*>(data), len);
    buf = reinterpret_cast<const uint8_t*>(joined.data());
    n = joined.size();
  }
  size_t off = 0;
  size_t from = 0;  // body bytes not yet handed on start here
  auto flush = [&](size_t to) {
    if (out && to > from) out->insert(out->end(), buf + from, buf + to);
  };
  while (off < n && state_ != kDone) {
    switch (state_) {
      case kHead: {
        const uint8_t* end = Find(buf + off, n - off, "\r\n\r\n", 4);
        if (!end) return Keep(buf, off, n, len);
        if (!Head(buf + off, size_t(end - (buf + off)), out)) return -1;
        off = from = size_t(end - buf) + 4;
        break;
      }
      case kLength: {
        uint64_t k = std::min<uint64_t>(left_, n - off);
        off += size_t(k);
        left_ -= k;
        if (left_ == 0) state_ = kDone;
        break;
      }
      case kClose:
        off = n;
        break;
      case kChunkData:
      case kChunkCrlf: {
        uint64_t k = std::min<uint64_t>(left_, n - off);
        off += size_t(k);
        left_ -= k;
        if (left_ == 0) {
          if (state_ == kChunkData) {
            state_ = kChunkCrlf;
            left_ = 2;
          } else {
            state_ = kChunkSize;
          }
        }
        break;
      }
      case kChunkSize:
      case kTrailer: {
        const uint8_t* eol = Find(buf + off, n - off, "\r\n", 2);
        if (!eol) {
          flush(off);
          return Keep(buf, off, n, len);
        }
        const uint8_t* line = buf + off;
        size_t line_len = size_t(eol - line);
        off = size_t(eol - buf) + 2;
        if (state_ == kTrailer) {
          if (line_len > 0 && Space(line[0])) return Fail("obs-fold in a response");  // as in the head
          if (line_len == 0) {
            state_ = kDone;
          } else {
            const uint8_t* colon = static_cast<const uint8_t*>(memchr(line, ':', line_len));
            if (!colon || !FieldName(line, size_t(colon - line)) || !FieldValue(colon + 1, size_t(line + line_len - colon - 1)))
              return Fail("bad trailer line in a response");
          }
          break;
        }
        // line.split(';', 1)[0].trim(): hex digits only, a safe integer.
        const uint8_t* semi = static_cast<const uint8_t*>(memchr(line, ';', line_len));
        size_t size_len = semi ? size_t(semi - line) : line_len;
        Trim(line, size_len);
        if (size_len == 0) return Fail("bad chunk size in a response");
        uint64_t size = 0;
        for (size_t i = 0; i < size_len; i++) {
          int h = Hex(line[i]);
          if (h < 0) return Fail("bad chunk size in a response");
          size = size * 16 + uint64_t(h);
          if (size > kMaxSafe) return Fail("bad chunk size in a response");
        }
        if (size == 0) {
          state_ = kTrailer;
        } else {
          state_ = kChunkData;
          left_ = size;
        }
        break;
      }
      case kDone:
        break;
    }
  }
  flush(off);
  return long(off) - long(base);
}

// One head (without its blank line), as ResponseReader's #head rewrites it (into `out`, unless null).
bool AnswerFramer::Head(const uint8_t* p, size_t n, std::vector<uint8_t>* out) {
  const uint8_t* end = p + n;
  const uint8_t* eol = Find(p, n, "\r\n", 2);
  const uint8_t* line_end = eol ? eol : end;
  size_t first = size_t(line_end - p);
  // /^HTTP\/1\.[01] (\d{3})(?: |$)/
  if (first < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ' || !Digit(p[9]) || !Digit(p[10]) ||
      !Digit(p[11]) || (first > 12 && p[12] != ' ')) {
    Fail("bad status line in a response");
    return false;
  }
  // The reason phrase: no bare CR or LF (a client would end the line there), no control.
  if (!FieldValue(p + 12, first - 12)) {
    Fail("bad status line in a response");
    return false;
  }
  int status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
  const size_t mark = out ? out->size() : 0;
  auto put = [out](const uint8_t* from, const uint8_t* to) {
    if (!out) return;
    out->insert(out->end(), from, to);
    out->push_back('\r');
    out->push_back('\n');
  };
  auto fail = [&](const char* why) {
    if (out) out->resize(mark);
    Fail(why);
    return false;
  };
  put(p, line_end);
  bool has_length = false;
  bool server_close = false;
  uint64_t length = 0;
  bool chunked = false;
  bool other = false;
  const uint8_t* line = eol ? eol + 2 : end;
  while (eol) {
    eol = Find(line, size_t(end - line), "\r\n", 2);
    const uint8_t* le = eol ? eol : end;
    size_t ln = size_t(le - line);
    // /^\s/: obs-fold (a line continuing the one before), or whitespace before the first header.
    // RFC 9112 §5.2: a proxy refuses such an answer (or unfolds it); taking ` Connection: close`
    // as a header of its own would read the answer otherwise than its client may.
    if (ln > 0 && Space(line[0])) return fail("obs-fold in a response");
    const uint8_t* colon = static_cast<const uint8_t*>(memchr(line, ':', ln));
    if (!colon || colon == line) return fail("bad header line in a response");
    const uint8_t* key = line;
    size_t key_len = size_t(colon - line);
    // A token, nothing around it (RFC 9112 §5.1: no whitespace before the colon; `X-A : 1` or
    // `Content-Length : 5` was trimmed, read, and forwarded as it came — a client's parser refuses
    // it, or reads the answer otherwise).
    if (!FieldName(key, key_len)) return fail("bad header name in a response");
    const uint8_t* value = colon + 1;
    size_t value_len = size_t(le - value);
    // No bare CR or LF (a client may end the line there: `X-A: a\nTransfer-Encoding: chunked`), no NUL or other control.
    if (!FieldValue(value, value_len)) return fail("bad header value in a response");
    Trim(value, value_len);
    if (Is(key, key_len, "connection")) {
      // Dropped from the client's head (the edge says its own); the server's close noted.
      server_close = server_close || NamesClose(value, value_len);
    } else if (!Is(key, key_len, "keep-alive") && !Is(key, key_len, "proxy-connection")) {
      if (Is(key, key_len, "content-length")) {
        // /^\d{1,15}$/, and the same on every repeat.
        bool ok = value_len >= 1 && value_len <= 15;
        uint64_t v = 0;
        for (size_t i = 0; ok && i < value_len; i++) {
          ok = Digit(value[i]);
          v = v * 10 + uint64_t(value[i] - '0');
        }
        if (!ok || (has_length && length != v)) return fail("bad Content-Length in a response");
        has_length = true;
        length = v;
      } else if (Is(key, key_len, "transfer-encoding")) {
        // /(^|,)\s*chunked\s*$/i on the trimmed value: the last coding is chunked.
        chunked = false;
        if (value_len >= 7 && Is(value + value_len - 7, 7, "chunked")) {
          size_t q = value_len - 7;
          while (q > 0 && Space(value[q - 1])) q--;
          chunked = q == 0 || value[q - 1] == ',';
        }
        other = !chunked;
      }
      put(line, le);
    }
    line = eol ? eol + 2 : end;
  }
  heads_++;
  if (status < 200) {  // interim: the final head follows
    if (out) out->insert(out->end(), {'\r', '\n'});
    return true;
  }
  status_ = status;
  server_close_ = server_close;
  if (head_request_ || status == 204 || status == 304) {
    state_ = kDone;
  } else if (chunked) {
    state_ = kChunkSize;
  } else if (other || !has_length) {
    state_ = kClose;
    close_ = true;
  } else if (length == 0) {
    state_ = kDone;
  } else {
    state_ = kLength;
    left_ = length;
  }
  if (!out) return true;
  static const std::string kClose = "Connection: close\r\n";
  const std::string& tail = close_ ? kClose : *keep_alive_;
  out->insert(out->end(), tail.begin(), tail.end());
  out->insert(out->end(), extra_->begin(), extra_->end());
  out->insert(out->end(), {'\r', '\n'});
  return true;
}

int AnswerStatus(const uint8_t* p, size_t n) {
  if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') || p[8] != ' ' || !Digit(p[9]) || !Digit(p[10]) || !Digit(p[11]))
    return 0;
  return (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
}

bool ClosingAnswerWhole(const uint8_t* d, size_t n) {
  if (n < 12 || memcmp(d, "HTTP/1.", 7) != 0) return false;  // most flows: not an answer at all
  AnswerFramer f;
  f.Start(false, false, nullptr, nullptr);
  return f.Feed(d, n, nullptr) == long(n) && f.done() && f.server_close();
}

namespace {

// frameAnswer(chunks, headRequest, close, keepAlive, extra) → {out, used[], done, status, close, error}:
// the framer on its own, for the test that compares it with ResponseReader.
Napi::Value FrameAnswer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array chunks = info[0].As<Napi::Array>();
  std::string keep_alive = info[3].As<Napi::String>().Utf8Value();
  std::string extra = info[4].As<Napi::String>().Utf8Value();
  AnswerFramer f;
  f.Start(info[1].ToBoolean(), info[2].ToBoolean(), &keep_alive, &extra);
  std::vector<uint8_t> out;
  Napi::Array used = Napi::Array::New(env);
  Napi::Object result = Napi::Object::New(env);
  for (uint32_t i = 0; i < chunks.Length(); i++) {
    ByteView b;
    if (!GetBytes(chunks.Get(i), &b)) throw Napi::TypeError::New(env, "frameAnswer: buffers expected");
    long n = f.Feed(b.data, b.length, out);
    used.Set(i, double(n));
    if (n < 0) {
      result.Set("error", f.error());
      break;
    }
    if (f.done()) break;
  }
  result.Set("out", Napi::Buffer<uint8_t>::Copy(env, out.data(), out.size()));
  result.Set("used", used);
  result.Set("done", f.done());
  result.Set("ended", f.state() == AnswerFramer::kClose);
  result.Set("status", f.status());
  result.Set("close", f.close());
  result.Set("serverClose", f.server_close());
  result.Set("untouched", f.untouched());
  return result;
}

// answerStatus(bytes) → AnswerStatus: the status the pumps count for an answer starting with `bytes`.
Napi::Value AnswerStatusJs(const Napi::CallbackInfo& info) {
  ByteView b;
  if (!GetBytes(info[0], &b)) throw Napi::TypeError::New(info.Env(), "answerStatus: a buffer expected");
  return Napi::Number::New(info.Env(), AnswerStatus(b.data, b.length));
}

// closingAnswerWhole(bytes) → whether the connector's FIN hold would hold `bytes` as a flow's first read.
Napi::Value ClosingAnswerWholeJs(const Napi::CallbackInfo& info) {
  ByteView b;
  if (!GetBytes(info[0], &b)) throw Napi::TypeError::New(info.Env(), "closingAnswerWhole: a buffer expected");
  return Napi::Boolean::New(info.Env(), ClosingAnswerWhole(b.data, b.length));
}

}  // namespace


namespace {

constexpr size_t kMaxFastHead = 16 * 1024;  // protocol/http1.ts MAX_FAST_HEAD

bool TChar(uint8_t c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

// Lower-case `p[0..n)` equals `word` (lower-case).
bool IsWord(const uint8_t* p, size_t n, const char* word) {
  size_t w = strlen(word);
  if (n != w) return false;
  for (size_t i = 0; i < n; i++) {
    uint8_t c = p[i];
    if (c >= 'A' && c <= 'Z') c = uint8_t(c + 32);
    if (c != uint8_t(word[i])) return false;
  }
  return true;
}

void PutU32(std::vector<uint8_t>& v, size_t at, uint32_t x) {
  v[at] = uint8_t(x >> 24);
  v[at + 1] = uint8_t(x >> 16);
  v[at + 2] = uint8_t(x >> 8);
  v[at + 3] = uint8_t(x);
}

void PushU16(std::vector<uint8_t>& v, size_t x) {
  v.push_back(uint8_t(x >> 8));
  v.push_back(uint8_t(x));
}

}  // namespace

bool ScanPlainRequest(const uint8_t* p, size_t n, const std::string& client, std::vector<uint8_t>& frame, std::string* host, bool* head_method) {
  if (n < 4 || n > kMaxFastHead || memcmp(p + n - 4, "\r\n\r\n", 4) != 0) return false;
  const size_t end = n - 4;
  // One head, whole: no CRLFCRLF before the last (scanRequest stops at the first), no odd bytes.
  for (size_t i = 0; i < end; i++) {
    uint8_t c = p[i];
    if (c != '\t' && c != '\r' && c != '\n' && (c < 0x20 || c > 0x7e)) return false;
    if (c == '\r' && i + 3 < n && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n' && i < end) return false;
  }
  // The request line: METHOD SP /target SP HTTP/1.1 (REQUEST_LINE, FAST_METHODS).
  const uint8_t* line_end = static_cast<const uint8_t*>(memmem(p, end, "\r\n", 2));
  size_t first = line_end ? size_t(line_end - p) : end;
  size_t m = 0;
  while (m < first && p[m] >= 'A' && p[m] <= 'Z') m++;
  if (m == 0 || m >= first || p[m] != ' ') return false;
  static const char* const kMethods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
  bool known = false;
  for (const char* k : kMethods) known = known || (strlen(k) == m && memcmp(p, k, m) == 0);
  if (!known) return false;
  static const char kVersion[] = " HTTP/1.1";
  const size_t vlen = sizeof(kVersion) - 1;
  if (first < m + 2 + vlen || memcmp(p + first - vlen, kVersion, vlen) != 0 || p[m + 1] != '/') return false;
  const size_t path_at = m + 1, path_len = first - vlen - path_at;
  for (size_t i = path_at; i < path_at + path_len; i++)
    if (p[i] < 0x21 || p[i] > 0x7e) return false;
  std::string head(reinterpret_cast<const char*>(p), first);
  head += "\r\n";
  std::string xff;
  bool has_xff = false, has_host = false;
  size_t at = first;
  while (at < end) {
    at += 2;  // the CRLF before this line
    const uint8_t* next = static_cast<const uint8_t*>(memmem(p + at, end - at, "\r\n", 2));
    size_t stop = next ? size_t(next - p) : end;
    const uint8_t* line = p + at;
    size_t len = stop - at;
    at = stop;
    const uint8_t* colon = static_cast<const uint8_t*>(memchr(line, ':', len));
    if (!colon || colon == line) return false;
    if (memchr(line, '\r', len) || memchr(line, '\n', len)) return false;
    size_t name_len = size_t(colon - line);
    for (size_t i = 0; i < name_len; i++)
      if (!TChar(line[i])) return false;
    // The value, trimmed (only tabs and spaces are whitespace here: the odd bytes are out).
    const uint8_t* v = colon + 1;
    size_t vl = len - name_len - 1;
    while (vl > 0 && (v[0] == ' ' || v[0] == '\t')) v++, vl--;
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
    if (IsWord(line, name_len, "upgrade") || IsWord(line, name_len, "http2-settings") || IsWord(line, name_len, "expect") ||
        IsWord(line, name_len, "transfer-encoding"))
      return false;
    if (IsWord(line, name_len, "host")) {
      if (has_host) return false;
      has_host = true;
      host->assign(reinterpret_cast<const char*>(v), vl);
    } else if (IsWord(line, name_len, "content-length")) {
      // Only a length of 0 (1 to 10 digits, as scanRequest takes them): a body is JS's.
      if (vl == 0 || vl > 10) return false;
      for (size_t i = 0; i < vl; i++)
        if (v[i] != '0') return false;
    } else if (IsWord(line, name_len, "x-forwarded-for")) {
      if (has_xff) xff += ", ";
      has_xff = true;
      xff.append(reinterpret_cast<const char*>(v), vl);
      continue;
    } else if (IsWord(line, name_len, "connection")) {
      if (!IsWord(v, vl, "keep-alive")) return false;
    }
    static const char* const kDropped[] = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "proxy-authorization", "proxy-authenticate", "x-forwarded-proto"};
    bool dropped = false;
    for (const char* d : kDropped) dropped = dropped || IsWord(line, name_len, d);
    if (!dropped) {
      head.append(reinterpret_cast<const char*>(line), len);
      head += "\r\n";
    }
  }
  if (!has_host || host->size() > 0xffff || path_len > 0xffff) return false;
  head += "X-Forwarded-For: ";
  head += xff.empty() ? client : xff + ", " + client;
  head += "\r\nX-Forwarded-Proto: http\r\n\r\n";
  // DATA frame [0x00][u32] around the HEAD record [0x01][u32][u32 body length 0][u16 host][u16 path][u8 method][head].
  const size_t record = 4 + 2 + host->size() + 2 + path_len + 1 + m + head.size();
  frame.clear();
  frame.resize(10);
  frame[0] = 0x00;
  PutU32(frame, 1, uint32_t(5 + record));
  frame[5] = 0x01;
  PutU32(frame, 6, uint32_t(record));
  frame.insert(frame.end(), 4, 0);
  PushU16(frame, host->size());
  frame.insert(frame.end(), host->begin(), host->end());
  PushU16(frame, path_len);
  frame.insert(frame.end(), p + path_at, p + path_at + path_len);
  frame.push_back(uint8_t(m));
  frame.insert(frame.end(), p, p + m);
  frame.insert(frame.end(), head.begin(), head.end());
  *head_method = m == 4 && memcmp(p, "HEAD", 4) == 0;
  return true;
}


// ------------------------------------------------------------------ ChunkCheck (ChunkedBody)

namespace {
constexpr uint32_t kMaxSizeDigits = 8;   // protocol/http1.ts MAX_SIZE_DIGITS
constexpr uint32_t kMaxExtensions = 256; // MAX_EXTENSIONS
const char* const kFraming[] = {"content-length", "transfer-encoding", "host", "connection", "te", "trailer", "upgrade", "expect", "keep-alive"};
}  // namespace

bool ChunkCheck::Restore(const double* s, size_t n) {
  if (n < 5 || !(s[0] >= 0 && s[0] <= kDataLf) || !(s[1] >= 0 && s[1] <= 4294967295.0) || !(s[2] >= 0 && s[2] <= kMaxSizeDigits) ||
      !(s[3] >= 0 && s[3] <= kMaxExtensions) || !(s[4] >= 0 && s[4] <= kMaxExtensions))
    return false;
  state_ = State(int(s[0]));
  left_ = uint64_t(s[1]);
  digits_ = uint32_t(s[2]);
  ext_ = uint32_t(s[3]);
  ext_bytes_ = uint32_t(s[4]);
  trailer_bytes_ = 0;
  name_.clear();
  error_ = "";
  return true;
}

long ChunkCheck::Feed(const uint8_t* data, size_t n) {
  size_t off = 0;
  while (off < n && state_ != kDone) {
    uint8_t c = data[off];
    // The trailer states take one byte each, counted after it is checked (ChunkedBody's #trailer).
    bool trailer = state_ >= kTrailerStart;
    switch (state_) {
      case kSize: {
        int h = Hex(c);
        if (h >= 0 && digits_ < kMaxSizeDigits) {
          left_ = left_ * 16 + uint64_t(h);
          digits_++;
        } else if (c == '\r' && digits_ > 0) {
          state_ = kSizeLf;
        } else if (c == ';' && digits_ > 0) {
          state_ = kExtName;
          ext_ = 0;
        } else {
          return Fail("chunked body: a chunk size line the fast path does not take");
        }
        off++;
        break;
      }
      case kExtName:
      case kExtValue:
        if (++ext_bytes_ > kMaxExtensions) return Fail("chunked body: a chunk extension (too long) the fast path does not take");
        if (TChar(c)) {
          ext_++;
        } else if (ext_ == 0) {
          return Fail("chunked body: a chunk extension the fast path does not take");
        } else if (c == '\r') {
          state_ = kSizeLf;
        } else if (c == ';') {
          state_ = kExtName;
          ext_ = 0;
        } else if (c == '=' && state_ == kExtName) {
          state_ = kExtValue;
          ext_ = 0;
        } else {
          return Fail("chunked body: a chunk extension the fast path does not take");
        }
        off++;
        break;
      case kSizeLf:
        if (c != '\n') return Fail("chunked body: a chunk size line the fast path does not take");
        off++;
        digits_ = 0;
        ext_bytes_ = 0;
        state_ = left_ == 0 ? kTrailerStart : kData;
        break;
      case kData: {
        size_t k = size_t(std::min<uint64_t>(left_, n - off));
        off += k;
        left_ -= k;
        if (left_ == 0) state_ = kDataCr;
        break;
      }
      case kDataCr:
      case kDataLf:
        if (c != (state_ == kDataCr ? '\r' : '\n')) return Fail("chunked body: the end of a chunk the fast path does not take");
        off++;
        state_ = state_ == kDataCr ? kDataLf : kSize;
        break;
      case kTrailerStart:
        if (c == '\r') {
          state_ = kEndLf;
        } else if (TChar(c)) {
          state_ = kTrailerName;
          name_.assign(1, char(Lower(c)));
        } else {
          return Fail("chunked body: a trailer field the fast path does not take");
        }
        break;
      case kTrailerName:
        if (c == ':') {
          for (const char* f : kFraming) {
            if (name_ == f) return Fail("chunked body: a framing field in the trailers the fast path does not take");
          }
          state_ = kTrailerValue;
        } else if (TChar(c)) {
          name_.push_back(char(Lower(c)));
        } else {
          return Fail("chunked body: a trailer field the fast path does not take");
        }
        break;
      case kTrailerValue:
        if (c == '\r') {
          state_ = kTrailerLf;
        } else if (c != 0x09 && (c < 0x20 || c > 0x7e)) {
          return Fail("chunked body: a trailer field the fast path does not take");
        }
        break;
      case kTrailerLf:
      case kEndLf:
        if (c != '\n') return Fail("chunked body: a trailer field the fast path does not take");
        state_ = state_ == kEndLf ? kDone : kTrailerStart;
        break;
      case kDone:
        break;
    }
    if (trailer) {
      if (++trailer_bytes_ > kMaxFastHead) return Fail("chunked body: the trailer section (too large) the fast path does not take");
      off++;
    }
  }
  return long(off);
}

namespace {

// scanPlainRequest(head, client) → the DATA frame (HEAD record) the edge's reader would write, or
// undefined: the scanner on its own, for the test that compares it with scanRequest + encodeHeadRecord.
Napi::Value ScanPlainRequestJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ByteView b;
  if (!GetBytes(info[0], &b)) throw Napi::TypeError::New(env, "scanPlainRequest: a buffer expected");
  std::string client = info[1].As<Napi::String>().Utf8Value();
  std::vector<uint8_t> frame;
  std::string host;
  bool head_method = false;
  if (!ScanPlainRequest(b.data, b.length, client, frame, &host, &head_method)) return env.Undefined();
  return Napi::Buffer<uint8_t>::Copy(env, frame.data(), frame.size());
}


// checkChunked(chunks, state) → what ChunkCheck makes of `chunks` fed one by one from `state`
// (ChunkedBody.handOver's numbers): the bytes of each that are body, done, or the error. For the
// test that compares it with ChunkedBody.
Napi::Value CheckChunkedJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array chunks = info[0].As<Napi::Array>();
  Napi::Array st = info[1].As<Napi::Array>();
  double state[5];
  for (uint32_t i = 0; i < 5; i++) state[i] = i < st.Length() ? st.Get(i).As<Napi::Number>().DoubleValue() : -1;
  ChunkCheck check;
  Napi::Object out = Napi::Object::New(env);
  if (!check.Restore(state, 5)) throw Napi::TypeError::New(env, "checkChunked: not a state ChunkedBody hands over");
  Napi::Array used = Napi::Array::New(env);
  for (uint32_t i = 0; i < chunks.Length(); i++) {
    ByteView b;
    if (!GetBytes(chunks.Get(i), &b)) throw Napi::TypeError::New(env, "checkChunked: buffers expected");
    long n = check.Feed(b.data, b.length);
    if (n < 0) {
      out.Set("error", Napi::String::New(env, check.error()));
      break;
    }
    used.Set(i, Napi::Number::New(env, double(n)));
    if (check.done()) break;
  }
  out.Set("used", used);
  out.Set("done", Napi::Boolean::New(env, check.done()));
  return out;
}
}  // namespace

void InitHttp1Answer(Napi::Env env, Napi::Object exports) {
  exports.Set("frameAnswer", Napi::Function::New(env, FrameAnswer, "frameAnswer"));
  exports.Set("answerStatus", Napi::Function::New(env, AnswerStatusJs, "answerStatus"));
  exports.Set("closingAnswerWhole", Napi::Function::New(env, ClosingAnswerWholeJs, "closingAnswerWhole"));
  exports.Set("scanPlainRequest", Napi::Function::New(env, ScanPlainRequestJs, "scanPlainRequest"));
  exports.Set("checkChunked", Napi::Function::New(env, CheckChunkedJs, "checkChunked"));
}

}  // namespace oxy
