// The IP edge's fast path for established upgraded TCP flows: a NAT table the SEQPACKET
// sockets and the upgrade TUN consult in their read batches, on the loop thread, before
// anything reaches JS. A client packet of a registered flow is NATed and written to the TUN
// there; a kernel packet for one is un-NATed and sent to its client's socket. Anything else
// (SYN, FIN, RST, fragments, IP options, unknown flows, a client socket with messages queued
// in JS) goes to JS as before, and a flow that showed RST stays with JS from then on. With
// `fast close` (the default) the kernel's SYN-ACK passes here too, and after a FIN only the
// rest of that read batch goes to JS (so nothing overtakes the FIN): the close's ACKs do not
// cross into JS. Without it, a flow that showed FIN stays with JS as well. With `native FINs`
// (the default, with fast close) the FINs pass here as well: each is marked in the flow's
// counters, which JS reads at its sweep (and before anything that needs the flow's close).
// JS registers a flow at its first SYN and removes it when the flow ends;
// counters and the last-seen time go to a Float64Array JS reads when it needs them.
#pragma once

#include <napi.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <vector>

namespace oxy {

// What a SEQPACKET socket lends the fast path.
struct FastPeer {
  int fd = -1;
  // JS holds messages queued for this socket (it watches for writable): sends must wait behind them.
  bool js_backlog = false;
  // A send failed with EAGAIN in the current TUN batch: the rest of the batch goes through JS.
  bool blocked = false;
  // Its client said (partialChecksums in its first message) that it writes TCP packets to its TUN
  // as CHECKSUM_PARTIAL (WriteTunPartial), summing nothing it was sent: a kernel packet whose
  // checksum the kernel left partial goes to it as it is.
  bool partial = false;
  // Its client said (partialSends in its first message, and we answered that we take them) that
  // its TUN leaves TCP checksums partial, which it sends as they are (ResolveTunRead): a TCP
  // packet the fast path does not write to a partial TUN is summed here first (SumTcpChecksum).
  bool sends_partial = false;
  // `fd` is its device's TUN, handed over (SeqpacketSocket's adoptTun): packets are written to it
  // (WriteTunNoWait) instead of sent, and one the TUN does not take is lost, never refused.
  bool tun = false;
};

// Where the checksum of a packet read as CHECKSUM_PARTIAL goes (its virtio header's csum_start and
// csum_offset); CompleteChecksum fills it in.
struct PartialSum {
  uint16_t start;
  uint16_t offset;
};
// The ones' complement sum from `start` to the end, with the field holding the pseudo-header sum
// as the kernel left it, stored at start + offset (as skb_checksum_help does). False when the
// positions do not fit the packet (it is left as it is).
bool CompleteChecksum(uint8_t* packet, size_t length, PartialSum sum);

// A plain TCP packet's parse (fastnat.cc).
struct Tcp;

// The table itself, shared (std::shared_ptr) by its JS object and the sockets and TUN that
// use it, so no finalization order leaves one of them with a dangling pointer.
class FastNat {
 public:
  FastNat(double* stats, uint32_t capacity, bool fast_close, bool native_fins)
      : stats_(stats), capacity_(capacity), fast_close_(fast_close), native_fins_(native_fins) {}
  ~FastNat();

  // The table behind a JS FastNat object (null if it is not one).
  static std::shared_ptr<FastNat> From(Napi::Value value);
  // The JS object is gone (its stats array with it): handle nothing any more.
  void Detach();

  // The peer gets an id JS names it by in add(); DropPeer forgets its flows (socket closed).
  uint32_t AddPeer(FastPeer* peer);
  void DropPeer(FastPeer* peer);
  // `partial`: the TUN has IFF_VNET_HDR (the addon's own, tun.cc) and TCP packets are written to
  // it as CHECKSUM_PARTIAL (FromClient).
  void SetTunFd(int fd, bool partial) {
    tun_fd_ = fd;
    tun_partial_ = partial;
  }

