// See fastnat.h. Checksums are updated incrementally (RFC 1624) for the words the NAT
// changes: addresses (IPv4 header and TCP pseudo-header) and ports.
//
// Client packets into a TUN with the addon's IFF_VNET_HDR (tun.cc's partialChecksums) go as
// CHECKSUM_PARTIAL: VIRTIO_NET_HDR_F_NEEDS_CSUM at the TCP checksum, whose field is set to the
// pseudo-header sum. The namespace's TCP, which delivers them locally, then does not sum each
// 64 KB segment in software (a TUN write ignores VIRTIO_NET_HDR_F_DATA_VALID: only NEEDS_CSUM
// reaches the skb); had the packet to leave by a link, the kernel would sum it there. So the
// device's own TCP checksum is not verified on this path. That is acceptable: it guards against
// corruption on a link, and there is none between the device's kernel and this TUN (the device
// relay's and our memory, a local SEQPACKET socket); a device that crafts packets chooses their
// checksums too, and reaches only its own flows (a flow is keyed by its client's socket).
//
// A client whose TUN leaves its TCP checksums partial (partialSends: the device relay after
// sendPartial(), once we answered that we take them) sends its TCP packets with the field holding
// the pseudo-header sum. Into a partial TUN that is what FromClient writes anyway; anything else
// of such a client (into a TUN that takes whole checksums, or to JS) is summed afresh first
// (SumTcpChecksum): the device's kernel no longer sums (nor copies, to segment) what it sends.
#include "fastnat.h"

#include "common.h"
#include "fd-set.h"
#include "uring.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <memory>
#include <vector>

