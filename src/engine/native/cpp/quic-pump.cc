// A QUIC stream pumped to and from a TCP socket without JS (docs/decisions.md "QUIC streams
// pumped natively"): the connector's origin socket of an `http1` stream. The fd's bytes become
// the stream's DATA frames (transport/quic/framing.ts) in the readable callback and leave with the
// turn's flush; JS's bytes for the fd (request heads and bodies) are written at the start of the
// flush, one write per turn. Backpressure both ways: reads stop while the stream has more than
// kStreamHighWater unsent (the peer's flow control), JS pauses its stream while the fd's bytes are
// above it (kPumpDrain). JS hears, per request, the answer's status (a lazy record) and, once,
// the fd's end; it closes the pump.
#include "quic-core.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace oxy {
namespace quic {

namespace {
constexpr size_t kFrameHeader = 5;
constexpr size_t kPumpRead = 64 * 1024;
constexpr int kReadsPerWake = 16;
// A read at least this long becomes the chunk itself (no copy); a shorter one is copied into a
// chunk of its size, so a small answer does not hold 64 KiB until it is acknowledged.
constexpr size_t kKeepRead = 16 * 1024;

// "HTTP/1.x NNN" at the start of an answer, else 0.
double StatusOf(const uint8_t* p, size_t n) {
  if (n < 12 || memcmp(p, "HTTP/1.", 7) != 0 || p[8] != ' ') return 0;
  int v = 0;
  for (int i = 9; i < 12; i++) {
    if (p[i] < '0' || p[i] > '9') return 0;
    v = v * 10 + (p[i] - '0');
  }
  return double(v);
}
}  // namespace

bool Conn::AttachPump(int64_t id, int socket_fd) {
  Stream* s = Usable() ? Find(id) : nullptr;
  if (!s || s->write_closed || s->fin) return false;
  ClosePump(id);
  // Our own descriptor: JS closes its socket (a close of one of two descriptors sends no FIN).
  int fd = fcntl(socket_fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return false;
  auto p = std::make_unique<Pump>();
  p->conn = this;
  p->id = id;
  p->fd = fd;
  p->poll = new uv_poll_t();
  if (uv_poll_init(loop_, p->poll, fd) != 0) {
    delete p->poll;
    close(fd);
    return false;
  }
  p->poll->data = p.get();
  Pump* raw = p.get();
  pumps_[id] = std::move(p);
  PumpWatch(raw);
  return true;
}

void Conn::ClosePump(int64_t id) {
  auto it = pumps_.find(id);
  if (it == pumps_.end()) return;
  Pump* p = it->second.get();
  uv_poll_stop(p->poll);
  p->poll->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(p->poll), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  close(p->fd);
  if (Stream* s = Find(id)) s->pump_blocked = false;
  pumps_.erase(it);  // pump_out_ may still name it: FlushPumps skips ids it does not find
}

void Conn::ArmPumpHeads(int64_t id) {
  auto it = pumps_.find(id);
  if (it != pumps_.end()) it->second->heads = true;
}

// Stream framing (framing.ts) DATA [0x00][u32 n] around http1 framing (protocol/http1.ts) HEAD
// [0x01][u32 n - 5]: the edge writes each HEAD as one frame, which mostly arrives in one piece.
bool Conn::PumpHead(int64_t id, const uint8_t* data, size_t len) {
  auto it = pumps_.find(id);
  if (it == pumps_.end() || !it->second->heads) return false;
  auto be32 = [](const uint8_t* p) { return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]); };
  if (len < 10 || data[0] != 0x00 || be32(data + 1) != len - 5 || data[5] != 0x01 || be32(data + 6) != len - 10) {
    it->second->heads = false;
    return false;
  }
  Event(kEvPump, kPumpHead, id, data + 10, len - 10);
  return true;
}

void Conn::ClosePumps() {
  while (!pumps_.empty()) ClosePump(pumps_.begin()->first);
  pump_out_.clear();
}

double Conn::PumpWrite(int64_t id, const uint8_t* data, size_t len, bool head) {
  auto it = pumps_.find(id);
  if (it == pumps_.end() || it->second->ended) return -1;
  Pump* p = it->second.get();
  if (head) p->answered = false;
  p->out.insert(p->out.end(), data, data + len);
  if (!p->queued) {
    p->queued = true;
    pump_out_.push_back(id);
    Dirty();
  }
  double pending = double(p->out.size() - p->out_off);
  if (pending > kStreamHighWater) p->want_drain = true;
  return pending;
}

