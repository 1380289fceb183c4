// The edge's answers written to its HTTP/1 client without JS (docs/decisions.md "The edge's HTTP/1
// path pumped natively (session 9)"): while JS armed a stream's pump for an answer, the
// connector's DATA frames are framed as that answer (AnswerFramer: where it ends, the head the
// edge rewrites) and written to the client socket at the turn's flush, one write per turn; JS keeps
// reading the socket (the pump writes to a duplicate of its fd, watched for writability only when
// the kernel's buffer was full). The answer's end is reported once every byte of it was written,
// lazily unless JS asked for it at once or the connection closes after it; JS can read it from
// the shared state sooner (the client's next request). Anything but DATA (END, an unknown frame,
// the FIN) and every byte between answers reach JS as the stream's bytes, after the pumped ones.
// Backpressure: above kStreamHighWater bytes unwritten the stream's credit is held back (a client
// that stops reading stops the connector), and given back below half of it.
// An answer after which the connection closes (kAnsClose, or the client's FIN in: kAnsEnded) is
// followed by the edge's FIN in the turn its last byte is written (AnswerRelease), not a turn later
// when JS ends the socket: the client finds the FIN with the answer and does not close first (and
// keep the TIME_WAIT). OXY_EDGE_ANSWER_FIN=0: JS's end only.
#include "quic-core.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace oxy {
namespace quic {

namespace {
constexpr size_t kHeader = 5;
constexpr uint8_t kFramingVersion = 0x01;
// A request body's reads: 64 KiB a recv (as Node's), up to 16 a wake-up while the stream's unsent
// bytes stay under kStreamHighWater; a read of at least kBodyKeep bytes becomes the stream's chunk
// as it is (no copy), a smaller one is copied out.
constexpr size_t kBodyRead = 64 * 1024;
constexpr int kBodyReadsPerWake = 16;
constexpr size_t kBodyKeep = 16 * 1024;

bool AnswerFins() {
  static const bool on = EnvSwitchOn("OXY_EDGE_ANSWER_FIN");
  return on;
}

// The whole answer in `out` is the connection's last (AnswerRelease sends the FIN behind it).
bool ClosesAfter(const AnswerPump* p) { return p->done_pending && AnswerFins() && (p->state[kAnsClose] != 0 || p->state[kAnsEnded] != 0); }

uint32_t Be32(const uint8_t* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]); }
void PutBe32(uint8_t* p, uint32_t v) {
  p[0] = uint8_t(v >> 24);
  p[1] = uint8_t(v >> 16);
  p[2] = uint8_t(v >> 8);
  p[3] = uint8_t(v);
}
}  // namespace