namespace oxy {

namespace {

// packetsIn, bytesIn, packetsOut, bytesOut, lastSeen, FINs passed here (1: the client's, 2: the
// kernel's), when the second of them passed (ms)
constexpr int kStride = 7;
constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kAck = 0x10;

}  // namespace

struct Tcp {
  uint32_t version;
  size_t total;  // IP length (link padding after it is ignored)
  size_t l4;
  size_t addr_len;
  size_t src;  // offsets of the addresses
  size_t dst;
  uint8_t flags;
};

namespace {

// Plain TCP packets only: IPv4 without options or fragmentation, IPv6 without extension headers.
bool ParseTcp(const uint8_t* p, size_t length, Tcp* out) {
  if (length < 40) return false;
  uint32_t version = p[0] >> 4;
  size_t total, l4;
  if (version == 4) {
    if ((p[0] & 0x0f) != 5 || p[9] != 6 || (((p[6] << 8) | p[7]) & 0x3fff) != 0) return false;
    total = (p[2] << 8) | p[3];
    l4 = 20;
    *out = {4, total, l4, 4, 12, 16, 0};
  } else if (version == 6) {
    if (p[6] != 6) return false;
    total = 40 + ((p[4] << 8) | p[5]);
    l4 = 40;
    *out = {6, total, l4, 16, 8, 24, 0};
  } else {
    return false;
  }
  if (total > length || total < l4 + 20) return false;
  size_t data_offset = static_cast<size_t>(p[l4 + 12] >> 4) * 4;
  if (data_offset < 20 || l4 + data_offset > total) return false;
  out->flags = p[l4 + 13];
  return true;
}

uint32_t Fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return sum;
}

uint32_t SumWords(const uint8_t* p, size_t length) {
  uint32_t sum = 0;
  for (size_t i = 0; i < length; i += 2) sum += (p[i] << 8) | p[i + 1];
  return sum;
}

// HC' = ~(~HC + ~m + m')
void Adjust(uint8_t* field, uint32_t old_sum, uint32_t new_sum) {
  uint32_t sum = (~((field[0] << 8) | field[1]) & 0xffff) + (~Fold(old_sum) & 0xffff) + Fold(new_sum);
  uint32_t checksum = ~Fold(sum) & 0xffff;
  field[0] = checksum >> 8;
  field[1] = checksum & 0xff;
}

uint16_t Port(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

void Rewrite(uint8_t* p, const Tcp& t, const uint8_t* src, uint16_t sport, const uint8_t* dst, uint16_t dport) {
  uint32_t old_addresses = SumWords(p + t.src, t.addr_len) + SumWords(p + t.dst, t.addr_len);
  uint32_t new_addresses = SumWords(src, t.addr_len) + SumWords(dst, t.addr_len);
  memcpy(p + t.src, src, t.addr_len);
  memcpy(p + t.dst, dst, t.addr_len);
  if (t.version == 4) Adjust(p + 10, old_addresses, new_addresses);
  uint8_t* tcp = p + t.l4;
  uint32_t old_ports = Port(tcp) + Port(tcp + 2);
  tcp[0] = sport >> 8;
  tcp[1] = sport & 0xff;
  tcp[2] = dport >> 8;
  tcp[3] = dport & 0xff;
  Adjust(tcp + 16, old_addresses + old_ports, new_addresses + sport + dport);
}

// struct virtio_net_hdr (linux/virtio_net.h does not compile as C++), in the TUN's byte order
// (the host's), and its VIRTIO_NET_HDR_F_NEEDS_CSUM.
struct VnetHeader {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
};
static_assert(sizeof(VnetHeader) == 10);
constexpr uint8_t kNeedsCsum = 1;

// Writes `packet` to a TUN whose IFF_VNET_HDR the addon keeps, as CHECKSUM_PARTIAL: the TCP
// checksum field becomes the pseudo-header sum (folded, not complemented), as a sender's kernel
// leaves it for a device that sums in hardware.
void PartialHeader(uint8_t* p, const Tcp& t, VnetHeader* header) {
  const size_t tcp_length = t.total - t.l4;
  uint32_t sum = SumWords(p + t.src, t.addr_len) + SumWords(p + t.dst, t.addr_len) + 6 +
                 static_cast<uint32_t>(tcp_length >> 16) + static_cast<uint32_t>(tcp_length & 0xffff);
  sum = Fold(sum);
  p[t.l4 + 16] = static_cast<uint8_t>(sum >> 8);
  p[t.l4 + 17] = static_cast<uint8_t>(sum & 0xff);
  *header = {};
  header->flags = kNeedsCsum;
  header->hdr_len = static_cast<uint16_t>(t.l4 + static_cast<size_t>(p[t.l4 + 12] >> 4) * 4);
  header->csum_start = static_cast<uint16_t>(t.l4);
  header->csum_offset = 16;
}

void CopyAddress(Napi::Value value, uint8_t out[16]) {
  ByteView bytes;
  memset(out, 0, 16);
  if (GetBytes(value, &bytes)) memcpy(out, bytes.data, bytes.length < 16 ? bytes.length : 16);
}

// This thread's batch of TUN writes (FlushTunWrites, fastnat.h): up to kSlots writes queued, then
// submitted in one io_uring_enter. Each is a writev with RWF_NOWAIT: io_uring runs it inline in the
// enter (a TUN supports IOCB_NOWAIT), and a write the TUN would make wait fails with EAGAIN there
// instead of going to an io-wq worker (REQ_F_NOWAIT), whatever a device did to its file's
// O_NONBLOCK. So every completion is in the ring when the enter returns: the packets' memory,
// headers and iovecs are free again, and nothing of ours is held by the kernel past Submit.
// A per-thread ring (SINGLE_ISSUER: a worker's loop has its own); OXY_IP_TUN_RING=0, or an
// io_uring_setup the kernel refuses (ENOSYS, EPERM), leaves Get() null: one call per write.
class TunWrites {
 public:
  static constexpr unsigned kSlots = 64;

  static TunWrites* Get() {
    static const bool on = EnvSwitchOn("OXY_IP_TUN_RING");
    thread_local bool tried = false;
    if (!tried && on) {
      tried = true;
      auto writes = std::make_unique<TunWrites>();
      if (writes->ring_.Setup(kSlots) == 0) current() = std::move(writes);
    }
    return current().get();
  }

  // Queued in order after the others (the batch is submitted first when it is full).
  void Add(int fd, uint8_t* packet, size_t length, const uint8_t* header, const FastNat::TunWrite& write) {
    if (count_ == kSlots) Submit();
    io_uring_sqe* sqe = ring_.Sqe();
    if (sqe == nullptr) {  // cannot happen (the ring has kSlots entries, all reaped at Submit)
      Submit();
      sqe = ring_.Sqe();
      if (sqe == nullptr) return write.nat->Written(write, -EAGAIN);
    }
    Slot& slot = slots_[count_];
    slot.write = write;
    unsigned iovs = 0;
    if (header != nullptr) {
      memcpy(slot.header, header, sizeof(slot.header));
      slot.iov[iovs++] = {slot.header, sizeof(slot.header)};
    }
    slot.iov[iovs++] = {packet, length};
    sqe->opcode = IORING_OP_WRITEV;
    sqe->fd = fd;
    sqe->addr = reinterpret_cast<uint64_t>(slot.iov);
    sqe->len = iovs;
    sqe->off = static_cast<uint64_t>(-1);  // the file's position: a TUN has none
    sqe->rw_flags = RWF_NOWAIT;
    sqe->user_data = count_;
    count_++;
  }

  // `count` reads of `fd` (at most kSlots), each a readv with RWF_NOWAIT into iovs[i] (`parts` of
  // its iovecs), submitted after the queued writes in the same enter; results[i]: bytes, or -errno
  // (-EAGAIN: none there). Like the writes, they complete inline: the buffers are free again when
  // this returns.
  void Read(int fd, iovec (*iovs)[2], unsigned parts, unsigned count, int* results, TunReader reader) {
    if (count_ + count > kSlots) Submit();
    for (unsigned i = 0; i < count; i++) {
      results[i] = -EAGAIN;
      io_uring_sqe* sqe = ring_.Sqe();
      if (sqe == nullptr) {  // cannot happen (kSlots entries, all reaped at Submit)
        count = i;
        break;
      }
      sqe->opcode = IORING_OP_READV;
      sqe->fd = fd;
      sqe->addr = reinterpret_cast<uint64_t>(iovs[i]);
      sqe->len = parts;
      sqe->off = static_cast<uint64_t>(-1);
      sqe->rw_flags = RWF_NOWAIT;
      sqe->user_data = kReadTag | i;
    }
    (reader == TunReader::kUpgrade ? upgrade_reads_ : reads_) += count;
    Submit(count, results);
  }

  // Submits the batch and counts each write's outcome (FastNat::Written), in order; and `reads`
  // reads queued after it (Read), whose results go to read_results.
  void Submit(unsigned reads = 0, int* read_results = nullptr) {
    if (count_ == 0 && reads == 0) return;
    const unsigned want = count_ + reads;
    unsigned got = 0;
    auto reap = [&] {
      ring_.Reap([&](const io_uring_cqe& cqe) {
        if (cqe.user_data & kReadTag) {
          const uint64_t i = cqe.user_data & ~kReadTag;
          if (i >= reads) return;
          got++;
          read_results[i] = cqe.res;
          return;
        }
        if (cqe.user_data >= count_) return;
        got++;
        const FastNat::TunWrite& write = slots_[cqe.user_data].write;
        write.nat->Written(write, cqe.res);
      });
    };
    enters_++;
    writes_ += count_;
    ring_.Enter(0);
    reap();
    // Only if the kernel did not run them all inline (not seen): wait for the rest, bounded.
    for (int tries = 0; got < want && tries < 1000; tries++) {
      ring_.Enter(want - got, 1000000);
      reap();
    }
    count_ = 0;
    if (got < want) {
      // Writes still in the kernel hold this object's iovecs and headers: it is kept (leaked), and
      // this thread writes one call at a time from now on.
      current().release();
    }
  }

  static double writes() { return writes_; }
  static double enters() { return enters_; }
  static double reads() { return reads_; }
  static double upgrade_reads() { return upgrade_reads_; }

 private:
  struct Slot {
    iovec iov[2];
    uint8_t header[10];
    FastNat::TunWrite write;
  };

  static std::unique_ptr<TunWrites>& current() {
    thread_local std::unique_ptr<TunWrites> writes;
    return writes;
  }

  static constexpr uint64_t kReadTag = uint64_t(1) << 63;

  Ring ring_;
  unsigned count_ = 0;
  Slot slots_[kSlots];
  static thread_local double writes_;
  static thread_local double enters_;
  static thread_local double reads_;
  static thread_local double upgrade_reads_;
};

thread_local double TunWrites::writes_ = 0;
thread_local double TunWrites::enters_ = 0;
thread_local double TunWrites::reads_ = 0;
thread_local double TunWrites::upgrade_reads_ = 0;

}  // namespace

bool CompleteChecksum(uint8_t* packet, size_t length, PartialSum sum) {
  const size_t field = size_t(sum.start) + sum.offset;
  if (field + 2 > length) return false;
  // 64-bit little-endian words with the end-around carry, folded and byte-swapped at the end
  // (RFC 1071: the sum does not depend on the byte order it is taken in).
  const uint8_t* p = packet + sum.start;
  size_t n = length - sum.start;
  uint64_t total = 0;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t word;
    memcpy(&word, p, 8);
    total += word;
    total += total < word;
  }
  if (n > 0) {
    uint64_t word = 0;
    memcpy(&word, p, n);
    total += word;
    total += total < word;
  }
  total = (total & 0xffffffff) + (total >> 32);
  total = (total & 0xffff) + (total >> 16);
  total = (total & 0xffff) + (total >> 16);
  total = (total & 0xffff) + (total >> 16);
  uint16_t folded = __builtin_bswap16(static_cast<uint16_t>(total));
  uint16_t checksum = static_cast<uint16_t>(~folded);
  if (checksum == 0) checksum = 0xffff;
  packet[field] = static_cast<uint8_t>(checksum >> 8);
  packet[field + 1] = static_cast<uint8_t>(checksum & 0xff);
  return true;
}

