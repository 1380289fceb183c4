// One QUIC connection on ngtcp2 0.12 + GnuTLS, shared by the addon's client (quicclient.cc:
// one connection, its own connected socket) and server (quicserver.cc: many connections on one
// pktinfo socket). The connection owns ngtcp2's state, the TLS session, its streams' unsent and
// unacknowledged bytes, its datagram queue and its timer; its host owns the socket, the packet
// batch being built and the event batch handed to JS. See docs/decisions.md "QUIC on ngtcp2".
//
// Event record (to JS): [u8 type][u8 flag][u16 0][u32 length][f64 stream id][length bytes].
#pragma once

#include "common.h"
#include "fd-set.h"
#include "http1-answer.h"

#include <gnutls/gnutls.h>
#include <ngtcp2/ngtcp2.h>
#include <ngtcp2/ngtcp2_crypto.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace oxy {
namespace quic {

enum EventType : uint8_t {
  kEvHandshake = 1,
  kEvData = 2,         // flag 1: FIN
  kEvReset = 3,        // payload f64 code
  kEvStopSending = 4,  // payload f64 code
  kEvWritable = 5,
  kEvStreamClosed = 6,
  kEvDatagram = 7,
  kEvStreamsAvailable = 8,
  kEvClosed = 9,  // flag: CloseKind; payload f64 code + reason
  kEvAnswered = 10,
  kEvSendError = 11,  // payload f64 errno
  kEvConn = 12,       // server: the records after this one are of connection `id`
  kEvPump = 13,       // flag: PumpEvent; payload f64 (status, errno)
  kEvDatagramRoom = 14,  // the largest DATAGRAM payload the path takes changed (PMTUD): payload f64 bytes
};

// What a stream's fd pump (quic-pump.cc) tells JS.
// Numbers are checked against native/quic.ts QuicPumpEvent (test/unit/native/quic-constants.test.ts).
enum PumpEvent : uint8_t {
  kPumpAnswer = 1,  // the fd's first bytes after a head: payload f64 status (0: not "HTTP/1.x NNN")
  kPumpEnd = 2,     // the fd is done (EOF: errno 0, or a read/write error): nothing more moves
  kPumpDrain = 3,   // the bytes JS wrote for the fd went below kStreamHighWater / 2
  kPumpHead = 4,    // a whole http1 HEAD record read off the stream: payload the record's payload
  // The edge's answer pumps (quic-answer.cc):
  kAnswerDone = 5,    // an answer is whole and written to the client: its figures are in the shared state
  kAnswerBroken = 6,  // the connector's bytes cannot be framed: payload u8 1 when nothing of the answer was framed (2: and a HEAD request), then the reason
  kAnswerFailed = 7,  // writing to the client failed: payload f64 errno
  kPumpShut = 8,      // a plain pump's fd took every byte for it and its write side is shut (ShutPump)
  kPumpFlowDone = 9,  // a flows pump's flow is over (both terminators crossed): the stream's records are JS's again
  // Heads the connector's pump wrote without JS (its route, Conn::PumpRoute):
  kPumpFastAnswer = 10, // lazy: such requests' answers began: payload f64 status (as kPumpAnswer), f64 count (1 if absent)
  kPumpFastHead = 11,   // before a kPumpEnd: the last such head (payload: u8 answered, then the HEAD record's payload)
  kPumpFastStart = 13,  // lazy: such heads were written: payload f64 0, f64 count
  // The connector's dials in the addon (Conn::Dial):
  kPumpDialed = 12,     // a Dial's connect finished (id: its token): payload f64 errno (0: connected)
  // A flows pump to start at the flow's ANSWER (AttachPump kPumpAtAnswer):
  kPumpFlowAnswered = 14, // lazy: the ANSWER was the OK one and the pump took the accepted socket: it runs
  kPumpEarlyError = 15,   // kPumpAtAnswerEarly: the accepted socket's first read failed: payload f64 errno
  // A stream whose OPENs come as events (AttachPump mode 3, the connector's): between flows, a whole
  // OPEN record read off the stream: payload its payload. What follows it waits (held) until a
  // flows pump is armed (ArmPumpHeads) or JS gives it back (ClosePump with no pump).
  kPumpFlowOpen = 16,
  // kPumpFlowOpen whose dial the addon made as it read the OPEN (Conn::AdmitOpen: JS admitted
  // these payload bytes before): payload f64 the Dial's token (kPumpDialed with it follows), then
  // the OPEN's payload. JS takes the token (its flow's dial) or closes it.
  kPumpFlowOpenDialed = 17,
  // kPumpFlowOpenDialed whose flows pump the addon attached and armed too (kPumpAtConnect, as JS's
  // attachPump and armPumpHeads would): the records after the OPEN are the pump's, and where the
  // connect finished inside it (a near host) the OK ANSWER and the request's DATA go at this turn's
  // flush. Payload as kPumpFlowOpenDialed; JS takes the pump (attachPump with the token) or closes it.
  kPumpFlowOpenPumped = 18,
  // The edge's reads of the client (quic-answer.cc, ReadStart):
  kAnswerOwnDone = 20, // the answer to a request read here is whole and written: payload f64 status, f64 bytes (request + answer)
  kReadBack = 21,      // reading stopped (bytes that are JS's, the client's EOF or error): JS takes the socket back (ReadStop)
  kAnswerOwnCount = 22, // lazy: answers to requests read here, whole and written, of one status: payload f64 status, f64 count, f64 bytes
  kBodyEnd = 23,        // the request body's reads here (BodyStart) stopped: payload f64 BodyOutcome; JS takes the socket back (ReadStop)
};

// The Float64Array an answer pump shares with JS (transport/types.ts ANSWER_STATE).
enum AnswerSlot : int {
  kAnsDone = 0,     // answers whole and written
  kAnsStatus = 1,   // the last whole answer's status
  kAnsClose = 2,    // 1: the connection closes after it
  kAnsWritten = 3,  // bytes written to the client
  kAnsStarted = 4,  // answers whose first byte came
  kAnsUrgent = 5,   // JS: report the next end at once, not with the next batch
  kAnsHeld = 6,     // bytes after an answer went to JS in a batch it has not read yet
  // The client's reads done here (ReadStart):
  kAnsOwn = 7,       // requests read and forwarded here (their answers count in kAnsStarted, not kAnsDone)
  kAnsOwnDone = 8,   // of them, answered whole (kAnswerOwnDone)
  kAnsOwnAt = 9,     // when the last of them was forwarded (ms, CLOCK_MONOTONIC)
  kAnsRead = 10,     // bytes read from the client here
  kAnsActive = 11,   // when the last answer to one of them was written whole (ms, CLOCK_MONOTONIC)
  kAnsBackHead = 12, // ReadStop: the head of the request in flight at the start of the bytes returned (0: none)
  kAnsOwnMark = 13,  // kAnsWritten when the request in flight was forwarded
  kAnsBodyDone = 14, // BodyStart: 1 once the body read here ended whole (the bytes after it are ReadStop's)
  kAnsBodyRead = 15, // body bytes read here and written to the stream
  kAnsEnded = 16,    // 1: the client's FIN is in and nothing of its follows (the pump read the EOF, or JS did): the connection closes after the answer in flight
  kAnsSlots = 17,
};

// Why the body's reads here stopped (kBodyEnd; native/quic.ts BODY_END).
enum BodyOutcome : uint8_t {
  kBodyWhole = 0,    // the body ended: the bytes read after it are JS's
  kBodyRefused = 1,  // chunk framing ChunkCheck does not take
  kBodyClient = 2,   // the client's EOF or a read error mid-body
  kBodyStream = 3,   // the stream takes no more
};

// http1 records (protocol/http1.ts) and stream frames (transport/quic/framing.ts), as quic-pump.cc reads them.
constexpr uint8_t kFrameData = 0x00;
constexpr uint8_t kFrameEnd = 0x01;
constexpr uint8_t kRecordHead = 0x01;
constexpr uint8_t kRecordBody = 0x02;
constexpr uint32_t kMaxFramePayload = 1024 * 1024;
constexpr uint32_t kMaxRecord = 1024 * 1024;
// tcp-flows records (protocol/tcp-flows.ts, WIRE.md section 8), as quic-pump.cc reads them in a flows pump.
constexpr uint8_t kFlowOpen = 0x01;
constexpr uint8_t kFlowAnswer = 0x02;
constexpr uint8_t kFlowData = 0x03;
constexpr uint8_t kFlowEnd = 0x04;
constexpr uint8_t kFlowReset = 0x05;
constexpr uint32_t kMaxFlowHeader = 64 * 1024;
constexpr uint32_t kMaxFlowData = 16 * 1024 * 1024;

enum CloseKind : uint8_t {
  kClosePeerApp = 1,
  kClosePeerTransport = 2,
  kCloseLocalError = 3,
  kCloseIdle = 4,
  kCloseHandshakeTimeout = 5,
  kCloseStatelessReset = 6,
};

// Packets per sendmmsg: a flush's packets leave in one call (a window-limited sender's flush is
// ~200 packets: as 64-packet batches it made ~4 calls and a short GSO run at each batch's end, and
// each call could wake the peer apart). OXY_QUIC_SEND_BATCH=0: 64, as before.
constexpr size_t kMaxPacketsPerSend = 256;
constexpr size_t kOldPacketsPerSend = 64;
// And at most this many bytes: the slots a batch touches stay resident, and loopback's 65,000-byte
// packets fill 4 MiB in 64, as before the larger batch (256 of them would hold 16 MiB per socket).
constexpr size_t kMaxBytesPerSend = 4 << 20;
constexpr size_t kMaxPacketsPerFlush = 512;
constexpr size_t kRecvBatch = 64;
// A stream's unsent bytes above this: write() reports it and a kEvWritable follows once the
// flush got below half of it.
constexpr uint64_t kStreamHighWater = 1024 * 1024;
// A pump's read of its fd at most (Conn::PumpRead; OXY_PUMP_READ=0: kPumpReadOld). Its DATA frame
// (and a flows pump's DATA record inside it) stays under kMaxFramePayload.
constexpr size_t kPumpReadBytes = 256 * 1024;
constexpr size_t kPumpReadOld = 64 * 1024;
constexpr size_t kPumpReadMax = 512 * 1024;
// Stream bytes read since the last flush from which the flush sends its ACK before the fds' writes
// (Conn::Flush): a bulk burst (one GRO message of 1,444-byte packets carries ~63 KB), not a request.
constexpr uint64_t kAckFirstBytes = 32 * 1024;

extern const char kPriority[];
uint64_t Now();

// The connector's closing answers held for the host's FIN (Conn::PumpRead, OXY_FLOW_FIN_HOLD), on
// this thread since it began: held, and let go by the FIN, by the hold's end, or by anything else
// (later bytes, a read error, the pump closed); µs held, summed; the hold timer's wake-ups.
enum FinHoldWhy { kFinHoldFin, kFinHoldDeadline, kFinHoldOther };
struct FinHoldCounts {
  double held = 0, fin = 0, deadline = 0, other = 0, held_us = 0, wakes = 0;
};
FinHoldCounts& FinHolds();
uint64_t TraceMs();
void LogPrintf(void*, const char* fmt, ...);

// Records for JS, packed back to back; one Buffer per loop callback (Take()).
// Where a counting lazy record sits in a host's batch (Host::EmitLazyCount).
struct LazySlot {
  uint64_t batch = UINT64_MAX;  // the batch (EventBatch::taken() when it was added)
  size_t at = 0;
};

class EventBatch {
 public:
  // A lazy record does not make the batch worth a JS call by itself: it rides the next one.
  void Add(uint8_t type, uint8_t flag, double id, const uint8_t* data, size_t len, bool lazy = false);
  bool empty() const { return !urgent_; }
  bool has_lazy() const { return !bytes_.empty(); }
  size_t size() const { return bytes_.size(); }
  uint8_t* at(size_t off) { return bytes_.data() + off; }
  // Batches handed to JS so far: a record added now rides batch number taken() (0-based).
  uint64_t taken() const { return taken_; }
  // Host::EmitLazyCount's records: one more event (and `add`) into the one `slot` names if it is
  // still in this batch, of this kind and value (true); else `Counted` names the one added next.
  static constexpr size_t kCountRecord = 16 + 24;
  bool Count(LazySlot* slot, uint8_t type, uint8_t flag, int64_t id, double value, double add);
  // The record just added (the last kCountRecord bytes) is `slot`'s from now on.
  void Counted(LazySlot* slot) {
    slot->batch = taken_;
    slot->at = bytes_.size() - kCountRecord;
  }
  // Hands the bytes to a Buffer that owns them.
  Napi::Buffer<uint8_t> Take(Napi::Env env);