  // Called by the read batches: true when the packet was handled here (JS must not see it).
  bool FromClient(uint32_t peer, uint8_t* packet, size_t length, double now);
  // A kernel packet is NATed and queued (it must stay where it is until FlushKernel): a batch's
  // packets for one client go in one sendmmsg, so its process is woken once per batch, not once
  // per packet (and the TUN's reader is not preempted by it after each).
  // `partial`: the packet's checksum is partial (completed here unless its client takes it so).
  bool FromKernel(uint8_t* packet, size_t length, double now, const PartialSum* partial = nullptr);
  // Sends what FromKernel queued. A packet its client's socket did not take (full) is restored as
  // read and marked in `refused` (one byte per queued packet, in order), as is every later one for
  // that client: they go to JS, which queues them in order, and the client stays blocked for the
  // rest of the TUN batch.
  void FlushKernel(std::vector<uint8_t>* refused);
  // The queued packets for handed-over TUNs go into this thread's batch of TUN writes now, not
  // submitted: the next io_uring_enter (the reader's next reads, ReadTunBatch) takes them. Their
  // memory must stay as it is until that enter; FlushKernel, which submits, skips them. Nothing
  // without the ring's reads (OXY_IP_TUN_RING=0 or OXY_IP_TUN_RING_READS=0): FlushKernel writes them.
  void QueueTunWrites();
  // Start of a TUN read batch: peers blocked in the previous one may be tried again.
  void BeginKernelBatch();
  // Start of a client socket's read batch (a FIN's hold on its flow ends with the batch).
  void BeginClientBatch() { batch_++; }
  // Flows FromClient registered at their SYN (native SYNs, below) that JS has not taken yet.
  bool HasBorn() const { return !born_.empty(); }
  // Their SYNs are on the upgrade TUN now (written in the batch): its SYN-ACKs are read in this
  // turn, before JS (ReadTunsNow), so the client has them before the flows' bookkeeping runs.
  void ReadBornSynAcks();
  // A TUN write submitted with FlushTunWrites has completed (`result`: bytes or -errno).
  struct TunWrite;
  void Written(const TunWrite& write, int result);

 private:
  struct Tuple {
    uint32_t peer;
    uint32_t version;
    uint8_t src[16];
    uint8_t dst[16];
    uint16_t sport;
    uint16_t dport;
  };
  struct Endpoint {
    uint32_t version;
    uint8_t addr[16];
    uint16_t port;
    uint16_t pad;
  };
  struct Entry {
    uint32_t id;
    uint32_t peer;
    Tuple client;   // as the client sends: src → dst
    Endpoint nat;   // the slot the kernel sees the client as
    Endpoint listen;
    bool slow;
    // The read batch in which a FIN of this flow went to JS: the rest of that batch follows it.
    uint64_t held_in;
  };
  template <class K>
  struct BytesHash {
    size_t operator()(const K& k) const {
      // FNV-1a over the key's bytes (keys are zero-filled, so padding is stable).
      const auto* p = reinterpret_cast<const uint8_t*>(&k);
      uint64_t h = 1469598103934665603ull;
      for (size_t i = 0; i < sizeof(K); i++) h = (h ^ p[i]) * 1099511628211ull;
      return static_cast<size_t>(h);
    }
  };
  template <class K>
  struct BytesEq {
    bool operator()(const K& a, const K& b) const { return memcmp(&a, &b, sizeof(K)) == 0; }
  };

  friend class FastNatWrap;
  // Queues a write to a TUN in this thread's batch (TunWrites, fastnat.cc), or writes it now
  // (OXY_IP_TUN_RING=0, or no io_uring); its outcome is counted in Written either way.
  void WriteToTun(int fd, uint8_t* packet, size_t length, const uint8_t* header, const TunWrite& write);
  void Erase(Entry* entry);
  // Whether a packet with these TCP flags goes to JS (and marks the flow for it).
  bool ToJs(Entry* entry, uint8_t flags, bool from_kernel);
  void Count(uint32_t id, int offset, size_t bytes, double now);
  // A FIN of the flow passed here (the client's, or the kernel's once its client's socket took it).
  void Fin(uint32_t id, bool from_kernel, double now);
  // A kernel packet FromKernel NATed, waiting for FlushKernel.
  struct Queued {
    FastPeer* peer;
    uint8_t* packet;
    size_t length;
    // Sent with a partial checksum (a partial peer): completed if JS gets it back (refused).
    bool partial;
    PartialSum sum;
    uint32_t id;
    uint32_t header;
    bool fin;
    bool written;  // a handed-over TUN's, already in the thread's batch (QueueTunWrites)
    uint8_t saved[60];  // the IP and TCP headers as read (restored if the socket refuses it)
  };
  // A queued kernel packet to its client's handed-over TUN (WriteToTun).
  void WriteQueuedToTun(const Queued& q);