void TunPartialHeader(uint8_t* packet, size_t length, uint8_t header[10]) {
  Tcp t;
  VnetHeader h = {};
  if (ParseTcp(packet, length, &t) && t.total == length) PartialHeader(packet, t, &h);
  memcpy(header, &h, sizeof(h));
}

void ResolveTunRead(uint8_t* packet, size_t length, const uint8_t header[10]) {
  VnetHeader h;
  memcpy(&h, header, sizeof(h));
  if (!(h.flags & kNeedsCsum)) return;
  Tcp t;
  if (ParseTcp(packet, length, &t) && t.total == length && h.csum_start == t.l4 && h.csum_offset == 16) return;
  CompleteChecksum(packet, length, {h.csum_start, h.csum_offset});
}

void SumTcpChecksum(uint8_t* packet, size_t length) {
  Tcp t;
  if (!ParseTcp(packet, length, &t)) return;
  VnetHeader unused;
  PartialHeader(packet, t, &unused);  // the field: the pseudo-header sum
  CompleteChecksum(packet, t.total, {uint16_t(t.l4), 16});
}

ssize_t WriteTunPartial(int fd, uint8_t* packet, size_t length) {
  uint8_t header[sizeof(VnetHeader)];
  TunPartialHeader(packet, length, header);
  iovec iov[2] = {{header, sizeof(header)}, {packet, length}};
  return writev(fd, iov, 2);
}