 private:
  std::vector<uint8_t> bytes_;
  bool urgent_ = false;
  uint64_t taken_ = 0;
};

struct Chunk {
  std::unique_ptr<uint8_t[]> data;
  size_t length;
};

// The receive side of a pumped stream read here (quic-pump.cc), from the boundary at which JS
// handed it over (JS's frame and record parsers between frames and records) to its END. Frames
// are parsed here from then on: whatever JS still gets (records while the pump is not armed, the
// END) comes as whole frames made here. Records, while armed: BODY bytes go to the pump's fd, a
// HEAD goes to JS (kPumpHead) and what follows it waits (held) until JS answers: the head written
// to the fd (PumpWrite with head) or the pump closed (the rest goes to JS as frames).
struct StreamRecv {
  // Frame level.
  uint8_t fhdr[5];
  uint8_t ffill = 0;
  uint32_t fleft = 0;  // payload bytes of the current DATA frame still to come
  bool end = false;    // END read
  bool end_sent = false;
  bool fin = false;    // the QUIC FIN came (JS hears it after the END)
  bool fin_sent = false;
  bool raw = false;    // bad framing, or bytes after END: passed to JS as they come (JS's parser says what is wrong)
  // Record level (tracked also while not armed: JS may arm only at a boundary).
  uint8_t rhdr[5];
  uint8_t rfill = 0;
  uint8_t rtype = 0;
  uint32_t rleft = 0;  // payload bytes of the current record still to come
  bool rbad = false;   // a record JS will refuse: never armed again
  bool plain = false;  // no records: every payload byte is for the fd (a private TCP flow)
  bool flows = false;  // tcp-flows records (kFlow*): DATA/END/RESET of the pump's flow are read here
  bool await_answer = false;  // flows, armed for a pump that starts at the flow's ANSWER (Stream::at_answer)
  bool await_open = false;    // flows, armed between flows for the next OPEN (Stream::open_events)
  std::vector<uint8_t> head;  // the HEAD being gathered (armed); flows: the ANSWER's payload
  bool armed = false;
  bool held = false;
  std::vector<uint8_t> held_bytes;  // frame payload bytes after a HEAD JS has not answered yet
  // Bytes for JS from this delivery: whole frames; `open` is the offset of a DATA frame being filled.
  std::vector<uint8_t> js;
  size_t open = SIZE_MAX;

  bool AtRecordBoundary() const { return rfill == 0 && rleft == 0 && !rbad; }
};

struct Stream {
  int64_t id;
  // Bytes from `base` (acknowledged before it) on: ngtcp2 refers to them until acked.
  std::deque<Chunk> chunks;
  uint64_t base = 0;    // stream offset of chunks.front()
  uint64_t sent = 0;    // stream offset of the first byte not yet handed to ngtcp2
  uint64_t total = 0;   // stream offset past the last byte queued
  bool fin = false;     // JS asked for the FIN after `total`
  bool fin_sent = false;
  bool in_queue = false;
  bool write_closed = false;  // reset, stopped or finished: nothing more to send
  bool want_writable = false;
  bool read_paused = false;
  uint64_t owed_credit = 0;  // bytes delivered while paused, credited on resume
  uint64_t blocked_gen = 0;  // flush generation in which flow control blocked it
  bool pump_blocked = false;  // its fd pump stopped reading: too much unsent
  bool pump_full = false;     // its received bytes wait for its pump's fd: credit held back
  uint64_t js_batch = 0;      // 1 + the batch that last carried its bytes to JS (0: none)
  std::unique_ptr<StreamRecv> recv;  // read here (quic-pump.cc), once JS handed it over
  bool answer_paused = false;  // its answer pump holds too much for the client: no credit
  // A flows pump that starts at the flow's ANSWER (AttachPump kPumpAtAnswer): the accepted
  // socket's token (0: none) and the OK ANSWER's payload, byte for byte.
  double at_answer = 0;
  std::vector<uint8_t> answer_ok;
  // Its flows pumps were attached with mode 3: between flows the OPEN is read here (kPumpFlowOpen).
  bool open_events = false;