  // Native SYNs (IpEdge's nativeSyn, OXY_IP_NATIVE_SYN): a client's SYN of a tuple not registered,
  // to an IPv4 destination and port JS admitted for that peer before (admit()), is registered here
  // with one of the tickets JS left for the peer (a flow id and a NAT slot it reserved) and written
  // to the TUN in its read batch, before any JS; JS takes the flow from born_ in the same turn
  // (takeBorn()), does the flow's bookkeeping, and resets it if it would not have admitted it now.
  struct AdmitKey {
    uint32_t peer;
    uint8_t dst[4];
    uint16_t dport;
    uint16_t pad;
  };
  struct Ticket {
    uint32_t id;
    Endpoint nat;
    Endpoint listen;
  };
  // A SYN of no registered flow: its flow registered from a ticket, or null (JS's, as before).
  Entry* Born(const Tuple& key, const uint8_t* packet, const Tcp& t);
  std::unordered_map<AdmitKey, bool, BytesHash<AdmitKey>, BytesEq<AdmitKey>> admitted_;
  std::unordered_map<uint32_t, std::vector<Ticket>> tickets_;
  // Per flow born: id, peer, source port, destination port, source, destination (IPv4), the SYN's
  // sequence number: 24 bytes each.
  std::vector<uint8_t> born_;
  size_t born_read_ = 0;  // of born_, the records whose SYN-ACKs ReadBornSynAcks read
  std::vector<Queued> queued_;
  double queued_now_ = 0;