ssize_t WriteTunNoWait(int fd, uint8_t* packet, size_t length) {
  uint8_t header[sizeof(VnetHeader)];
  TunPartialHeader(packet, length, header);
  iovec iov[2] = {{header, sizeof(header)}, {packet, length}};
  ssize_t n;
  do {
    n = pwritev2(fd, iov, 2, -1, RWF_NOWAIT);
  } while (n < 0 && errno == EINTR);
  return n;
}

// The JS face: new FastNat(stats: Float64Array, fastClose: boolean, nativeFins: boolean); flow ids
// run from 0 to stats.length / 7 - 1.
class FastNatWrap : public Napi::ObjectWrap<FastNatWrap> {
 public:
  static Napi::Function Init(Napi::Env env) {
    return DefineClass(env, "FastNat",
                       {InstanceMethod("add", &FastNatWrap::Add), InstanceMethod("remove", &FastNatWrap::Remove),
                        InstanceMethod("totals", &FastNatWrap::Totals), InstanceMethod("admit", &FastNatWrap::Admit),
                        InstanceMethod("forget", &FastNatWrap::Forget), InstanceMethod("ticket", &FastNatWrap::AddTicket),
                        InstanceMethod("dropTickets", &FastNatWrap::DropTickets), InstanceMethod("takeBorn", &FastNatWrap::TakeBorn)});
  }

  explicit FastNatWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FastNatWrap>(info) {
    Napi::Float64Array stats = info[0].As<Napi::Float64Array>();
    stats_ = Napi::Persistent(stats);
    bool fast_close = info.Length() < 2 || info[1].ToBoolean().Value();
    bool native_fins = fast_close && info.Length() >= 3 && info[2].ToBoolean().Value();
    nat_ = std::make_shared<FastNat>(stats.Data(), static_cast<uint32_t>(stats.ElementLength() / kStride), fast_close, native_fins);
  }

  ~FastNatWrap() override { nat_->Detach(); }

  std::shared_ptr<FastNat> nat() const { return nat_; }

 private:
  // add(id, peer, src, sport, dst, dport, nat, natPort, listen, listenPort): addresses as 4 or 16 bytes.
  Napi::Value Add(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    FastNat& n = *nat_;
    uint32_t id = info[0].As<Napi::Number>().Uint32Value();
    uint32_t peer = info[1].As<Napi::Number>().Uint32Value();
    if (id >= n.capacity_ || n.by_id_.count(id) != 0 || n.peers_.count(peer) == 0) return Napi::Boolean::New(env, false);
    auto* entry = new FastNat::Entry();
    memset(entry, 0, sizeof(*entry));
    entry->id = id;
    entry->peer = peer;
    uint32_t version = info[2].As<Napi::Uint8Array>().ByteLength() == 4 ? 4 : 6;
    entry->client.peer = peer;
    entry->client.version = version;
    CopyAddress(info[2], entry->client.src);
    entry->client.sport = static_cast<uint16_t>(info[3].As<Napi::Number>().Uint32Value());
    CopyAddress(info[4], entry->client.dst);
    entry->client.dport = static_cast<uint16_t>(info[5].As<Napi::Number>().Uint32Value());
    entry->nat.version = version;
    CopyAddress(info[6], entry->nat.addr);
    entry->nat.port = static_cast<uint16_t>(info[7].As<Napi::Number>().Uint32Value());
    entry->listen.version = version;
    CopyAddress(info[8], entry->listen.addr);
    entry->listen.port = static_cast<uint16_t>(info[9].As<Napi::Number>().Uint32Value());
    if (n.by_client_.count(entry->client) != 0 || n.by_nat_.count(entry->nat) != 0) {
      delete entry;
      return Napi::Boolean::New(env, false);
    }
    n.by_client_[entry->client] = entry;
    n.by_nat_[entry->nat] = entry;
    n.by_id_[id] = entry;
    for (int i = 0; i < kStride; i++) n.stats_[id * kStride + i] = 0;
    return Napi::Boolean::New(env, true);
  }

  // admit(peer, dst (4 bytes), dport): a SYN of that peer to there may be registered at once.
  Napi::Value Admit(const Napi::CallbackInfo& info) {
    FastNat::AdmitKey key;
    memset(&key, 0, sizeof(key));
    key.peer = info[0].As<Napi::Number>().Uint32Value();
    uint8_t dst[16];
    CopyAddress(info[1], dst);
    memcpy(key.dst, dst, 4);
    key.dport = static_cast<uint16_t>(info[2].As<Napi::Number>().Uint32Value());
    nat_->admitted_[key] = true;
    return info.Env().Undefined();
  }

  // forget(peer): the peer's admitted destinations are gone (its SYNs go to JS again).
  Napi::Value Forget(const Napi::CallbackInfo& info) {
    uint32_t peer = info[0].As<Napi::Number>().Uint32Value();
    auto& admitted = nat_->admitted_;
    for (auto it = admitted.begin(); it != admitted.end();) it = it->first.peer == peer ? admitted.erase(it) : std::next(it);
    return info.Env().Undefined();
  }