  bool HasWork() const { return !write_closed && (sent < total || (fin && !fin_sent)); }
};

class Conn;

// Packets built for one sendmmsg: each with its connection (counters, errors) and, on an
// unconnected socket, its destination and the local address to send from (IP_PKTINFO). Runs of
// equal-size packets on one path leave as one message with UDP GSO (UDP_SEGMENT: one trip down
// the stack for up to 64 packets or 65,000 bytes) until the kernel refuses one; then one message
// per packet.
class PacketBatch {
 public:
  // `df`: the socket sets DF (PMTUD's probes): a packet above the local link's MTU is refused
  // alone (EMSGSIZE) and dropped as lost, not taken for a GSO refusal.
  void Init(size_t max_payload, bool gso, bool df = false);
  // Room for the next packet (max payload bytes), valid until Push.
  uint8_t* Slot() { return tx_.get() + count_ * max_payload_; }
  // The slot holds a packet of `len` bytes for `path` (c: null for a packet of no connection).
  // Returns true when the batch is full (its capacity of packets, or kMaxBytesPerSend): Send it.
  bool Push(Conn* c, const ngtcp2_path& path, size_t len);
  // sendmmsg of every packet, to `path` and from its local address unless `connected`.
  void Send(int fd, bool connected);
  bool gso() const { return gso_; }
  // Messages that carried more than one packet.
  uint64_t gso_sends() const { return gso_sends_; }
  // The most packets one Send was given (one sendmmsg unless the kernel refused a run).
  size_t largest_send() const { return largest_send_; }

 private:
  struct Meta {
    size_t len;
    Conn* conn;
    sockaddr_storage remote;
    socklen_t remote_len;
    sockaddr_storage local;
    socklen_t local_len;
  };
  // Packets i and j may share a GSO message (same destination and source).
  bool SamePath(const Meta& a, const Meta& b) const;
  // The end of the run of packets starting at `i` that one message can carry.
  size_t RunEnd(size_t i, size_t n, size_t single_until) const;
  size_t max_payload_ = 0;
  size_t capacity_ = 0;  // packets per sendmmsg
  size_t count_ = 0;
  size_t bytes_ = 0;  // of the packets pushed since the last Send
  bool gso_ = true;
  bool df_ = false;
  uint64_t gso_sends_ = 0;
  size_t largest_send_ = 0;
  // Not zeroed: capacity_ slots of up to 64 KB, touched only as packets are written.
  std::unique_ptr<uint8_t[]> tx_;
  std::vector<Meta> meta_;
  // Send's messages (sized once: 256 of each were ~36 KB of stack).
  std::vector<mmsghdr> msgs_;
  std::vector<iovec> iovs_;
  std::vector<size_t> first_;  // message k holds packets first_[k] .. first_[k + 1] - 1
  std::vector<uint8_t> control_;
};

// One recvmmsg at a time into kRecvBatch slots (both hosts). With UDP GRO (`gro`: UDP_GRO on
// the socket) the kernel hands a run of equal-size datagrams from one sender as one message, its
// segment size in a cmsg: a GSO message that crossed a veth or loopback whole (without it the
// receiving socket segments it in the sender's softirq, an skb and a queueing per packet) or one
// a NIC's GRO built. Each() splits it again. Slots are 64 KB then (not zeroed: the kernel touches
// only what it fills).
class RecvBatch {
 public:
  // `max_datagram`: the largest datagram expected without GRO; `names`: keep each source address
  // and `control` bytes of control data (pktinfo) per message.
  void Init(int fd, size_t max_datagram, bool gro, bool names, size_t control);
  // Messages read (0: none; < 0: an error, in errno).
  int Read(int fd);
  msghdr& header(int i) { return msgs_[i].msg_hdr; }
  const sockaddr_storage& name(int i) const { return names_[i]; }
  // fn(data, len) for each datagram of message i (none for a truncated one).
  template <class F>
  void Each(int i, F fn) {
    const msghdr& h = msgs_[i].msg_hdr;
    size_t len = msgs_[i].msg_len;
    if ((h.msg_flags & MSG_TRUNC) || len == 0) return;
    const uint8_t* data = slab_.get() + size_t(i) * slot_;
    size_t seg = gro_ ? Segment(h) : 0;
    if (seg == 0 || seg >= len) return fn(data, len);
    gro_reads_++;
    for (size_t off = 0; off < len; off += seg) fn(data + off, std::min(seg, len - off));
  }
  bool gro() const { return gro_; }
  // Messages that carried more than one datagram.
  uint64_t gro_reads() const { return gro_reads_; }

 private:
  static size_t Segment(const msghdr& h);
  bool gro_ = false;
  size_t slot_ = 0;
  size_t control_ = 0;
  uint64_t gro_reads_ = 0;
  std::unique_ptr<uint8_t[]> slab_;
  std::vector<mmsghdr> msgs_;
  std::vector<iovec> iovs_;
  std::vector<sockaddr_storage> names_;
  std::vector<uint8_t> controls_;
};

// One flush per loop turn: a uv_check (plus a uv_idle so the loop does not block before it runs).
class TurnScheduler {
 public:
  void Init(uv_loop_t* loop, void* owner, uv_check_cb cb);
  // Runs the callback in this turn's check phase (once, however often armed).
  void Arm();
  // In the callback: the turn's flush is running.
  void Disarm();
  void Close();
  bool usable() const { return check_ != nullptr; }

 private:
  uv_check_t* check_ = nullptr;
  uv_idle_t* idle_ = nullptr;
  uv_check_cb cb_ = nullptr;
  bool armed_ = false;
};

// A timer below libuv's millisecond: a timerfd (CLOCK_MONOTONIC, absolute ns) watched by uv_poll.
// ngtcp2's pacing on loopback asks for waits of tens of µs between bursts; a 1 ms uv_timer each
// time capped bulk at about a congestion window per millisecond.
class SoonTimer {
 public:
  void Init(uv_loop_t* loop, void* owner, void (*cb)(void* owner));
  // Fires at `ts` (Now() clock) unless armed earlier already.
  void At(uint64_t ts);
  // Not armed any more (nothing to do when it is not).
  void Stop();
  // It has its timerfd (else At() does nothing).
  bool usable() const { return fd_ >= 0; }
  void Close();