void Conn::FlushPumps() {
  std::vector<int64_t> ids;
  ids.swap(pump_out_);
  for (int64_t id : ids) {
    auto it = pumps_.find(id);
    if (it == pumps_.end()) continue;
    it->second->queued = false;
    PumpWriteOut(it->second.get());
  }
}

void Conn::PumpWriteOut(Pump* p) {
  while (!p->ended && p->out_off < p->out.size()) {
    ssize_t n = write(p->fd, p->out.data() + p->out_off, p->out.size() - p->out_off);
    if (n >= 0) {
      p->out_off += size_t(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) PumpEnd(p, errno);
    break;
  }
  if (p->out_off == p->out.size()) {
    p->out.clear();
    p->out_off = 0;
  }
  if (p->want_drain && p->out.size() - p->out_off <= kStreamHighWater / 2) {
    p->want_drain = false;
    Event(kEvPump, kPumpDrain, p->id, nullptr, 0);
  }
  PumpWatch(p);
}

void Conn::PumpRead(Pump* p) {
  Stream* s = Find(p->id);
  if (!s || s->write_closed || s->fin || !Usable()) {
    // The stream takes no more: JS hears why from the stream and closes the pump.
    p->ended = true;
    PumpWatch(p);
    return;
  }
  for (int i = 0; i < kReadsPerWake && !p->ended; i++) {
    if (s->total - s->sent > kStreamHighWater) {
      s->pump_blocked = true;
      break;
    }
    if (!pump_buf_) pump_buf_.reset(new uint8_t[kFrameHeader + kPumpRead]);
    uint8_t* buf = pump_buf_.get();
    ssize_t n = read(p->fd, buf + kFrameHeader, kPumpRead);
    if (n > 0) {
      if (!p->answered) {
        p->answered = true;
        double status = StatusOf(buf + kFrameHeader, size_t(n));
        host_->EmitLazy(this, kEvPump, kPumpAnswer, p->id, reinterpret_cast<const uint8_t*>(&status), 8);
      }
      buf[0] = 0x00;  // DATA
      uint32_t be = htonl(uint32_t(n));
      memcpy(buf + 1, &be, 4);
      size_t len = kFrameHeader + size_t(n);
      Chunk c{nullptr, len};
      if (size_t(n) >= kKeepRead) {
        c.data = std::move(pump_buf_);  // the next read gets a fresh buffer
      } else {
        c.data.reset(new uint8_t[len]);
        memcpy(c.data.get(), buf, len);
      }
      s->chunks.push_back(std::move(c));
      s->total += len;
      if (size_t(n) < kPumpRead) break;  // likely drained: the poll says when there is more
      continue;
    }
    if (n == 0) {
      PumpEnd(p, 0);
    } else if (errno == EINTR) {
      continue;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
      PumpEnd(p, errno);
    }
    break;
  }
  Enqueue(s);
  PumpWatch(p);
}

void Conn::ResumePump(Stream* s) {
  s->pump_blocked = false;
  auto it = pumps_.find(s->id);
  if (it != pumps_.end()) PumpWatch(it->second.get());
}

void Conn::PumpEnd(Pump* p, int err) {
  if (p->ended) return;
  p->ended = true;
  p->out.clear();
  p->out_off = 0;
  double e = double(err);
  Event(kEvPump, kPumpEnd, p->id, reinterpret_cast<const uint8_t*>(&e), 8);
  Dirty();  // a flush, and with it the batch for JS
}

void Conn::PumpWatch(Pump* p) {
  int events = 0;
  if (!p->ended) {
    Stream* s = Find(p->id);
    if (p->out_off < p->out.size()) events |= UV_WRITABLE;
    if (s && !s->pump_blocked) events |= UV_READABLE;
  }
  if (events == p->events) return;
  p->events = events;
  if (events) uv_poll_start(p->poll, events, &Conn::OnPumpPoll);
  else uv_poll_stop(p->poll);
}

void Conn::OnPumpPoll(uv_poll_t* handle, int status, int events) {
  auto* p = static_cast<Pump*>(handle->data);
  if (!p) return;
  Conn* self = p->conn;
  // An error on the socket (libuv stopped the poll): the read or write below reads it (ECONNRESET...).
  if (status < 0) {
    p->events = 0;
    events = UV_READABLE | (p->out_off < p->out.size() ? UV_WRITABLE : 0);
  }
  if (events & UV_WRITABLE) self->PumpWriteOut(p);
  if ((events & UV_READABLE) && !p->ended) self->PumpRead(p);
}

}  // namespace quic
}  // namespace oxy