  // ticket(peer, id, nat, natPort, listen, listenPort): a flow id and IPv4 NAT slot JS reserved for
  // the peer's next native SYN.
  Napi::Value AddTicket(const Napi::CallbackInfo& info) {
    FastNat::Ticket ticket;
    memset(&ticket, 0, sizeof(ticket));
    uint32_t peer = info[0].As<Napi::Number>().Uint32Value();
    ticket.id = info[1].As<Napi::Number>().Uint32Value();
    ticket.nat.version = 4;
    CopyAddress(info[2], ticket.nat.addr);
    ticket.nat.port = static_cast<uint16_t>(info[3].As<Napi::Number>().Uint32Value());
    ticket.listen.version = 4;
    CopyAddress(info[4], ticket.listen.addr);
    ticket.listen.port = static_cast<uint16_t>(info[5].As<Napi::Number>().Uint32Value());
    nat_->tickets_[peer].push_back(ticket);
    return info.Env().Undefined();
  }

  // dropTickets(peer): the peer's unused tickets are gone (JS frees what they reserved).
  Napi::Value DropTickets(const Napi::CallbackInfo& info) {
    nat_->tickets_.erase(info[0].As<Napi::Number>().Uint32Value());
    return info.Env().Undefined();
  }

  // takeBorn() -> the records of the flows born since the last call (see FastNat::born_), or undefined.
  Napi::Value TakeBorn(const Napi::CallbackInfo& info) {
    auto& born = nat_->born_;
    if (born.empty()) return info.Env().Undefined();
    Napi::Buffer<uint8_t> records = Napi::Buffer<uint8_t>::Copy(info.Env(), born.data(), born.size());
    born.clear();
    nat_->born_read_ = 0;
    return records;
  }

  Napi::Value Remove(const Napi::CallbackInfo& info) {
    auto it = nat_->by_id_.find(info[0].As<Napi::Number>().Uint32Value());
    if (it != nat_->by_id_.end()) nat_->Erase(it->second);
    return info.Env().Undefined();
  }

  // totals() -> [client → kernel, kernel → client, lost, refused] packets handled here since
  // creation; refused: kernel packets a full client socket did not take, handed to JS. Then this
  // thread's same-turn reads so far: accepted sockets (fd-set.h), TUN batches (RunTunDue), and of
  // those the ones that stopped at the count of packets the writes made (no EAGAIN read); then this
  // thread's TUN writes submitted in batches (FlushTunWrites), the io_uring_enter calls they took,
  // and the TUN reads made through them (ReadTunBatch): handed-over devices' TUNs, upgrade TUNs.
  Napi::Value Totals(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Array result = Napi::Array::New(env, 11);
    for (uint32_t i = 0; i < 4; i++) result.Set(i, nat_->totals_[i]);
    result.Set(4u, FdWatchKicks());
    result.Set(5u, TunDueReads());
    result.Set(6u, TunDueCounted());
    result.Set(7u, TunRingWrites());
    result.Set(8u, TunRingEnters());
    result.Set(9u, TunRingReads());
    result.Set(10u, TunRingUpgradeReads());
    return result;
  }

  Napi::Reference<Napi::Float64Array> stats_;
  std::shared_ptr<FastNat> nat_;
};

FastNat::~FastNat() {
  for (auto& [id, entry] : by_id_) delete entry;
}

void FastNat::Detach() {
  for (auto& [id, entry] : by_id_) delete entry;
  by_id_.clear();
  by_client_.clear();
  by_nat_.clear();
  stats_ = nullptr;
  tun_fd_ = -1;
}

std::shared_ptr<FastNat> FastNat::From(Napi::Value value) {
  if (!value.IsObject()) return nullptr;
  // Only our JS wrapper (native/fast-nat.ts) passes these.
  FastNatWrap* wrap = Napi::ObjectWrap<FastNatWrap>::Unwrap(value.As<Napi::Object>());
  return wrap == nullptr ? nullptr : wrap->nat();
}

uint32_t FastNat::AddPeer(FastPeer* peer) {
  uint32_t id = next_peer_++;
  peers_[id] = peer;
  return id;
}

void FastNat::DropPeer(FastPeer* peer) {
  for (auto it = peers_.begin(); it != peers_.end();) {
    if (it->second != peer) {
      ++it;
      continue;
    }
    uint32_t id = it->first;
    it = peers_.erase(it);
    tickets_.erase(id);
    for (auto a = admitted_.begin(); a != admitted_.end();) a = a->first.peer == id ? admitted_.erase(a) : std::next(a);
    std::vector<Entry*> gone;
    for (auto& [flow, entry] : by_id_)
      if (entry->peer == id) gone.push_back(entry);
    for (Entry* entry : gone) Erase(entry);
  }
}

void FastNat::BeginKernelBatch() {
  batch_++;
  for (auto& [id, peer] : peers_) peer->blocked = false;
}