 private:
  int fd_ = -1;
  uv_poll_t* poll_ = nullptr;
  uint64_t due_ = UINT64_MAX;
  void* owner_ = nullptr;
  void (*cb_)(void*) = nullptr;
};

// What a connection needs from the object that owns its socket.
class Host {
 public:
  virtual ~Host() = default;
  // A record for JS about connection `c`.
  virtual void Emit(Conn* c, uint8_t type, uint8_t flag, int64_t id, const uint8_t* data, size_t len) = 0;
  // A record JS needs, but not at once (delivered with the next batch).
  virtual void EmitLazy(Conn* c, uint8_t type, uint8_t flag, int64_t id, const uint8_t* data, size_t len) { Emit(c, type, flag, id, data, len); }
  // A lazy record counting events of one kind and value (payload: f64 value, f64 count, f64 sum of
  // `add`): one more into the record `slot` names while it is still in the batch JS has not taken,
  // else a new one (count 1) that `slot` names from then on. False: not kept here (emit a record per event).
  virtual bool EmitLazyCount(Conn* c, uint8_t type, uint8_t flag, int64_t id, double value, LazySlot* slot, double add = 0) { return false; }
  // EmitLazyCount for a host whose batch for JS is `events` (QuicClient's and QuicServer's).
  bool CountInto(EventBatch& events, Conn* c, uint8_t type, uint8_t flag, int64_t id, double value, LazySlot* slot, double add) {
    if (events.Count(slot, type, flag, id, value, add)) return true;
    const double payload[3] = {value, 1, add};
    EmitLazy(c, type, flag, id, reinterpret_cast<const uint8_t*>(payload), sizeof payload);  // after a kEvConn maybe
    events.Counted(slot);
    return true;
  }
  // Flush `c` in this loop turn's check phase.
  virtual void Schedule(Conn* c) = 0;
  // Room for one packet (max payload bytes), valid until the next TxPush.
  virtual uint8_t* TxSlot() = 0;
  // The slot holds a packet of `len` bytes for `path`; sent at TxSend (or when the batch is full).
  virtual void TxPush(Conn* c, const ngtcp2_path& path, size_t len) = 0;
  virtual void TxSend() = 0;
  // `c` is over (its close record is queued): stop its I/O once this callback is done.
  virtual void Finished(Conn* c) = 0;
  // End of a callback that ran on the connection's own timer: send, deliver, finalize.
  virtual void AfterTimer(Conn* c) = 0;
  // Flush `c` at `ts`, within the millisecond (a SoonTimer).
  virtual void FlushAt(Conn* c, uint64_t ts) = 0;
  // A connection ID (and its stateless reset token) the connection issues / retires.
  virtual int IssueCid(Conn* c, ngtcp2_cid* cid, uint8_t* token, size_t cidlen);
  // Event batches handed to JS so far (the client's: its pumps check what JS has seen).
  virtual uint64_t BatchesTaken() const { return UINT64_MAX; }
  virtual void RetireCid(Conn* c, const ngtcp2_cid* cid) {}
};

// Bytes queued for a pump's fd (quic-pump.cc): fixed 64 KiB blocks, reused through a per-thread
// pool, written with one writev. A vector here was regrown (and its new pages faulted in) whenever
// the fd fell behind the stream, and shifted after a partial write: in -R on the vnet path that
// was ~14 % of the edge's CPU (docs/decisions.md "... (session 13)").
class OutQueue {
 public:
  static constexpr size_t kBlock = 64 * 1024;
  static constexpr size_t kWriteBlocks = 16;
  OutQueue() = default;
  OutQueue(const OutQueue&) = delete;
  OutQueue& operator=(const OutQueue&) = delete;
  ~OutQueue() { Clear(); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void Append(const uint8_t* data, size_t len);
  // Drops everything queued (its blocks go back to the pool).
  void Clear();
  // One writev from the front, over up to kWriteBlocks blocks: the bytes written, or -errno.
  // `more`: MSG_MORE (the socket holds a last partial segment for what follows: the FIN).
  ssize_t WriteTo(int fd, bool more = false);
  // The next write's buffers (what WriteTo offers) into iov[kWriteBlocks]: how many.
  int Iov(iovec* iov) const;
  // `n` bytes of the front were written (by a write of Iov's buffers).
  void Consume(size_t n);
  // What the next WriteTo offers (a write that takes less found the fd full).
  size_t Offered() const {
    size_t n = 0, k = 0;
    for (auto it = blocks_.begin(); it != blocks_.end() && k < kWriteBlocks; ++it, ++k) n += it->end - it->begin;
    return n;
  }

 private:
  struct Block {
    uint8_t* data;
    size_t begin;  // first unwritten byte
    size_t end;    // end of the bytes held
  };
  static uint8_t* TakeBlock();
  static void GiveBlock(uint8_t* block);
  std::deque<Block> blocks_;
  size_t size_ = 0;
};

// A stream's bytes pumped to and from a TCP socket fd without JS (quic-pump.cc): the fd's reads
// become the stream's DATA frames (stream.ts framing), JS's writes for the fd are written at the
// turn's flush. JS still sees what it needs per request (kEvPump records).
struct Pump {
  Conn* conn = nullptr;
  int64_t id = -1;
  int fd = -1;
  FdWatch* watch = nullptr;  // in the thread's epoll set (fd-set.h)
  OutQueue out;  // for the fd
  int events = 0;
  bool ended = false;     // kPumpEnd went: nothing more moves
  bool answered = true;   // the fd sent bytes since the last head
  bool want_drain = false;
  bool queued = false;    // in the connection's list of pumps with bytes for their fd
  // JS's parsers of the stream are at a frame and record boundary: a delivery that is exactly one
  // DATA frame holding one HEAD record goes to JS as kPumpHead (no Duplex, no parsers in JS).
  // Anything else goes as kEvData and disarms (JS arms again at its next boundary).
  bool heads = false;
  uint64_t body_bytes = 0;  // request bytes read off the stream here and written to the fd (StreamRecv)
  // Plain (a private TCP flow's socket): the fd's EOF ends only its read direction (read_done, a
  // kPumpEnd with errno 0), and its write side is shut once JS said the stream's side ended
  // (shut_pending) and every byte for it was written (kPumpShut).
  bool plain = false;
  bool read_done = false;
  bool shut_pending = false;
  bool shut_done = false;
  // Flows (plain too): one private TCP flow on a reused `tcp-flows` stream (WIRE.md section 8).
  // The fd's reads go as DATA records, its EOF as END, a read/write error as RESET; the stream's
  // DATA/END/RESET records are read here (StreamRecv flows). Once a terminator went each way the
  // flow is over (kPumpFlowDone): the stream's records are JS's again from there, and the pump
  // lingers under a negative id (no events) until the fd took what it still holds and is shut.
  bool flows = false;
  bool sent_term = false;
  bool got_term = false;
  bool reset_sent = false;
  bool lingering = false;
  // The peer's RESET came while bytes for the fd were still queued here or in its socket
  // (OXY_FLOW_RESET_FLUSH): they are written first, and the reset (SO_LINGER 0, close) waits until
  // the socket's send queue is empty (SIOCOUTQ 0: the fd's peer acked them) or until reset_by
  // (Now()) — Conn::reset_flush_timer_ polls it. 0: none waits.
  uint64_t reset_by = 0;
  // kPumpAtConnect: the dial it took is still connecting (only UV_WRITABLE is wanted, nothing is
  // written to the fd), and the flow's ANSWER is due: written here once connected (`answer`),
  // else by JS (a failed connect, a RESET before it: those records go to JS).
  bool connecting = false;
  bool answer_due = false;
  double dial_token = 0;
  // A dialed flow's first answer, whole in one read and saying the host closes after it
  // (Connection: close), waits for the host's FIN (its END then rides with it) until hold_until
  // (Now()); see Conn::PumpRead. `dialed`: the connector's side (the socket is a dial's).
  bool dialed = false;
  bool read_once = false;  // bytes were read from the fd: later answers are not held
  uint64_t hold_until = 0;
  std::vector<uint8_t> answer;
  // A dial's keep-alive, set by the connection's sweep once the flow lived half its idle time
  // (Conn::KeepAliveSweep): 0 if none is due. `keepalive_serial` names this pump in the sweep's queue.
  int keepalive_s = 0;
  uint64_t keepalive_serial = 0;
  // Its route (PumpRoute): a HEAD record whose host field is `route_host` (any, with route_any)
  // has its head written here without JS; JS hears of it per answer (kPumpFastAnswer, lazy) and,
  // before a kPumpEnd, the last one (kPumpFastHead: JS needs it to send it again or answer 502).
  bool route = false;
  bool route_any = false;
  std::string route_host;
  bool fast = false;                // the current request's head was written here
  LazySlot answers;                 // the kPumpFastAnswer record counting answers of one status
  LazySlot starts;                  // the kPumpFastStart record counting heads written
  std::vector<uint8_t> fast_head;  // its HEAD record's payload
};

// The edge's side of an `http1` stream (quic-answer.cc): while armed for an answer, the stream's
// DATA frames are framed as one HTTP/1 response (AnswerFramer) and written to the client socket
// (a duplicate of its fd; JS keeps reading it); anything else, and everything between answers,
// reaches JS as the stream's bytes. JS reads the figures from `state`.
struct AnswerPump {
  Conn* conn = nullptr;
  int64_t id = -1;
  int fd = -1;
  uv_poll_t* poll = nullptr;
  int events = 0;
  Napi::ObjectReference state_ref;
  double* state = nullptr;
  std::string keep_alive;
  std::string extra;
  AnswerFramer framer;
  bool armed = false;
  bool preamble = false;     // the stream's first byte (the framing version) comes first
  uint8_t header[5];
  size_t header_fill = 0;
  uint64_t payload_left = 0;  // of the DATA frame being read
  bool started = false;
  std::vector<uint8_t> out;  // for the client, from out_off on
  size_t out_off = 0;
  bool queued = false;
  bool done_pending = false;  // the answer is whole: reported once `out` is written
  bool holding = false;       // bytes for JS wait behind `out`
  bool held_fin = false;
  std::vector<uint8_t> held;
  bool failed = false;  // nothing more moves
  // The client's reads (ReadStart to ReadStop): JS's handle of the socket does not read meanwhile.
  // A read holding exactly one plain request for `host` (ScanPlainRequest) while no answer is in
  // flight is forwarded here and its answer armed (`own`); anything else stops reading (kReadBack).
  bool reading = false;
  bool back_sent = false;
  std::string host;
  std::string client;
  std::vector<uint8_t> in;  // the head of the request in flight (own_head bytes), then bytes not forwarded
  size_t own_head = 0;
  bool own = false;  // the answer armed (or being written) is to a request read here
  // A request body's reads (BodyStart to kBodyEnd or ReadStop): the client's bytes go on as BODY
  // records until the body ends (body_left bytes, or chunked: ChunkCheck says), without JS.
  bool body = false;
  bool body_chunked = false;
  uint64_t body_left = 0;
  ChunkCheck chunks;
  LazySlot own_count;  // the kAnswerOwnCount record counting such answers of one status
};

struct ConnSettings {
  uint32_t max_payload = 1350;
  uint32_t max_recv_payload = 1350;
  uint64_t idle_timeout_ms = 15000;
  uint64_t keep_alive_ms = 0;
  uint64_t initial_max_data = 0;
  uint64_t initial_max_stream_data = 0;
  uint64_t max_stream_window = 0;
  uint64_t max_connection_window = 0;
  uint64_t max_concurrent_streams = 1000;
  std::string congestion_control;
  // On a loopback path (the peer is 127/8 or ::1; 0: as on any path): packets up to this size,
  // offered and sent; ngtcp2's congestion window counted in units of this many bytes (its
  // CUBIC starts at 2 units and caps at 2.89 × max(2 units, delivery rate × min RTT), which at
  // loopback's µs RTTs held it at ~6 packets); an ACK per this many ack-eliciting packets.
  // See docs/decisions.md "QUIC bulk on ngtcp2 (session 8)".
  uint32_t loopback_payload = 0;
  uint64_t loopback_cwnd_unit = 0;
  uint32_t loopback_ack_threshold = 0;
  // Off loopback (0: the packet size): ngtcp2's congestion window unit (`cwndUnit`). CUBIC's cap is
  // 2.89 × max(2 units, rate × min RTT): on a sub-ms path its floor, not the luck of slow start, sets the window.
  uint64_t cwnd_unit = 0;
  // Toward a peer at a near address (IsNearAddress; 0: as cwnd_unit): the same unit, decided per
  // connection from its path (`nearCwndUnit`: a connector's NEAR_CWND_UNIT, an edge's
  // EDGE_NEAR_CWND_UNIT, transport/quic/config.ts).
  uint64_t near_cwnd_unit = 0;
  // UDP GSO on the socket's sends (`gso`, default true); off by itself where the kernel refuses it.
  bool gso = true;
  // UDP GRO on the socket's receives (`gro`, default true): RecvBatch.
  bool gro = true;
  // Path MTU discovery off loopback (`pmtud`): packets start at QUIC's 1,200 and grow to what
  // ngtcp2's probes (padded PINGs: 1,406, then 1,444; 1,342 and 1,232 after a loss) find acknowledged,
  // up to max_payload and the peer's max_udp_payload_size; DF on the socket. A lost probe costs
  // nothing but its packet (ngtcp2 keeps it out of congestion control). Off: max_payload from the
  // start, as quiche does (docs/decisions.md "... packet sizes (session 16)").
  bool pmtud = false;
  // Reads the fields above from the options object JS passes (same names on both sides).
  static ConnSettings FromJs(Napi::Object o);
  // The largest UDP payload a connection with these settings sends / accepts on any path.
  uint32_t LargestSend() const { return std::max(max_payload, loopback_payload); }
  uint32_t LargestRecv() const { return std::max(std::max(max_recv_payload, max_payload), loopback_payload); }
};

// A connection's streams, pumps and answer pumps by stream id: an unordered_map whose finds go
// through a small direct-mapped cache of the last iterators found. A small request meets its
// stream ~7 times a side (its data, the pump, the flush, the ACK), and each map find is a
// division and two dependent loads that the system calls in between have evicted: the three
// maps' finds were 2-3 % of a side's samples (docs/decisions.md "Small requests ... session 12").
// Inserting may rehash (iterators die): it forgets every cached one; erasing forgets its own.
template <class V>
class IdMap {
  using Map = std::unordered_map<int64_t, std::unique_ptr<V>>;