bool Conn::AttachAnswers(int64_t id, int socket_fd, Napi::Float64Array state, const std::string& keep_alive, const std::string& extra) {
  Stream* s = Usable() ? Find(id) : nullptr;
  if (!s || state.ElementLength() < kAnsSlots) return false;
  CloseAnswers(id);
  int fd = fcntl(socket_fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return false;
  auto p = std::make_unique<AnswerPump>();
  p->poll = new uv_poll_t();
  if (uv_poll_init(loop_, p->poll, fd) != 0) {
    delete p->poll;
    close(fd);
    return false;
  }
  p->conn = this;
  p->id = id;
  p->fd = fd;
  p->poll->data = p.get();
  p->state_ref = Napi::Persistent(state.As<Napi::Object>());
  p->state = state.Data();
  p->keep_alive = keep_alive;
  p->extra = extra;
  answers_[id] = std::move(p);
  return true;
}

bool Conn::ArmAnswer(int64_t id, bool head_request, bool close, bool preamble) {
  auto it = answers_.find(id);
  if (it == answers_.end()) return false;
  AnswerPump* p = it->second.get();
  if (p->failed || p->armed || p->holding || p->done_pending || p->payload_left > 0 || p->header_fill > 0) return false;
  p->armed = true;
  p->preamble = preamble;
  p->started = false;
  p->framer.Start(head_request, close, &p->keep_alive, &p->extra);
  p->state[kAnsUrgent] = 0;
  return true;
}

void Conn::CloseAnswers(int64_t id) {
  auto it = answers_.find(id);
  if (it == answers_.end()) return;
  AnswerPump* p = it->second.get();
  uv_poll_stop(p->poll);
  p->poll->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(p->poll), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  close(p->fd);
  if (Stream* s = Find(id)) {
    if (s->answer_paused) {
      s->answer_paused = false;
      if (!s->read_paused && s->owed_credit > 0 && Usable()) {
        ngtcp2_conn_extend_max_stream_offset(conn_, id, s->owed_credit);
        s->owed_credit = 0;
        Dirty();
      }
    }
  }
  answers_.erase(it);  // answer_out_ may still name it: FlushAnswers skips ids it does not find
}

void Conn::CloseAllAnswers() {
  while (!answers_.empty()) CloseAnswers(answers_.begin()->first);
  answer_out_.clear();
}

// A delivery of stream `s`: true when the pump took it (framed it, or holds it for JS behind the
// client's bytes); false: JS reads it as before.
bool Conn::AnswerData(Stream* s, const uint8_t* data, size_t len, bool fin) {
  auto it = answers_.find(s->id);
  if (it == answers_.end()) return false;
  AnswerPump* p = it->second.get();
  if (p->failed) return true;  // JS is tearing the stream down
  if (p->holding || p->done_pending) {
    p->holding = true;
    p->held.insert(p->held.end(), data, data + len);
    p->held_fin = p->held_fin || fin;
    return true;
  }
  if (!p->armed) {
    // The stream's bytes go to JS: it reads the client again before anything else is forwarded.
    if (p->reading) AnswerReadBack(p);
    return false;
  }
  AnswerFrames(p, s, data, len, fin);
  if (!p->failed) {
    if (p->out.size() - p->out_off > kStreamHighWater) s->answer_paused = true;
    if (p->out_off < p->out.size() && !p->queued) {
      p->queued = true;
      answer_out_.push_back(p->id);
      Dirty();
    }
    if ((p->holding || p->done_pending) && !p->queued) AnswerRelease(p);  // nothing to write first
  }
  return true;
}

// stream.ts framing (PREAMBLE, DATA [0x00][u32 n], END [0x01][0]) around the answer's bytes.
void Conn::AnswerFrames(AnswerPump* p, Stream* s, const uint8_t* data, size_t len, bool fin) {
  size_t off = 0;
  if (p->preamble && len > 0) {
    p->preamble = false;
    if (data[0] != kFramingVersion) {
      AnswerBroken(p, "QUIC stream framing version not supported", false);
      return;
    }
    off = 1;
  }
  while (off < len && p->armed) {
    if (p->payload_left > 0) {
      size_t k = size_t(std::min<uint64_t>(p->payload_left, len - off));
      if (!p->started) {
        p->started = true;
        p->state[kAnsStarted] += 1;
      }
      long used = p->framer.Feed(data + off, k, p->out);
      if (used < 0) {
        AnswerBroken(p, p->framer.error(), p->framer.untouched());
        return;
      }
      off += k;
      p->payload_left -= k;
      if (p->framer.done()) {
        if (size_t(used) < k || p->payload_left > 0) {
          AnswerBroken(p, "bytes past the end of a response", false);
          return;
        }
        p->armed = false;
        p->done_pending = true;
      }
      continue;
    }
    size_t take = std::min(kHeader - p->header_fill, len - off);
    memcpy(p->header + p->header_fill, data + off, take);
    p->header_fill += take;
    off += take;
    if (p->header_fill < kHeader) break;
    uint32_t length = Be32(p->header + 1);
    if (p->header[0] == kFrameData && length >= 1 && length <= kMaxFramePayload) {
      p->header_fill = 0;
      p->payload_left = length;
      continue;
    }
    // END (or what JS's parser will refuse): JS reads it, after the answer's bytes. The stream's
    // end delimits an answer that waited for it.
    if (p->header[0] == kFrameEnd && length == 0 && p->framer.End()) p->done_pending = true;
    p->armed = false;
    p->holding = true;
    p->held.insert(p->held.end(), p->header, p->header + kHeader);
    p->header_fill = 0;
  }
  if (off < len) {
    p->holding = true;
    p->held.insert(p->held.end(), data + off, data + len);
  }
  if (fin) {
    // A FIN without END, or behind it: JS's stream sees it.
    p->armed = false;
    p->holding = true;
    p->held_fin = true;
  }
  if (p->done_pending) {
    p->state[kAnsStatus] = p->framer.status();
    p->state[kAnsClose] = p->framer.close() ? 1 : 0;
  }
}

// kAnswerBroken's payload: 1 when nothing of the answer was framed (JS may answer the 502 page
// instead; 2: so, and the request was a HEAD), else 0; then the reason.
void Conn::AnswerBroken(AnswerPump* p, const char* why, bool untouched) {
  std::string payload(1, untouched ? (p->framer.head_request() ? '\2' : '\1') : '\0');
  payload += why;
  AnswerFail(p, kAnswerBroken, reinterpret_cast<const uint8_t*>(payload.data()), payload.size());
}

void Conn::AnswerFail(AnswerPump* p, uint8_t what, const uint8_t* data, size_t len) {
  if (p->failed) return;
  p->failed = true;
  p->armed = false;
  p->done_pending = false;
  p->holding = false;
  p->out.clear();
  p->out_off = 0;
  p->held.clear();
  AnswerWatch(p);
  Event(kEvPump, what, p->id, data, len);
}

void Conn::FlushAnswers() {
  std::vector<int64_t> ids;
  ids.swap(answer_out_);
  for (int64_t id : ids) {
    auto it = answers_.find(id);
    if (it == answers_.end()) continue;
    it->second->queued = false;
    AnswerWriteOut(it->second.get());
  }
}

// Called in the flush (before packets are written: credit given back here goes in them) or on
// the socket's writability (OnAnswerPoll schedules the flush that delivers the records).
void Conn::AnswerWriteOut(AnswerPump* p) {
  if (p->failed) return;
  // The connection's last bytes wait in the socket (MSG_MORE) for the FIN, which the shutdown
  // sends on them: one segment, so the client cannot read the answer before the FIN is in.
  const bool last = ClosesAfter(p);
  while (p->out_off < p->out.size()) {
    const uint8_t* from = p->out.data() + p->out_off;
    const size_t len = p->out.size() - p->out_off;
    ssize_t n = last ? send(p->fd, from, len, MSG_MORE) : write(p->fd, from, len);
    if (n >= 0) {
      p->out_off += size_t(n);
      p->state[kAnsWritten] += double(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      double e = double(errno);
      AnswerFail(p, kAnswerFailed, reinterpret_cast<const uint8_t*>(&e), 8);
      return;
    }
    break;
  }
  size_t unwritten = p->out.size() - p->out_off;
  if (unwritten == 0) {
    p->out.clear();
    p->out_off = 0;
  } else if (p->out_off > (1 << 20)) {
    p->out.erase(p->out.begin(), p->out.begin() + long(p->out_off));
    p->out_off = 0;
  }
  if (unwritten <= kStreamHighWater / 2) {
    Stream* s = Find(p->id);
    if (s && s->answer_paused) {
      s->answer_paused = false;
      if (!s->read_paused && s->owed_credit > 0 && Usable()) {
        ngtcp2_conn_extend_max_stream_offset(conn_, p->id, s->owed_credit);
        s->owed_credit = 0;
      }
    }
  }
  if (unwritten == 0) AnswerRelease(p);
  AnswerWatch(p);
}

// Every pumped byte is written: the answer's end, then what waited for JS, in that order.
void Conn::AnswerRelease(AnswerPump* p) {
  // The connection closes after it: the FIN now, behind the answer's last byte. JS's end of the
  // socket follows (its shutdown finds the FIN sent; libuv's error for it is not read).
  if (ClosesAfter(p) && p->out_off == p->out.size()) shutdown(p->fd, SHUT_WR);
  if (p->done_pending && p->own) {
    // A request read here: JS counts it from the record (status, bytes), lazily unless the
    // connection closes after it or JS is to take the socket back.
    p->done_pending = false;
    p->own = false;
    const double bytes[3] = {p->state[kAnsStatus], double(p->own_head) + p->state[kAnsWritten] - p->state[kAnsOwnMark], p->state[kAnsClose]};
    // The connection closes after it: nothing more is read here (JS ends it).
    if (p->state[kAnsClose] != 0 && p->reading) AnswerReadBack(p);
    p->in.erase(p->in.begin(), p->in.begin() + ptrdiff_t(p->own_head));
    p->own_head = 0;
    p->state[kAnsOwnDone] += 1;
    p->state[kAnsActive] = double(Now() / 1000000);
    const uint8_t* payload = reinterpret_cast<const uint8_t*>(bytes);
    if (p->state[kAnsClose] != 0 || p->holding || p->back_sent || p->state[kAnsUrgent] != 0) {
      Event(kEvPump, kAnswerOwnDone, p->id, payload, sizeof(bytes));
    } else if (!host_->EmitLazyCount(this, kEvPump, kAnswerOwnCount, p->id, bytes[0], &p->own_count, bytes[1])) {
      // Counted: one record per status and batch for all of a connection's answers (the counters, the traffic).
      host_->EmitLazy(this, kEvPump, kAnswerOwnDone, p->id, payload, sizeof(bytes));
    }
  } else if (p->done_pending) {
    p->done_pending = false;
    p->state[kAnsDone] += 1;
    if (p->state[kAnsClose] != 0 || p->state[kAnsUrgent] != 0 || p->holding) {
      Event(kEvPump, kAnswerDone, p->id, nullptr, 0);
    } else {
      host_->EmitLazy(this, kEvPump, kAnswerDone, p->id, nullptr, 0);
    }
  }
  if (p->holding) {
    if (p->reading) AnswerReadBack(p);
    p->holding = false;
    p->state[kAnsHeld] = 1;
    if (Stream* s = Find(p->id)) DataEvent(s, p->held_fin, p->held.data(), p->held.size());
    else Event(kEvData, p->held_fin ? 1 : 0, p->id, p->held.data(), p->held.size());
    p->held.clear();
    p->held_fin = false;
  }
}

void Conn::AnswerWatch(AnswerPump* p) {
  int events = !p->failed && p->out_off < p->out.size() ? UV_WRITABLE : 0;
  if (!p->failed && p->reading && !p->back_sent) events |= UV_READABLE;
  if (!p->failed && p->body) {
    Stream* s = Find(p->id);
    if (s && !s->pump_blocked) events |= UV_READABLE;
  }
  if (events == p->events) return;
  p->events = events;
  // With a read, the client's FIN asked for too (UV_DISCONNECT: EPOLLRDHUP), as fd-set's watches do.
  if (events) uv_poll_start(p->poll, (events & UV_READABLE) && FdWatchHangUps() ? events | UV_DISCONNECT : events, &Conn::OnAnswerPoll);
  else uv_poll_stop(p->poll);
}

void Conn::OnAnswerPoll(uv_poll_t* handle, int status, int events) {
  auto* p = static_cast<AnswerPump*>(handle->data);
  if (!p) return;
  Conn* self = p->conn;
  if (status < 0) {
    // libuv stopped the poll: the write below reads the error, or JS's handle does.
    p->events = 0;
    events = UV_WRITABLE | (p->reading || p->body ? UV_READABLE : 0);
  }
  if (events & UV_WRITABLE) self->AnswerWriteOut(p);
  if ((events & UV_READABLE) && p->body) self->AnswerBodyRead(p);
  else if (events & UV_READABLE) self->AnswerRead(p, events & UV_DISCONNECT);
  self->Dirty();  // a flush (credit given back, a request forwarded), and with it the batch for JS
}

// ------------------------------------------------------------------ the client's reads

bool Conn::ReadStart(int64_t id, const std::string& host, const std::string& client) {
  auto it = answers_.find(id);
  Stream* s = Usable() ? Find(id) : nullptr;
  if (it == answers_.end() || !s || s->write_closed || s->fin) return false;
  AnswerPump* p = it->second.get();
  if (p->failed || p->reading || p->body || p->armed || p->holding || p->done_pending || p->payload_left > 0 || p->header_fill > 0 ||
      p->state[kAnsHeld] != 0)
    return false;
  p->reading = true;
  p->back_sent = false;
  p->host = host;
  p->client = client;
  p->in.clear();
  p->own_head = 0;
  p->own = false;
  AnswerWatch(p);
  return true;
}

std::vector<uint8_t> Conn::ReadStop(int64_t id) {
  std::vector<uint8_t> back;
  auto it = answers_.find(id);
  if (it == answers_.end()) return back;
  AnswerPump* p = it->second.get();
  // A request in flight becomes JS's: its answer's end counts in kAnsDone, as one JS armed.
  p->state[kAnsBackHead] = p->own ? double(p->own_head) : 0;
  p->own = false;
  p->own_head = 0;
  back.swap(p->in);
  p->reading = false;
  p->back_sent = false;
  p->body = false;
  AnswerWatch(p);
  return back;
}

// ------------------------------------------------------------------ the request body's reads

bool Conn::BodyStart(int64_t id, uint64_t left, const double* chunk_state, size_t chunk_state_len) {
  auto it = answers_.find(id);
  Stream* s = Usable() ? Find(id) : nullptr;
  if (it == answers_.end() || !s || s->write_closed || s->fin) return false;
  AnswerPump* p = it->second.get();
  if (p->failed || p->reading || p->body || p->own) return false;
  if (chunk_state) {
    if (!p->chunks.Restore(chunk_state, chunk_state_len)) return false;
  } else if (left == 0) {
    return false;
  }
  p->body = true;
  p->body_chunked = chunk_state != nullptr;
  p->body_left = left;
  p->back_sent = false;
  p->in.clear();
  p->state[kAnsBodyDone] = 0;
  AnswerWatch(p);
  return true;
}

void Conn::AnswerBodyEnd(AnswerPump* p, uint8_t outcome) {
  p->body = false;
  if (outcome == kBodyWhole) p->state[kAnsBodyDone] = 1;
  AnswerWatch(p);
  const double why = outcome;
  Event(kEvPump, kBodyEnd, p->id, reinterpret_cast<const uint8_t*>(&why), sizeof why);
}

// The client's bytes, as BODY records each in a DATA frame of its own, straight into the stream
// (recv'd behind room for both headers: no copy for a full read); the bytes after the body's end
// wait for JS (ReadStop).
void Conn::AnswerBodyRead(AnswerPump* p) {
  Stream* s = Usable() ? Find(p->id) : nullptr;
  if (!s || s->write_closed || s->fin) return AnswerBodyEnd(p, kBodyStream);
  constexpr size_t hdr = 2 * kHeader;
  for (int i = 0; i < kBodyReadsPerWake && p->body; i++) {
    if (s->total - s->sent > kStreamHighWater) {
      s->pump_blocked = true;  // Advance resumes it (ResumePump) below half
      break;
    }
    if (!body_buf_) body_buf_.reset(new uint8_t[hdr + kBodyRead]);
    uint8_t* buf = body_buf_.get();
    ssize_t n = recv(p->fd, buf + hdr, kBodyRead, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n <= 0) {
      // The client's EOF or an error mid-body: JS ends the request (its handle reads the same).
      AnswerBodyEnd(p, kBodyClient);
      break;
    }
    p->state[kAnsRead] += double(n);
    size_t k;
    if (p->body_chunked) {
      long used = p->chunks.Feed(buf + hdr, size_t(n));
      if (used < 0) {
        AnswerBodyEnd(p, kBodyRefused);
        break;
      }
      k = size_t(used);
    } else {
      k = size_t(std::min<uint64_t>(p->body_left, uint64_t(n)));
      p->body_left -= k;
    }
    bool whole = p->body_chunked ? p->chunks.done() : p->body_left == 0;
    // Bytes after the body: the next request's, JS's.
    if (size_t(n) > k) p->in.assign(buf + hdr + k, buf + hdr + size_t(n));
    if (k > 0) {
      buf[0] = kFrameData;
      PutBe32(buf + 1, uint32_t(kHeader + k));
      buf[kHeader] = kRecordBody;
      PutBe32(buf + kHeader + 1, uint32_t(k));
      Chunk c{nullptr, hdr + k};
      if (k >= kBodyKeep) {
        c.data = std::move(body_buf_);
      } else {
        c.data.reset(new uint8_t[hdr + k]);
        memcpy(c.data.get(), buf, hdr + k);
      }
      s->chunks.push_back(std::move(c));
      s->total += hdr + k;
      p->state[kAnsBodyRead] += double(k);
    }
    if (whole) {
      AnswerBodyEnd(p, kBodyWhole);
      break;
    }
    if (size_t(n) < kBodyRead) break;  // likely drained: the poll says when there is more
  }
  Enqueue(s);
  AnswerWatch(p);
}

void Conn::AnswerReadBack(AnswerPump* p) {
  if (p->back_sent) return;
  p->back_sent = true;
  AnswerWatch(p);
  Event(kEvPump, kReadBack, p->id, nullptr, 0);
}

void Conn::AnswerRead(AnswerPump* p, bool hang_up) {
  if (!p->reading || p->back_sent || p->failed) return;
  // One read a wake-up, as large as a plain head may be: what is not one goes back to JS whole
  // (an upload's body is not read here beyond it).
  uint8_t buf[16 * 1024];
  ssize_t n;
  do {
    n = recv(p->fd, buf, sizeof(buf), 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
  if (n <= 0) {
    // The client's EOF (JS's handle reads it again) or an error (JS's handle then reads the EOF).
    // After its EOF nothing of the client's follows the request in flight: the connection closes
    // after its answer.
    if (n == 0) p->state[kAnsEnded] = 1;
    AnswerReadBack(p);
    return;
  }
  p->in.insert(p->in.end(), buf, buf + n);
  p->state[kAnsRead] += double(n);
  if (p->in.size() == p->own_head) return;
  // Bytes behind an answer in flight (pipelined), or while the stream's bytes go to JS: JS's.
  Stream* s = Usable() ? Find(p->id) : nullptr;
  if (p->own_head > 0 || p->armed || p->holding || p->done_pending || p->out_off < p->out.size() || p->payload_left > 0 || p->header_fill > 0 ||
      p->state[kAnsHeld] != 0 || !s || s->write_closed || s->fin) {
    AnswerReadBack(p);
    return;
  }
  std::string host;
  bool head_method = false;
  if (!ScanPlainRequest(p->in.data(), p->in.size(), p->client, read_frame_, &host, &head_method) || host != p->host) {
    AnswerReadBack(p);
    return;
  }
  // Armed before the head goes: every byte of its answer is the pump's.
  p->armed = true;
  p->preamble = false;
  p->started = false;
  p->framer.Start(head_method, false, &p->keep_alive, &p->extra);
  p->state[kAnsUrgent] = 0;
  p->own = true;
  p->own_head = p->in.size();
  p->state[kAnsOwn] += 1;
  p->state[kAnsOwnAt] = double(Now() / 1000000);
  p->state[kAnsOwnMark] = p->state[kAnsWritten];
  Write(p->id, read_frame_.data(), read_frame_.size(), false);
  // The client's FIN came with its request (it half-closed after it): its EOF read now, not at the
  // poll's next wake-up.
  if (hang_up && size_t(n) < sizeof(buf)) AnswerRead(p);
}

}  // namespace quic
}  // namespace oxy