bool FastNat::ToJs(Entry* entry, uint8_t flags, bool from_kernel) {
  // After an RST every packet of the flow is JS's (it ends the flow).
  if (flags & kRst) {
    entry->slow = true;
    return true;
  }
  if (!fast_close_) {
    // JS keeps the TCP state: SYNs (handshake, retransmits, a reused tuple) are its, and after a
    // FIN every packet of this flow is.
    if (flags & kFin) entry->slow = true;
    return (flags & (kSyn | kFin)) != 0;
  }
  // The kernel's SYN-ACK needs no judgement; a client's SYN (a retransmit, a reused tuple) does.
  if (flags & kSyn) return !(from_kernel && (flags & kAck));
  // Native FINs: the FIN passes here and JS reads that it did with the counters (Fin).
  if (native_fins_) return false;
  // JS sees every FIN (the flow's close and linger are its); what follows it in the same batch
  // goes to JS too, since JS's packets leave after the batch's native ones.
  if (flags & kFin) {
    entry->held_in = batch_;
    return true;
  }
  return entry->held_in == batch_;
}

void FastNat::Erase(Entry* entry) {
  by_client_.erase(entry->client);
  by_nat_.erase(entry->nat);
  by_id_.erase(entry->id);
  delete entry;
}

void FastNat::Fin(uint32_t id, bool from_kernel, double now) {
  double* s = stats_ + id * kStride;
  const double before = s[5];
  const double after = double(int(before) | (from_kernel ? 2 : 1));
  s[5] = after;
  if (after == 3 && before != 3 && s[6] == 0) s[6] = now;
}

void FastNat::Count(uint32_t id, int offset, size_t bytes, double now) {
  double* s = stats_ + id * kStride;
  s[offset] += 1;
  s[offset + 1] += static_cast<double>(bytes);
  s[4] = now;
}

namespace {
bool FinKicks() {
  static const bool on = EnvSwitchOn("OXY_FIN_KICK");
  return on;
}
}  // namespace

FastNat::Entry* FastNat::Born(const Tuple& key, const uint8_t* packet, const Tcp& t) {
  // Without fast close the kernel's SYN-ACK would go to JS before JS knows the flow (it is read
  // before the batch's JS runs): no native SYNs then.
  if (!fast_close_ || admitted_.empty() || t.version != 4 || (t.flags & (kSyn | kAck | kRst | kFin)) != kSyn) return nullptr;
  AdmitKey admit;
  memset(&admit, 0, sizeof(admit));
  admit.peer = key.peer;
  memcpy(admit.dst, key.dst, 4);
  admit.dport = key.dport;
  if (admitted_.count(admit) == 0) return nullptr;
  auto tickets = tickets_.find(key.peer);
  if (tickets == tickets_.end() || tickets->second.empty()) return nullptr;
  const Ticket ticket = tickets->second.back();
  if (ticket.id >= capacity_ || by_id_.count(ticket.id) != 0 || by_nat_.count(ticket.nat) != 0) return nullptr;
  tickets->second.pop_back();
  auto* entry = new Entry();
  memset(entry, 0, sizeof(*entry));
  entry->id = ticket.id;
  entry->peer = key.peer;
  entry->client = key;
  entry->nat = ticket.nat;
  entry->listen = ticket.listen;
  by_client_[entry->client] = entry;
  by_nat_[entry->nat] = entry;
  by_id_[entry->id] = entry;
  for (int i = 0; i < kStride; i++) stats_[entry->id * kStride + i] = 0;
  uint8_t record[24];
  memcpy(record, &entry->id, 4);
  memcpy(record + 4, &key.peer, 4);
  memcpy(record + 8, &key.sport, 2);
  memcpy(record + 10, &key.dport, 2);
  memcpy(record + 12, key.src, 4);
  memcpy(record + 16, key.dst, 4);
  memcpy(record + 20, packet + t.l4 + 4, 4);  // the SYN's sequence number, as sent
  born_.insert(born_.end(), record, record + sizeof(record));
  return entry;
}

void FastNat::ReadBornSynAcks() {
  if (born_read_ >= born_.size()) return;
  const auto synacks = static_cast<uint32_t>((born_.size() - born_read_) / 24);
  born_read_ = born_.size();
  ReadTunsNow(synacks);
  FlushTunWrites();
}

bool FastNat::FromClient(uint32_t peer, uint8_t* packet, size_t length, double now) {
  if (tun_fd_ < 0 || stats_ == nullptr || (by_client_.empty() && admitted_.empty())) return false;
  Tcp t;
  if (!ParseTcp(packet, length, &t)) return false;
  Tuple key;
  memset(&key, 0, sizeof(key));
  key.peer = peer;
  key.version = t.version;
  memcpy(key.src, packet + t.src, t.addr_len);
  memcpy(key.dst, packet + t.dst, t.addr_len);
  key.sport = Port(packet + t.l4);
  key.dport = Port(packet + t.l4 + 2);
  auto it = by_client_.find(key);
  Entry* entry;
  if (it == by_client_.end()) {
    entry = Born(key, packet, t);
    if (entry == nullptr) return false;
  } else {
    entry = it->second;
    if (entry->slow || ToJs(entry, t.flags, false)) return false;
  }
  Rewrite(packet, t, entry->nat.addr, entry->nat.port, entry->listen.addr, entry->listen.port);
  // A TUN that takes only whole checksums, from a client that may send them partial: summed here.
  if (!tun_partial_) {
    auto peer_it = peers_.find(peer);
    if (peer_it != peers_.end() && peer_it->second->sends_partial) SumTcpChecksum(packet, t.total);
  }
  TunWrite write{};
  write.nat = this;
  write.id = entry->id;
  write.length = t.total;
  write.now = now;
  // With payload or a FIN, the flow's accepted socket is readable once it is written: its pump
  // reads it (or its end) in this turn, not at the loop's next poll (OXY_FIN_KICK=0: payload only).
  const size_t data_offset = static_cast<size_t>(packet[t.l4 + 12] >> 4) * 4;
  write.kick = t.total > t.l4 + data_offset || ((t.flags & kFin) && FinKicks());
  write.version = entry->nat.version;
  memcpy(write.addr, entry->nat.addr, sizeof(write.addr));
  write.port = entry->nat.port;
  VnetHeader header;
  if (tun_partial_) PartialHeader(packet, t, &header);
  WriteToTun(tun_fd_, packet, t.total, tun_partial_ ? reinterpret_cast<const uint8_t*>(&header) : nullptr, write);
  Count(entry->id, 0, t.total, now);
  if (t.flags & kFin) Fin(entry->id, false, now);
  return true;
}