 public:
  using iterator = typename Map::iterator;
  using node_type = typename Map::node_type;

  iterator find(int64_t id) {
    Found& f = found_[Slot(id)];
    if (f.valid && f.id == id) return f.it;
    iterator it = map_.find(id);
    if (it != map_.end()) f = {id, it, true};
    return it;
  }
  iterator begin() { return map_.begin(); }
  iterator end() { return map_.end(); }
  bool empty() const { return map_.empty(); }
  size_t size() const { return map_.size(); }
  std::unique_ptr<V>& operator[](int64_t id) {
    Forget();
    return map_[id];
  }
  void insert(node_type&& node) {
    Forget();
    map_.insert(std::move(node));
  }
  node_type extract(int64_t id) {
    Drop(id);
    return map_.extract(id);
  }
  void erase(iterator it) {
    Drop(it->first);
    map_.erase(it);
  }
  void erase(int64_t id) {
    Drop(id);
    map_.erase(id);
  }
  void clear() {
    Forget();
    map_.clear();
  }

 private:
  struct Found {
    int64_t id = 0;
    iterator it{};
    bool valid = false;
  };
  static constexpr size_t kSlots = 32;
  // Stream ids step by 4 (the low two bits are the stream's type).
  static size_t Slot(int64_t id) { return size_t(id >> 2) % kSlots; }
  void Drop(int64_t id) {
    Found& f = found_[Slot(id)];
    if (f.id == id) f.valid = false;
  }
  void Forget() {
    for (Found& f : found_) f.valid = false;
  }
  Map map_;
  Found found_[kSlots];
};

// 127.0.0.0/8, ::1 or ::ffff:127.x.y.z.
bool IsLoopback(const sockaddr* addr);
// A peer on a private network: RFC 1918, 198.18.0.0/15 (RFC 2544), IPv4 and IPv6 link-local, fc00::/7,
// and their IPv4-mapped forms; not loopback, nor the shared 100.64.0.0/10 (overlay VPNs span the
// internet). The only copy: connectors and edges alike pass `nearCwndUnit` (test/unit/native/address-kind).
bool IsNearAddress(const sockaddr* addr);
// DF on a UDP socket's sends for PMTUD (IP_MTU_DISCOVER / IPV6_MTU_DISCOVER = PROBE: DF set, the
// kernel's cached path MTU neither enforced nor used to fragment). True when the kernel took it.
bool SetDontFragment(int fd);

class Conn {
 public:
  Conn(Host* host, uint32_t handle, const ConnSettings& s, uv_loop_t* loop);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // TLS: a client session verifying against `cred`'s CAs (and `server_name` when given); a
  // server session presenting `cred`'s certificate. ALPN is mandatory on both.
  std::string InitTls(bool server, gnutls_certificate_credentials_t cred, const std::string& alpn, const std::string& server_name);
  // ngtcp2_conn_client_new / server_new with the settings and transport parameters. Returns "" or why it failed.
  std::string InitClient(const ngtcp2_path& path);
  struct ServerInit {
    ngtcp2_cid dcid, scid, original_dcid;
    bool retried;
    ngtcp2_cid retry_scid;
    uint32_t version;
    uint8_t reset_token[NGTCP2_STATELESS_RESET_TOKENLEN];
    const uint8_t* token;  // the validated Retry token, or null
    size_t tokenlen;
  };
  std::string InitServer(const ngtcp2_path& path, const ServerInit& init);

  // One received datagram. Errors close the connection (a record for JS, Finished()).
  void Read(const ngtcp2_path& path, const uint8_t* data, size_t len, uint64_t ts);
  // Writes what pumps and answers hold for their fds, and everything ngtcp2 lets out now (data,
  // ACKs, datagrams, close) to the host, then re-arms the timer.
  void Flush();
  // OXY_QUIC_ACK_SPLIT=1: the host calls this between the messages of one read (recvmmsg) once the
  // connection has read kAckFirstBytes of stream bytes in it, with more messages still to decrypt:
  // the packets ngtcp2 lets out now (its ACK of what was read so far) go to the host at once, so
  // a sender waiting on its window seals its next burst while this end decrypts the rest. True when
  // it wrote packets (the host sends them: TxSend); at most once per read (the host's to keep).
  bool AckEarly();