  std::unordered_map<Tuple, Entry*, BytesHash<Tuple>, BytesEq<Tuple>> by_client_;
  std::unordered_map<Endpoint, Entry*, BytesHash<Endpoint>, BytesEq<Endpoint>> by_nat_;
  std::unordered_map<uint32_t, Entry*> by_id_;
  std::unordered_map<uint32_t, FastPeer*> peers_;
  uint32_t next_peer_ = 1;
  int tun_fd_ = -1;
  bool tun_partial_ = false;
  // Per flow id: packetsIn, bytesIn, packetsOut, bytesOut, lastSeen (ms); JS reads and zeroes the counters.
  double* stats_ = nullptr;
  uint32_t capacity_ = 0;
  bool fast_close_ = true;
  // FINs pass here too (JS learns of them with the counters): no JS turn per FIN.
  bool native_fins_ = false;
  // Read batches begun (either kind): 0 is never one, so a fresh entry holds nothing.
  uint64_t batch_ = 1;
  // Packets handled here (client → kernel, kernel → client), those lost to a failed write/send,
  // and kernel packets a full client socket refused (JS queued them).
  double totals_[4] = {0, 0, 0, 0};
};

// What a queued TUN write counts when it completes (FastNat::Written).
struct FastNat::TunWrite {
  FastNat* nat;
  uint32_t id;
  size_t length;
  double now;
  bool to_client;  // a kernel packet to a device's TUN (else a client's packet to the upgrade TUN)
  bool fin;
  // A client packet with payload or a FIN: its accepted socket is read in this turn (KickFdWatchPeer).
  bool kick;
  uint32_t version;
  uint8_t addr[16];
  uint16_t port;
};

// The TUN writes a read batch queued on this thread (FromClient's to the upgrade TUN, FlushKernel's
// to devices' TUNs) go to the kernel together, in one io_uring_enter; each completes within it
// (RWF_NOWAIT), so the packets' memory is free again when this returns, and the fast path's kicks
// (fd-set.h) are queued. Every reader of client packets calls it before it reuses a packet's memory
// and before JS runs; FlushKernel calls it itself. OXY_IP_TUN_RING=0 (or io_uring refused): each
// write is one system call at once, as before, and this does nothing.
void FlushTunWrites();
// Which TUN a ring read is of, for its count: a handed-over device's (seqpacket.cc ReadTun) or the
// upgrade TUN (tun.cc ReadBatch).
enum class TunReader { kDevice, kUpgrade };
// Reads a drain submits at a time (ReadTunBatch): 4 speculative RWF_NOWAIT reads never cost more
// than preadv2 to the EAGAIN and save ~0.5-0.9 us per packet (docs/decisions.md, session 21).
constexpr unsigned kTunReadsAhead = 4;
// `count` (at most 64) packets read from a TUN in one io_uring_enter with this thread's queued
// writes: readv with RWF_NOWAIT into iovs[i] (its first `parts` iovecs, 1 or 2; never waits,
// whatever the file's O_NONBLOCK; complete, in order, when this returns); results[i]: bytes, or
// -errno (-EAGAIN: nothing there). False where FlushTunWrites has no ring (OXY_IP_TUN_RING=0), or
// with OXY_IP_TUN_RING_READS=0 (the writes batched, the reads not): the caller reads one packet per call.
bool ReadTunBatch(int fd, iovec (*iovs)[2], unsigned parts, unsigned count, int* results, TunReader reader);
// TUN writes submitted through this thread's ring, the io_uring_enter calls that submitted them (with
// the reads), and the reads of device TUNs and of upgrade TUNs.
double TunRingWrites();
double TunRingEnters();
double TunRingReads();
double TunRingUpgradeReads();

Napi::Function InitFastNat(Napi::Env env);
void InitFastNatFunctions(Napi::Env env, Napi::Object exports);

// Same-turn reads of the TUN (fd-set.h has the sockets'): the edge wrote to an accepted socket,
// whose segments the kernel put on the TUN within the write; RunTunDue, after the QUIC flush that
// wrote, reads this thread's fast-path TUNs in that turn instead of after the next epoll_pwait.
// `packets`: how many the write put there (a small write taken whole: one segment), 0 when not
// known. When every write of the turn said, the read stops at their count instead of at a read
// that says EAGAIN (one fast TUN on the thread; OXY_TUN_DUE_COUNT=0: always at the EAGAIN); a
// packet beyond them (another flow's) is read at the next turn, the TUN's poll being level-triggered.
void NoteTunDue(uint32_t packets);
// Something else put packets of unknown number on the TUN (a shutdown, a close): a read this turn
// goes on to the EAGAIN.
void NoteTunUncounted();
void RunTunDue();
// A read batch of this thread's fast-path TUNs now, of at most `packets` (see RunTunDue's count),
// counted in neither of the same-turn figures: the SYN-ACKs of native SYNs (ReadBornSynAcks).
void ReadTunsNow(uint32_t packets);
// TUN reads RunTunDue made on this thread so far, and those of them that stopped at the count.
double TunDueReads();
double TunDueCounted();

// Writes one IP packet to a TUN whose IFF_VNET_HDR the addon keeps (no offloads): a plain TCP
// packet (IPv4 without options or fragments, IPv6 without extension headers) as CHECKSUM_PARTIAL,
// its checksum field replaced by the pseudo-header sum (see fastnat.cc for why its own checksum
// need not be checked), anything else with a zero header, as a TUN without IFF_VNET_HDR takes it.
ssize_t WriteTunPartial(int fd, uint8_t* packet, size_t length);
// The same to a TUN another process holds too (a device's, handed over): never waits, whatever
// that process did to the file's flags (pwritev2 RWF_NOWAIT).
ssize_t WriteTunNoWait(int fd, uint8_t* packet, size_t length);
// The same packet's 10-byte header (and its checksum field) for a write of its own (io_uring's).
void TunPartialHeader(uint8_t* packet, size_t length, uint8_t header[10]);
// A packet read from a TUN that offers TUN_F_CSUM, with its 10-byte header: a plain TCP packet
// whose checksum the kernel left partial stays so (its field holds the pseudo-header sum; the edge
// sums it where it must, SumTcpChecksum); any other partial checksum is completed here.
void ResolveTunRead(uint8_t* packet, size_t length, const uint8_t header[10]);
// A plain TCP packet's checksum summed afresh, whatever its field held (a partial sum or a whole
// one); anything else is left as it is.
void SumTcpChecksum(uint8_t* packet, size_t length);

// Wall-clock milliseconds, coarse (as JS's Date.now() for the flow table's idle sweep).
double NowMs();

}  // namespace oxy