bool FastNat::FromKernel(uint8_t* packet, size_t length, double now, const PartialSum* partial) {
  if (stats_ == nullptr || by_nat_.empty()) return false;
  Tcp t;
  if (!ParseTcp(packet, length, &t)) return false;
  Endpoint key;
  memset(&key, 0, sizeof(key));
  key.version = t.version;
  memcpy(key.addr, packet + t.dst, t.addr_len);
  key.port = Port(packet + t.l4 + 2);
  auto it = by_nat_.find(key);
  if (it == by_nat_.end() || it->second->slow) return false;
  Entry* entry = it->second;
  if (ToJs(entry, t.flags, true)) return false;
  auto peer_it = peers_.find(entry->peer);
  if (peer_it == peers_.end()) return false;
  FastPeer* peer = peer_it->second;
  if (peer->fd < 0 || (!peer->tun && (peer->js_backlog || peer->blocked))) return false;
  // A client that does not take partial checksums gets the sum (before the NAT adjusts it).
  if (partial && !peer->partial && !CompleteChecksum(packet, length, *partial)) return false;
  Queued& q = queued_.emplace_back();
  q.written = false;
  q.partial = partial && peer->partial;
  if (q.partial) q.sum = *partial;
  q.peer = peer;
  q.packet = packet;
  q.length = t.total;
  q.id = entry->id;
  q.header = uint32_t(t.l4 + 20);
  q.fin = (t.flags & kFin) != 0;
  memcpy(q.saved, packet, q.header);
  queued_now_ = now;
  Rewrite(packet, t, entry->client.dst, entry->client.dport, entry->client.src, entry->client.sport);
  return true;
}

void FastNat::FlushKernel(std::vector<uint8_t>* refused) {
  refused->assign(queued_.size(), 0);
  std::vector<uint8_t> done(queued_.size(), 0);
  std::vector<size_t> mine;
  std::vector<mmsghdr> msgs;
  std::vector<iovec> iovs;
  // One client at a time (mostly one per batch), its packets in order.
  for (size_t first = 0; first < queued_.size(); first++) {
    if (done[first]) continue;
    FastPeer* peer = queued_[first].peer;
    mine.clear();
    for (size_t i = first; i < queued_.size(); i++) {
      if (queued_[i].peer != peer) continue;
      mine.push_back(i);
      done[i] = 1;
    }
    if (peer->tun) {
      // A device's TUN: a write each (it has no sendmmsg; the batch's go in one io_uring_enter, at
      // the end, or with the reader's next reads: QueueTunWrites), lost if it is not taken.
      for (size_t i : mine) {
        if (!queued_[i].written) WriteQueuedToTun(queued_[i]);
      }
      continue;
    }
    size_t next = 0;
    while (next < mine.size()) {
      size_t count = mine.size() - next;
      msgs.assign(count, mmsghdr{});
      iovs.resize(count);
      for (size_t k = 0; k < count; k++) {
        const Queued& q = queued_[mine[next + k]];
        iovs[k] = {q.packet, q.length};
        msgs[k].msg_hdr.msg_iov = &iovs[k];
        msgs[k].msg_hdr.msg_iovlen = 1;
      }
      int sent = sendmmsg(peer->fd, msgs.data(), unsigned(count), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (sent < 0 && errno == EINTR) continue;
      if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        // JS queues these behind the full socket, in order, and the rest of the TUN batch for it.
        peer->blocked = true;
        for (; next < mine.size(); next++) {
          Queued& q = queued_[mine[next]];
          memcpy(q.packet, q.saved, q.header);
          if (q.partial) CompleteChecksum(q.packet, q.length, q.sum);  // JS's packets are whole
          (*refused)[mine[next]] = 1;
          totals_[3]++;
        }
        break;
      }
      if (sent < 0) {  // lost, as a failed send() lost it
        totals_[2]++;
        next++;
        continue;
      }
      for (int k = 0; k < sent; k++) {
        const Queued& q = queued_[mine[next + size_t(k)]];
        totals_[1]++;
        if (stats_ == nullptr) continue;
        Count(q.id, 2, q.length, queued_now_);
        if (q.fin) Fin(q.id, true, queued_now_);
      }
      next += size_t(sent);
    }
  }
  FlushTunWrites();
  queued_.clear();
}