  // JS calls (the host's methods forward them).
  int64_t OpenStream();
  double Write(int64_t id, const uint8_t* data, size_t len, bool fin);
  void ShutdownStream(int64_t id, uint64_t code);
  void SetReadPaused(int64_t id, bool paused);
  bool SendDatagram(const uint8_t* data, size_t len);
  void Close(uint64_t code, const std::string& reason, bool transport);
  void Probe();
  Napi::Object Info(Napi::Env env);
  Napi::Array PeerCertificates(Napi::Env env);
  uint64_t StreamsLeft();
  // Pumps stream `id` to and from `fd` (the pump owns it: closed with the pump). False: no such stream.
  // `mode`: 0 http1 records, 1 plain (a private TCP flow), 2 flows (one flow of a tcp-flows stream).
  // `source`: kPumpFromDial: `fd` is the token of a finished Dial, whose socket the pump takes (no
  // duplicate); kPumpFromAccepted: the token of a socket the edge's TcpAcceptor holds (accept.cc).
  // kPumpAtAnswer (flows only): `fd` is such a token, and the pump starts when the flow's ANSWER
  // comes and is `ok` byte for byte (kPumpFlowAnswered, lazy); the stream's records are read here
  // once JS arms it (ArmPumpHeads mode 3, JS awaiting the ANSWER). Any other record goes to JS
  // from its header on and the pump never starts; ClosePump before it started returns -2.
  // kPumpAtConnect (flows only): `fd` is the token of a Dial still connecting; the pump takes it
  // now, JS hears the connect as a dial's (kPumpDialed) and, connected, the ANSWER `ok` goes first.
  // kPumpAtAnswerEarly: kPumpAtAnswer, and the socket's first chunk read here and written as the
  // flow's DATA (its end waits for the pump; its error: kPumpEarlyError).
  static constexpr int kPumpFromFd = 0, kPumpFromDial = 1, kPumpFromAccepted = 2, kPumpAtAnswer = 3, kPumpAtConnect = 4,
                       kPumpAtAnswerEarly = 5;
  static void EarlyChunk(void* ctx, int64_t id, const uint8_t* data, ssize_t n);
  bool AttachPump(int64_t id, int fd, int mode = 0, int source = kPumpFromFd, const uint8_t* ok = nullptr, size_t ok_len = 0,
                  const uint8_t* open = nullptr, size_t open_len = 0);
  // A private flow's TCP connect made here, not by Node's net (quic-pump.cc): a non-blocking socket
  // (TCP_NODELAY, keep-alive as libuv sets it) connecting to `addr` (4 or 16 bytes). Returns a token
  // (> 0; kPumpDialed with it follows) or -errno. The socket stays here until AttachPump takes it,
  // TakeDial hands it to JS, or CloseDial closes it. `keepalive_late`: the four keep-alive options
  // are set only on a pump's socket still open after a quarter to a half of the idle time
  // (KeepAliveSweep: the same probes at the same times, four system calls less per short flow), and
  // at once on a socket TakeDial hands to JS.
  double Dial(const uint8_t* addr, size_t addr_len, int port, int keepalive_ms, bool keepalive_late = false);
  void CloseDial(double token);
  // An OPEN payload JS admitted (the connector's routes let it go to `addr`:`port`): from now on
  // an OPEN of these bytes read between flows (RecvOpen) is dialled here at once, before its
  // event goes to JS (kPumpFlowOpenDialed) and before this turn's ACKs, while `*epoch` (JS's: the
  // off-ramp adds one whenever its routes change) still reads what it read now. Any other OPEN,
  // or one whose epoch moved on, goes to JS as before (kPumpFlowOpen). Bounded: kMaxAdmittedOpens
  // entries of kMaxAdmittedOpenBytes at most, cleared when full. `epoch` lives as long as its
  // JS array (the caller holds it).
  // `ok`: the flow's OK ANSWER, for a pump attached here at the OPEN (OXY_FLOW_PUMP_AT_OPEN).
  void AdmitOpen(const uint8_t* payload, size_t len, const uint8_t* addr, size_t addr_len, int port, int keepalive_ms, bool keepalive_late,
                 const int32_t* epoch, const uint8_t* ok = nullptr, size_t ok_len = 0);
  uint64_t opens_dialed = 0;  // OPENs dialled as they were read (AdmitOpen)
  uint64_t opens_pumped = 0;  // ... whose pump was attached here too (kPumpFlowOpenPumped)
  // The dialled socket's fd, now JS's (-1: no such dial).
  int TakeDial(double token);
  // A flows pump: the flow's RESET came through JS (before the records were handed over).
  void ResetPump(int64_t id);
  // A plain pump: no more bytes for the fd after those queued; its write side is shut once they are written.
  void ShutPump(int64_t id);
  // Bytes for the pump's fd (`head`: a request starts: its answer is reported). Returns the bytes
  // not yet written to the fd (a kPumpDrain follows above kStreamHighWater), -1 when it takes none.
  double PumpWrite(int64_t id, const uint8_t* data, size_t len, bool head);
  // The pump writes the heads of HEAD records for the rule it serves itself: any host's (`any`),
  // or those whose host field is `host` byte for byte; `on` false: every HEAD goes to JS again.
  void PumpRoute(int64_t id, bool on, bool any, const uint8_t* host, size_t host_len);
  // Returns the request bytes the pump read off the stream and wrote to its fd (no JS), 0 if none.
  // `reset`: SO_LINGER 0 first, so the close sends RST (the flow was cut), not a FIN.
  double ClosePump(int64_t id, bool reset = false);
  // JS's parsers of the stream stand at a point it can hand over. `records` (mode 1): the addon reads every
  // record from here on (StreamRecv), JS's frame having `frame_left` payload bytes and its BODY
  // record `body_left` bytes still to come; else JS is between records and the addon takes only
  // deliveries that are exactly one HEAD frame (PumpHead). 1: armed; 0: not now (JS has not seen
  // every byte given to it yet, or stands elsewhere than the addon's reading), ask again after
  // the next batch; -1: never (JS reads the rest itself).
  // mode: 0 heads, 1 records, 2 plain (every payload byte for the fd; body_left is 0).
  int ArmPumpHeads(int64_t id, int mode, uint64_t frame_left, uint64_t body_left);
  // The edge's answer pumps (quic-answer.cc). Attach: `fd` is the client socket (duplicated),
  // `state` the shared Float64Array. Arm: the next answer is written to it natively.
  bool AttachAnswers(int64_t id, int fd, Napi::Float64Array state, const std::string& keep_alive, const std::string& extra);
  bool ArmAnswer(int64_t id, bool head_request, bool close, bool preamble);
  void CloseAnswers(int64_t id);
  // The client's reads of stream `id`'s answer pump (quic-answer.cc): start (JS's handle stopped
  // reading; false: not now) and stop (returns what JS reads: the head of a request in flight,
  // its length in kAnsBackHead, then bytes not forwarded).
  bool ReadStart(int64_t id, const std::string& host, const std::string& client);
  std::vector<uint8_t> ReadStop(int64_t id);
  // The client's request body read here from now on (JS wrote the request's records so far and its
  // handle stopped reading): `left` bytes, or chunked from `chunk_state` (ChunkedBody.handOver) when
  // given. False: not now. Its end (kBodyEnd) or ReadStop stops it.
  bool BodyStart(int64_t id, uint64_t left, const double* chunk_state, size_t chunk_state_len);

  bool Usable() const { return conn_ != nullptr && !closed_; }
  // The UDP payload of this connection's full packets now (PMTUD's size so far, the peer's limit).
  size_t PathPayload() const;
  // The largest DATAGRAM payload one of them holds.
  size_t DatagramRoom() const;
  uint32_t handle() const { return handle_; }
  bool scheduled = false;  // the host has it in its flush list
  uint64_t packets_sent = 0;
  uint64_t packets_recv = 0;
  // Packets with STREAM frames declared lost, of streams already closed (ngtcp2 0.12 counts per stream only).
  uint64_t closed_stream_losses_ = 0;
  uint64_t send_errors = 0;
  uint64_t send_dropped = 0;
  // What paces a bulk transfer, counted for quicStats() and OXY_QUIC_TRACE (docs/decisions.md
  // "Uploads over QUIC: what waits"): why each flush with stream bytes waiting stopped, what the
  // timer sent, and how long after ngtcp2's deadline it fired.
  struct Counters {
    uint64_t flushes = 0;        // flushes that wrote at least one packet
    uint64_t stream_bytes = 0;   // stream bytes handed to ngtcp2
    uint64_t stop_cwnd = 0;      // a flush ended with stream bytes waiting and the window full
    uint64_t stop_pacing = 0;    // ... with room in the window (ngtcp2's pacing)
    uint64_t stop_blocked = 0;   // a stream waited for the peer's credit (STREAM_DATA_BLOCKED)
    uint64_t stop_data = 0;      // ... the connection's credit (MAX_DATA) was used up
    uint64_t timer_fires = 0;
    uint64_t timer_acks = 0;     // timer flushes that sent packets with no stream bytes waiting (delayed ACKs)
    uint64_t timer_late_us = 0;  // their lateness past ngtcp2's deadline, summed
    uint64_t credit_held = 0;    // credit held back (a paused reader, a full pump or answer): times
    uint64_t writable_waits = 0; // writes that left more than kStreamHighWater unsent (JS waits for WRITABLE)
    uint64_t cwnd_wait_us = 0;   // from a flush that stopped on the window to the next that sent stream bytes
    uint64_t pace_skips = 0;     // pacing times under 1 ms not given the precise timer: the window was full
    uint64_t answers = 0;        // flushes that wrote packets after packets were read (an ACK, mostly)
    uint64_t answer_us = 0;      // from the first of those reads to the packets, summed
    uint64_t key_updates = 0;    // key updates this end began (OXY_QUIC_KEY_UPDATE)
    uint64_t acks_first = 0;     // flushes that sent their packets before the fds' writes (a bulk read)
    uint64_t acks_split = 0;     // ACKs sent in the middle of a read (OXY_QUIC_ACK_SPLIT=1: AckEarly)
    uint64_t unpaced = 0;        // flushes that wrote packets and set no pacing time (a near path: UpdatePacing)
    uint64_t pump_reads = 0;     // reads of the pumps' fds that brought bytes (the connector's host sockets)
    uint64_t pump_read_bytes = 0;  // ... and their bytes
    uint64_t pump_read_max = 0;  // ... the largest
    uint64_t ring_enters = 0;    // flushes whose pumps' writes went in one io_uring_enter (FlushPumps: RingWrites)
    uint64_t ring_writes = 0;    // ... the writes in them that took bytes
    uint64_t ring_short = 0;     // ... the writes that found the socket full (took less than offered, or EAGAIN)
  } counters;
  // The CIDs routed to this connection (server).
  std::vector<std::string> cids;

  void ReportSendError(int err);
  // The packet left (true) or the kernel had no room for it (false: loss recovery resends it).
  void Sent(bool ok) { ok ? packets_sent++ : send_dropped++; }
  // Stops the timer and frees ngtcp2/GnuTLS state (the connection is over).
  void Teardown();

 private:
  void Event(uint8_t type, uint8_t flag, int64_t id, const uint8_t* data, size_t len) { host_->Emit(this, type, flag, id, data, len); }
  void EventCode(uint8_t type, int64_t id, uint64_t code);
  // A pump event whose payload is one number (an errno, 0), then a flush: the batch reaches JS.
  void PumpNumber(uint8_t flag, int64_t id, double value) {
    Event(kEvPump, flag, id, reinterpret_cast<const uint8_t*>(&value), 8);
    Dirty();
  }
  void CloseEvent(uint8_t kind, uint64_t code, const uint8_t* reason, size_t reason_len);
  void FillCallbacks(ngtcp2_callbacks* cb, bool server);
  void FillSettings(ngtcp2_settings* settings, ngtcp2_transport_params* params, const ngtcp2_path& path);
  void HandleReadError(int rv);
  void SendClose(const ngtcp2_connection_close_error& ccerr);
  void EnterClosing();
  void ResendClose();
  void ArmTimer();
  void Finish();
  void Dirty();
  void Enqueue(Stream* s);
  Stream* Find(int64_t id);
  Stream* Create(int64_t id);
  Stream* NextSendable(std::vector<int64_t>& requeue);
  static size_t Vecs(Stream* s, ngtcp2_vec* out, size_t max);
  void Advance(Stream* s, uint64_t n, bool fin_offered);

  static int OnStreamData(ngtcp2_conn* conn, uint32_t flags, int64_t id, uint64_t, const uint8_t* data, size_t len, void* user, void*);
  static int OnAcked(ngtcp2_conn*, int64_t id, uint64_t offset, uint64_t len, void* user, void*);
  static int OnStreamClose(ngtcp2_conn*, uint32_t, int64_t id, uint64_t, void* user, void*);
  static void OnTimer(uv_timer_t* handle);
  static void OnPumpWatch(FdWatch* w, int events);
  // `hang_up`: the watch saw the peer's FIN in (kFdWatchHangUp): a short read is followed by one more.
  void PumpRead(Pump* p, bool hang_up = false);
  void PumpWriteOut(Pump* p);
  void PumpEnd(Pump* p, int err);
  void PumpWatch(Pump* p);
  void FlushPumps();
  // Writes several pumps' queued bytes in one io_uring_enter (OXY_PUMP_RING=0: not).
  void RingWrites(const std::vector<int64_t>& ids);
  void ResumePump(Stream* s);
  void ClosePumps();
  bool PumpHead(int64_t id, const uint8_t* data, size_t len);
  // The receive side read here (quic-pump.cc, StreamRecv).
  void RecvBytes(Stream* s, const uint8_t* data, size_t len, bool fin);
  void RecvPayload(Stream* s, const uint8_t* data, size_t len);
  void RecvForward(Stream* s, const uint8_t* data, size_t len);
  void RecvEmit(Stream* s);
  void RecvRelease(Stream* s);
  void RecvGiveBack(Stream* s);
  void PumpBody(Stream* s, Pump* p, const uint8_t* data, size_t len);
  // Flows pumps (quic-pump.cc): records of the flow read off the stream, its terminators both ways.
  void RecvFlows(Stream* s, const uint8_t* d, size_t n);
  bool RecvAnswer(Stream* s, const uint8_t*& d, size_t& n);
  bool RecvOpen(Stream* s, const uint8_t*& d, size_t& n);
  void AnswerToJs(Stream* s);
  void FlowRecord(Stream* s, uint8_t type, const uint8_t* payload = nullptr, size_t len = 0);
  void PumpConnected(Pump* p, int events);  // events: its watch's (kFdWatchError: SO_ERROR asked)
  void PumpNotConnected(Pump* p);
  void FlowGotEnd(Pump* p);
  void FlowGotReset(Pump* p);
  void FlowAbort(Pump* p);
  void FlowMaybeDone(Pump* p);
  bool PumpFastHead(Stream* s, std::vector<uint8_t>& record);
  void PumpQueue(Pump* p);
  // The fd took its backlog (or is gone): the credit held back for it goes out.
  void PumpCredit(Stream* s);
  void DataEvent(Stream* s, bool fin, const uint8_t* data, size_t len);
  bool AnswerData(Stream* s, const uint8_t* data, size_t len, bool fin);
  void AnswerFrames(AnswerPump* p, Stream* s, const uint8_t* data, size_t len, bool fin);
  void AnswerFail(AnswerPump* p, uint8_t what, const uint8_t* data, size_t len);
  void AnswerBroken(AnswerPump* p, const char* why, bool untouched);
  void AnswerWriteOut(AnswerPump* p);
  void AnswerRelease(AnswerPump* p);
  void AnswerBodyRead(AnswerPump* p);
  void AnswerBodyEnd(AnswerPump* p, uint8_t outcome);
  void AnswerWatch(AnswerPump* p);
  void FlushAnswers();
  // `hang_up`: the poll saw the client's FIN in (UV_DISCONNECT): a request's short read is followed by one more.
  void AnswerRead(AnswerPump* p, bool hang_up = false);
  void AnswerReadBack(AnswerPump* p);
  void CloseAllAnswers();
  static void OnAnswerPoll(uv_poll_t* handle, int status, int events);