namespace {
// OXY_IP_TUN_RING_READS=0: the TUNs' reads one call each, the writes still batched (for pairs of the
// reads alone; a quiet micro here found a ring read 0.1-0.6 us dearer per packet than readv).
bool RingReads() {
  static const bool on = EnvSwitchOn("OXY_IP_TUN_RING_READS");
  return on;
}
}  // namespace

void FastNat::QueueTunWrites() {
  if (TunWrites::Get() == nullptr || !RingReads()) return;
  for (Queued& q : queued_) {
    if (!q.peer->tun || q.written) continue;
    q.written = true;
    WriteQueuedToTun(q);
  }
}

void FastNat::WriteQueuedToTun(const Queued& q) {
  uint8_t header[sizeof(VnetHeader)];
  TunPartialHeader(q.packet, q.length, header);
  TunWrite write{};
  write.nat = this;
  write.id = q.id;
  write.length = q.length;
  write.now = queued_now_;
  write.to_client = true;
  write.fin = q.fin;
  WriteToTun(q.peer->fd, q.packet, q.length, header, write);
}

void FastNat::WriteToTun(int fd, uint8_t* packet, size_t length, const uint8_t* header, const TunWrite& write) {
  if (TunWrites* batch = TunWrites::Get()) return batch->Add(fd, packet, length, header, write);
  // One call now: a device's TUN with RWF_NOWAIT (it may have cleared O_NONBLOCK), ours as it is.
  iovec iov[2];
  int count = 0;
  if (header != nullptr) iov[count++] = {const_cast<uint8_t*>(header), sizeof(VnetHeader)};
  iov[count++] = {packet, length};
  ssize_t n;
  do {
    if (write.to_client) n = pwritev2(fd, iov, count, -1, RWF_NOWAIT);
    else n = header != nullptr ? writev(fd, iov, count) : ::write(fd, packet, length);
  } while (n < 0 && errno == EINTR);
  Written(write, n < 0 ? -errno : int(n));
}

void FastNat::Written(const TunWrite& write, int result) {
  if (!write.to_client) {
    // A TUN takes writes without a queue (no EAGAIN): a refused packet is lost, as JS counts it.
    totals_[result < 0 ? 2 : 0]++;
    if (result > 0 && write.kick) KickFdWatchPeer(int(write.version), write.addr, write.port);
    return;
  }
  if (result < 0) {
    totals_[2]++;
    return;
  }
  totals_[1]++;
  if (stats_ == nullptr) return;
  Count(write.id, 2, write.length, write.now);
  if (write.fin) Fin(write.id, true, write.now);
}

void FlushTunWrites() {
  if (TunWrites* batch = TunWrites::Get()) batch->Submit();
}

bool ReadTunBatch(int fd, iovec (*iovs)[2], unsigned parts, unsigned count, int* results, TunReader reader) {
  TunWrites* batch = RingReads() ? TunWrites::Get() : nullptr;
  if (batch == nullptr) return false;
  batch->Read(fd, iovs, parts, count, results, reader);
  return true;
}

double TunRingReads() { return TunWrites::reads(); }
double TunRingUpgradeReads() { return TunWrites::upgrade_reads(); }
double TunRingWrites() { return TunWrites::writes(); }
double TunRingEnters() { return TunWrites::enters(); }

Napi::Function InitFastNat(Napi::Env env) { return FastNatWrap::Init(env); }

namespace {

// natRewrite(packet, src, sport, dst, dport) → a copy of `packet` as the fast path rewrites a
// flow's packet (ParseTcp, Rewrite: addresses, ports, the IPv4 header's and TCP's checksums updated
// in place), or undefined where ParseTcp leaves the packet to JS. For the test that compares it
// with packet/rewrite.ts, the JS NAT's rewrite.
Napi::Value NatRewriteJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ByteView packet, src, dst;
  if (!GetBytes(info[0], &packet) || !GetBytes(info[1], &src) || !GetBytes(info[3], &dst))
    throw Napi::TypeError::New(env, "natRewrite: buffers expected");
  std::vector<uint8_t> p(packet.data, packet.data + packet.length);
  Tcp t;
  if (!ParseTcp(p.data(), p.size(), &t)) return env.Undefined();
  if (src.length != t.addr_len || dst.length != t.addr_len) throw Napi::TypeError::New(env, "natRewrite: addresses of the packet's family expected");
  Rewrite(p.data(), t, src.data, uint16_t(info[2].As<Napi::Number>().Uint32Value()), dst.data, uint16_t(info[4].As<Napi::Number>().Uint32Value()));
  return Napi::Buffer<uint8_t>::Copy(env, p.data(), p.size());
}

}  // namespace

void InitFastNatFunctions(Napi::Env env, Napi::Object exports) {
  exports.Set("natRewrite", Napi::Function::New(env, NatRewriteJs, "natRewrite"));
}

double NowMs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec / 1000000);
}

}  // namespace oxy