  Host* host_;
  uint32_t handle_;
  std::vector<uint8_t> read_frame_;  // the HEAD frame AnswerRead writes (reused)
  std::unique_ptr<uint8_t[]> body_buf_;  // AnswerBodyRead's recv, behind room for the DATA frame and BODY record headers
  ConnSettings settings_;
  // This connection's largest packet: settings_.max_payload, or loopback_payload on loopback.
  size_t payload_ = 1350;
  bool pmtud_ = false;       // settings_.pmtud on this path (not a loopback one)
  size_t dgram_room_ = 0;    // DatagramRoom() as JS last heard it (Info, kEvDatagramRoom)
  bool server_ = false;
  gnutls_session_t session_ = nullptr;
  ngtcp2_crypto_conn_ref conn_ref_{};
  ngtcp2_conn* conn_ = nullptr;
  std::string alpn_;
  std::string server_name_;
  uv_timer_t* timer_ = nullptr;
  uint64_t timer_due_ = 0;  // ngtcp2's expiry the timer was armed for
  size_t flush_pkts_ = 0;   // packets the last flush wrote
  uint64_t cwnd_stop_ts_ = 0;  // when a flush last stopped on the window (0: it did not)
  bool window_full_ = false;   // the last flush stopped on the window with stream bytes waiting
  uint64_t read_ts_ = 0;       // the first packet read since the last flush that wrote packets
  uint64_t read_bytes_ = 0;    // stream bytes read since the last flush
  bool ack_first_ = false;     // a flush after a bulk read sends before the fds' writes (OXY_QUIC_ACK_FIRST=1)
  bool ack_split_ = false;     // the host acknowledges after a read's first bulk message (OXY_QUIC_ACK_SPLIT=1)
  bool ring_writes_ = true;    // several pumps' writes of a flush in one io_uring_enter (OXY_PUMP_RING=0: not)
  // Which paths ngtcp2 paces (OXY_QUIC_PACING, read per connection: UpdatePacing says why).
  enum class Pacing : uint8_t { kFar, kAlways, kNever };
  Pacing pacing_ = Pacing::kAlways;
  // Bytes of the flushes since the last ngtcp2_conn_update_pkt_tx_time that set no pacing time
  // (ngtcp2 counts them towards the next one: UpdatePacing takes them back out).
  uint64_t unpaced_bytes_ = 0;
  // After a flush of `bytes`: ngtcp2's time for the next packet, or none on a near path.
  void UpdatePacing(uint64_t ts, uint64_t bytes);
  // Flush's packet half: what ngtcp2 lets out now, to the host.
  void WritePackets();
  uint64_t trace_next_ = 0;  // OXY_QUIC_TRACE: when the next line is due
  void Trace(uint64_t now, const char* why);

  bool in_flush_ = false;
  uint64_t flush_gen_ = 0;
  bool closed_ = false;
  bool stateless_reset_ = false;
  bool probing_ = false;
  // Something JS sent waits for the peer's next packet (a stream opened, a probe): the next
  // packet read is reported (kEvAnswered) once; otherwise reads cost JS nothing.
  bool awaiting_answer_ = true;
  bool close_pending_ = false;
  bool close_transport_ = false;
  bool confirmed_ = false;
  // OXY_QUIC_KEY_UPDATE=N (tests): a key update every N packets sent once confirmed (quic-aead.cc's UpdateKey).
  uint64_t key_update_every_ = 0;
  uint64_t key_update_at_ = 0;
  uint64_t close_deadline_ = 0;
  uint64_t close_code_ = 0;
  std::string close_reason_;
  // Server, after its CONNECTION_CLOSE: the packet and its path, answered to late packets.
  bool closing_ = false;
  std::vector<uint8_t> close_packet_;
  sockaddr_storage close_local_{};
  sockaddr_storage close_remote_{};
  socklen_t close_local_len_ = 0;
  socklen_t close_remote_len_ = 0;
  // Packets read while closing, and the count at which the close is sent again (doubling).
  uint64_t closing_reads_ = 0;
  uint64_t closing_next_resend_ = 1;

  IdMap<Stream> streams_;
  std::deque<int64_t> sendq_;
  std::vector<int64_t> dead_;
  std::deque<std::vector<uint8_t>> datagrams_;
  uv_loop_t* loop_;
  IdMap<Pump> pumps_;
  std::vector<int64_t> pump_out_;  // pumps with bytes for their fd, written at the flush
  std::unique_ptr<uint8_t[]> pump_buf_;
  // A pump's read from its fd, at most (OXY_PUMP_READ, read per connection: kPumpReadBytes; =0 64 KiB).
  size_t pump_read_ = 0;
  int64_t linger_seq_ = 0;  // keys of lingering flows pumps: -1, -2, ...
  struct DialPoll {
    Conn* conn;
    double token;
  };
  struct DialState {
    int fd;
    // The socket's watch, wanting nothing once the connect finished; the pump that takes the
    // socket takes it too (one epoll_ctl MOD, not a new registration).
    FdWatch* watch;
    DialPoll* connecting;  // the watch's data while connecting
    int keepalive_s;       // keep-alive still to set (Dial's keepalive_late), else 0
  };
  std::unordered_map<double, DialState> dials_;
  double dial_seq_ = 0;
  // OPEN payloads JS admitted (AdmitOpen), by their bytes.
  struct AdmittedOpen {
    uint8_t addr[16];
    uint8_t addr_len;
    bool keepalive_late;
    int port;
    int keepalive_ms;
    int32_t epoch;
  };
  static constexpr size_t kMaxAdmittedOpens = 256, kMaxAdmittedOpenBytes = 512;
  std::unordered_map<std::string, AdmittedOpen> admitted_opens_;
  const int32_t* open_epoch_ = nullptr;
  std::vector<uint8_t> open_ok_;  // the OK ANSWER a pump attached at the OPEN writes at its connect
  // The dialled OPEN's flows pump, attached and armed here (RecvOpen): true where it was.
  bool PumpAtOpen(Stream* s, double token);
  // The OPEN `payload` dialled if JS admitted it (a token > 0), else 0.
  double DialAdmitted(const std::vector<uint8_t>& payload);
  static void OnDialWatch(FdWatch* w, int events);
  // The dial's socket leaves dials_: its watch to `watch` (wanting nothing, data unset) or freed;
  // the keep-alive it still owes to `keepalive_s` (else it is set here).
  int TakeDialFd(double token, FdWatch** watch, int* keepalive_s = nullptr);
  // Dialled sockets whose keep-alive is set late, in the order they are due (ms on the loop's clock).
  struct KeepAliveDue {
    int64_t id;
    uint64_t serial;
    uint64_t from;  // set from then on
    uint64_t by;    // the sweep's wake-up for it
  };
  std::deque<KeepAliveDue> keepalive_due_;
  uint64_t keepalive_seq_ = 0;
  uv_timer_t* keepalive_timer_ = nullptr;
  // The pumps whose answer waits for the host's FIN (PumpRead), in the order their holds end (one
  // hold time for all): a timerfd (fin_hold_timer_, made at the first hold) wakes the loop at the
  // first live one's end, and the loop sleeps meanwhile. An entry whose pump let go (FIN, later
  // bytes, closed: hold_until 0, or the pump gone) is dropped where it comes to the front.
  std::unique_ptr<SoonTimer> fin_hold_timer_;
  std::deque<int64_t> fin_held_;
  // Lingering flows pumps whose reset waits for their socket's send queue to empty (Pump::reset_by):
  // a timerfd polls them, 250 µs after the last one came, doubling to 64 ms while none is done.
  std::unique_ptr<SoonTimer> reset_flush_timer_;
  std::vector<int64_t> reset_flushing_;
  uint64_t reset_flush_step_ = 0;
  static void OnResetFlushTimer(void* owner);
  // `p` (lingering, reset_by set) is done waiting: nothing queued for or in its socket, or its time is up.
  bool ResetFlushed(Pump* p, uint64_t now);
  static void OnFinHoldTimer(void* owner);
  // Drops the entries at the front that let go; the timer at the first live one's end (or off).
  void FinHoldRearm();
  // `p`'s held answer goes now (`why`: kFinHold*); counted in FinHoldCounts.
  void FinHoldRelease(Pump* p, int why);
  void KeepAliveLater(Pump* p, int keepalive_s);
  static void KeepAliveSweep(uv_timer_t* handle);
  IdMap<AnswerPump> answers_;
  std::vector<int64_t> answer_out_;  // answer pumps with bytes for the client, written at the flush
};

}  // namespace quic
}  // namespace oxy
