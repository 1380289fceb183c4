// TUN device (IFF_TUN|IFF_NO_PI, optionally IFF_VNET_HDR with offloads), read and
// written in batches: one JS callback per wake-up carries every packet that was
// waiting (up to batchSize), as one Buffer plus an offsets array.
#include "fastnat.h"
#include "fd-set.h"
#include "modules.h"
#include "polled.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace oxy {

namespace {

constexpr int kVnetHeaderSize = 10;  // struct virtio_net_hdr (no num_buffers)
constexpr size_t kBatchBytes = 1 << 20;

bool PartialReads() {
  static const bool on = EnvSwitchOn("OXY_IP_PARTIAL_READS");
  return on;
}

class TunDevice;
// This thread's TUNs with a fast path, for RunTunDue (fastnat.h).
thread_local std::vector<TunDevice*> fast_tuns;
thread_local bool tun_due = false;
thread_local uint64_t tun_due_packets = 0;  // what the writes since the last RunTunDue put on the TUN
thread_local bool tun_due_uncounted = false;
thread_local double tun_due_reads = 0;
thread_local double tun_due_counted = 0;

bool DueCounted() {
  static const bool on = EnvSwitchOn("OXY_TUN_DUE_COUNT");
  return on;
}

class TunDevice : public PolledWrap<TunDevice> {
 public:
  static Napi::Function Init(Napi::Env env) {
    std::vector<PropertyDescriptor> methods = {
        InstanceAccessor("name", &TunDevice::Name, nullptr),
        InstanceAccessor("ifIndex", &TunDevice::IfIndex, nullptr),
        InstanceAccessor("vnetHeader", &TunDevice::VnetHeader, nullptr),
        InstanceMethod("setMtu", &TunDevice::SetMtu),
        InstanceMethod("getMtu", &TunDevice::GetMtu),
        InstanceMethod("setTxQueueLength", &TunDevice::SetTxQueueLength),
        InstanceMethod("setUp", &TunDevice::SetUp),
        InstanceMethod("start", &TunDevice::Start),
        InstanceMethod("setEvents", &TunDevice::SetEvents),
        InstanceMethod("writeBatch", &TunDevice::WriteBatch),
        InstanceMethod("setFastNat", &TunDevice::SetFastNat),
    };
    AddCommonMethods(methods);
    return DefineClass(env, "TunDevice", methods);
  }

  // new TunDevice({fd?, name, vnetHeader, partialChecksums?, offload, multiQueue, batchSize, maxPacketSize})
  // The device is created in the network namespace of the calling thread; so is the
  // control socket used for link ioctls, so they keep working after a switch back.
  // With `fd`, an attached TUN fd (e.g. received over SCM_RIGHTS) is adopted: its
  // name and IFF_VNET_HDR come from TUNGETIFF, and `offload` is applied only if non-zero.
  // With `partialChecksums`, a TUN with IFF_VNET_HDR keeps the header to itself: JS reads and
  // writes bare packets (written with a zero header, read with no offloads), and a fast NAT's
  // TCP packets are written as CHECKSUM_PARTIAL (FastNat::FromClient).
  explicit TunDevice(const Napi::CallbackInfo& info) : PolledWrap<TunDevice>(info) {
    Napi::Env env = info.Env();
    Napi::Object options = info[0].As<Napi::Object>();
    uint32_t offload = options.Get("offload").As<Napi::Number>().Uint32Value();
    bool partial = options.Get("partialChecksums").ToBoolean();
    batch_size_ = std::clamp<uint32_t>(options.Get("batchSize").As<Napi::Number>().Uint32Value(), 1, 4096);
    Napi::Value adopt = options.Get("fd");
    if (adopt.IsNumber()) {
      Adopt(env, adopt.As<Napi::Number>().Int32Value());
    } else {
      Create(env, options.Get("name").As<Napi::String>(), options.Get("vnetHeader").ToBoolean() || partial,
             options.Get("multiQueue").ToBoolean());
    }
    hidden_header_ = partial && vnet_header_;
    // With `offload` TUN_F_CSUM (the only one taken), reads may leave checksums partial (the kernel
    // sums nothing): the fast path passes them so to a client that takes them and completes them
    // for the others and for JS (OXY_IP_PARTIAL_READS=0: the kernel sums every packet it writes here).
    if (hidden_header_) offload &= PartialReads() ? TUN_F_CSUM : 0;
    if (vnet_header_) {
      int size = kVnetHeaderSize;
      if (ioctl(fd_, TUNSETVNETHDRSZ, &size) != 0) Fail(env, "ioctl(TUNSETVNETHDRSZ)", name_);
      if ((offload != 0 || !adopt.IsNumber() || hidden_header_) &&
          ioctl(fd_, TUNSETOFFLOAD, static_cast<unsigned long>(offload)) != 0) {
        Fail(env, "ioctl(TUNSETOFFLOAD)", name_);
      }
    }
    max_packet_ = std::clamp<uint32_t>(options.Get("maxPacketSize").As<Napi::Number>().Uint32Value(), 576, 65535) +
                  (vnet_header_ && !hidden_header_ ? kVnetHeaderSize : 0);
    control_fd_ = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (control_fd_ < 0) Fail(env, "socket", name_);
    buffer_.resize(kBatchBytes + max_packet_);
  }

  ~TunDevice() override {
    Unlist();
    if (fast_) fast_->SetTunFd(-1, false);
    CloseFd(control_fd_);
  }

  // RunTunDue: a read batch now, as if the poll had said readable (it says so next turn otherwise).
  // `limit`: at most that many packets (0: until EAGAIN).
  static void ReadDue(uint64_t limit, bool counted = true) {
    std::vector<TunDevice*> list = fast_tuns;
    for (TunDevice* t : list) {
      // One closed by JS during an earlier read left the list.
      if (std::find(fast_tuns.begin(), fast_tuns.end(), t) == fast_tuns.end()) continue;
      if (t->fd_ < 0 || !(t->events() & UV_READABLE)) continue;
      Napi::Env env = t->Env();
      Napi::HandleScope scope(env);
      if (!CanCallJs(env)) continue;
      if (counted) tun_due_reads++;
      GuardCallback(env, [t, env, limit, counted] {
        if (t->ReadBatch(env, limit) && counted) tun_due_counted++;
      });
    }
  }

 private:
  void Create(Napi::Env env, const std::string& name, bool vnet_header, bool multi_queue) {
    if (name.size() >= IFNAMSIZ) ThrowErrno(env, "ioctl(TUNSETIFF)", EINVAL, "interface name longer than 15: " + name);
    fd_ = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd_ < 0) ThrowErrno(env, "open(/dev/net/tun)", errno);
    ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    if (vnet_header) ifr.ifr_flags |= IFF_VNET_HDR;
    if (multi_queue) ifr.ifr_flags |= IFF_MULTI_QUEUE;
    strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);  // empty: the kernel picks tunN
    if (ioctl(fd_, TUNSETIFF, &ifr) != 0) Fail(env, "ioctl(TUNSETIFF)", name);
    name_ = ifr.ifr_name;
    vnet_header_ = vnet_header;
  }

  // The fd is owned from here on: closed on refusal too.
  void Adopt(Napi::Env env, int fd) {
    fd_ = fd;
    ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    if (ioctl(fd_, TUNGETIFF, &ifr) != 0) Fail(env, "ioctl(TUNGETIFF)", "fd is not an attached TUN");
    name_ = ifr.ifr_name;
    if ((ifr.ifr_flags & (IFF_TUN | IFF_NO_PI)) != (IFF_TUN | IFF_NO_PI)) {
      errno = EINVAL;
      Fail(env, "ioctl(TUNGETIFF)", name_ + " is not IFF_TUN|IFF_NO_PI");
    }
    vnet_header_ = (ifr.ifr_flags & IFF_VNET_HDR) != 0;
    int flags = fcntl(fd_, F_GETFL);
    if (flags < 0 || fcntl(fd_, F_SETFL, flags | O_NONBLOCK) != 0) Fail(env, "fcntl(O_NONBLOCK)", name_);
  }

  // Whether JS's packets carry the header (not when the addon keeps it: partialChecksums).
  Napi::Value VnetHeader(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), vnet_header_ && !hidden_header_);
  }

  [[noreturn]] void Fail(Napi::Env env, const char* syscall, const std::string& detail) {
    int err = errno;
    CloseFd(fd_);
    CloseFd(control_fd_);
    ThrowErrno(env, syscall, err, detail);
  }

  // setFastNat(nat): packets read for the nat's flows go to their clients without JS, and the
  // nat writes its client packets to this TUN. Not with an IFF_VNET_HDR that JS sees.
  Napi::Value SetFastNat(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "setFastNat");
    if (vnet_header_ && !hidden_header_) ThrowErrno(env, "setFastNat", EINVAL, "a TUN with IFF_VNET_HDR");
    if (fast_) fast_->SetTunFd(-1, false);
    fast_ = FastNat::From(info[0]);
    if (!fast_) ThrowErrno(env, "setFastNat", EINVAL, "not a FastNat");
    fast_->SetTunFd(fd_, hidden_header_);
    if (SameTurnReads() && std::find(fast_tuns.begin(), fast_tuns.end(), this) == fast_tuns.end()) fast_tuns.push_back(this);
    return env.Undefined();
  }

  void Unlist() {
    auto it = std::find(fast_tuns.begin(), fast_tuns.end(), this);
    if (it != fast_tuns.end()) fast_tuns.erase(it);
  }

  void Shutdown() override {
    Unlist();
    if (fast_) fast_->SetTunFd(-1, false);
    fast_.reset();
    PolledWrap<TunDevice>::Shutdown();
    CloseFd(control_fd_);
  }

  void ResetCallbacks() override {
    on_batch_.Reset();
    on_writable_.Reset();
    on_error_.Reset();
  }

  // Link ioctls through the control socket, which lives in the TUN's namespace.
  ifreq LinkRequest(Napi::Env env, const char* syscall) {
    if (control_fd_ < 0) ThrowErrno(env, syscall, EBADF, "TUN is closed");
    ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, name_.c_str(), IFNAMSIZ - 1);
    return ifr;
  }

  void LinkIoctl(Napi::Env env, unsigned long request, ifreq* ifr, const char* syscall) {
    if (ioctl(control_fd_, request, ifr) != 0) ThrowErrno(env, syscall, errno, name_);
  }

  Napi::Value Name(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }

  Napi::Value IfIndex(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ifreq ifr = LinkRequest(env, "ioctl(SIOCGIFINDEX)");
    LinkIoctl(env, SIOCGIFINDEX, &ifr, "ioctl(SIOCGIFINDEX)");
    return Napi::Number::New(env, ifr.ifr_ifindex);
  }

  Napi::Value SetMtu(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ifreq ifr = LinkRequest(env, "ioctl(SIOCSIFMTU)");
    ifr.ifr_mtu = info[0].As<Napi::Number>().Int32Value();
    LinkIoctl(env, SIOCSIFMTU, &ifr, "ioctl(SIOCSIFMTU)");
    return env.Undefined();
  }

  Napi::Value GetMtu(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ifreq ifr = LinkRequest(env, "ioctl(SIOCGIFMTU)");
    LinkIoctl(env, SIOCGIFMTU, &ifr, "ioctl(SIOCGIFMTU)");
    return Napi::Number::New(env, ifr.ifr_mtu);
  }

  Napi::Value SetTxQueueLength(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    ifreq ifr = LinkRequest(env, "ioctl(SIOCSIFTXQLEN)");
    ifr.ifr_qlen = info[0].As<Napi::Number>().Int32Value();
    LinkIoctl(env, SIOCSIFTXQLEN, &ifr, "ioctl(SIOCSIFTXQLEN)");
    return env.Undefined();
  }

  // setUp(up = true): flips IFF_UP, leaving the other link flags alone.
  Napi::Value SetUp(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bool up = info.Length() == 0 || info[0].ToBoolean();
    ifreq ifr = LinkRequest(env, "ioctl(SIOCGIFFLAGS)");
    LinkIoctl(env, SIOCGIFFLAGS, &ifr, "ioctl(SIOCGIFFLAGS)");
    if (up) {
      ifr.ifr_flags |= IFF_UP;
    } else {
      ifr.ifr_flags &= ~IFF_UP;
    }
    LinkIoctl(env, SIOCSIFFLAGS, &ifr, "ioctl(SIOCSIFFLAGS)");
    return env.Undefined();
  }

  // start(onBatch(data, offsets, count), onWritable(), onError(err))
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "start");
    on_batch_ = Napi::Persistent(info[0].As<Napi::Function>());
    on_writable_ = Napi::Persistent(info[1].As<Napi::Function>());
    on_error_ = Napi::Persistent(info[2].As<Napi::Function>());
    EnsureContext(env, "OxyTun");
    return env.Undefined();
  }

  Napi::Value SetEvents(const Napi::CallbackInfo& info) {
    int events = (info[0].ToBoolean() ? UV_READABLE : 0) | (info[1].ToBoolean() ? UV_WRITABLE : 0);
    SetWatch(info.Env(), events);
    return info.Env().Undefined();
  }

  void OnPoll(int status, int events) override {
    Napi::Env env = Env();
    if (status < 0) {
      InvokeCallback(env, on_error_, *context_, {ErrnoError(env, "uv_poll", -status)});
      return;
    }
    if (events & UV_READABLE) ReadBatch(env);
    if (fd_ >= 0 && (events & UV_WRITABLE)) InvokeCallback(env, on_writable_, *context_, {});
  }

  // read() until EAGAIN, batchSize packets, `limit` packets (0: none) or the batch buffer is full.
  // Whether it stopped at `limit`. kTunReadsAhead reads at a time in one io_uring_enter (with this
  // thread's queued TUN writes), each into a slot of max_packet_ bytes past the batch's earlier
  // packets, while every one of them brings a packet (OXY_IP_TUN_RING=0, or one read left: one
  // read() / readv() each). Every read completes within the enter (RWF_NOWAIT, fastnat.cc), so the
  // slots are ours again when it returns.
  bool ReadBatch(Napi::Env env, uint64_t limit = 0) {
    size_t used = 0;  // JS's packets, from the start of the buffer
    size_t end = 0;   // past the packets the fast path queued for their clients (after JS's; gaps between them)
    offsets_.clear();
    offsets_.push_back(0);
    queued_at_.clear();
    int read_errno = 0;
    double now = 0;
    if (fast_) fast_->BeginKernelBatch();
    const size_t slot = max_packet_;
    const unsigned parts = hidden_header_ ? 2 : 1;
    uint8_t headers[kTunReadsAhead][kVnetHeaderSize];
    iovec iovs[kTunReadsAhead][2];
    int results[kTunReadsAhead];
    // Packets the fast path took count too: a busy kernel must not hold the loop.
    uint32_t reads = 0;
    uint64_t packets = 0;
    bool at_limit = false;
    bool drained = false;
    bool ring = true;
    while (!drained && read_errno == 0 && reads < batch_size_) {
      if (limit != 0 && packets == limit) {
        at_limit = true;
        break;
      }
      if (buffer_.size() - end < slot) {
        if (queued_at_.empty()) break;
        FlushFast(&used, &end);
        if (buffer_.size() - end < slot) break;
      }
      uint64_t count = std::min<uint64_t>({kTunReadsAhead, batch_size_ - reads, (buffer_.size() - end) / slot});
      if (limit != 0) count = std::min<uint64_t>(count, limit - packets);
      for (uint64_t i = 0; i < count; i++) {
        uint8_t* at = buffer_.data() + end + i * slot;
        iovs[i][0] = hidden_header_ ? iovec{headers[i], kVnetHeaderSize} : iovec{at, slot};
        iovs[i][1] = {at, slot};
      }
      // The packets queued so far for handed-over TUNs are written in the same enter, before these
      // reads (their memory, below the slots, stays until the enter returns).
      if (count >= 2 && ring && fast_ && !queued_at_.empty()) fast_->QueueTunWrites();
      if (count < 2 || !ring ||
          !(ring = ReadTunBatch(fd_, iovs, parts, unsigned(count), results, TunReader::kUpgrade))) {
        count = 1;
        ssize_t n = parts == 2 ? readv(fd_, iovs[0], 2) : read(fd_, iovs[0][0].iov_base, slot);
        results[0] = n < 0 ? -errno : int(n);
        if (results[0] == -EINTR) {
          reads++;
          continue;
        }
      }
      reads += uint32_t(count);
      const size_t base = end;
      for (uint64_t i = 0; i < count; i++) {
        const int got = results[i];
        if (got < 0) {
          drained = true;
          if (got != -EAGAIN && got != -EWOULDBLOCK && got != -EINTR) read_errno = -got;
          continue;
        }
        // An empty read (or one shorter than the hidden header) ends the batch, as it always did.
        if (got == 0 || (hidden_header_ && got < kVnetHeaderSize)) {
          drained = true;
          continue;
        }
        packets++;
        Take(base + i * slot, size_t(got), headers[i], &used, &end, &now);
      }
    }
    if (!queued_at_.empty()) FlushFast(&used, &end);
    uint32_t count = static_cast<uint32_t>(offsets_.size() - 1);
    if (count > 0) {
      Napi::Buffer<uint8_t> data = Napi::Buffer<uint8_t>::Copy(env, buffer_.data(), used);
      Napi::Uint32Array offsets = CopyToUint32Array(env, offsets_);
      InvokeCallback(env, on_batch_, *context_, {data, offsets, Napi::Number::New(env, count)});
    }
    if (read_errno != 0 && fd_ >= 0) {
      InvokeCallback(env, on_error_, *context_, {ErrnoError(env, "read", read_errno, name_)});
    }
    return at_limit;
  }

  // The packet read at `offset` (`got` bytes, the hidden header apart in `header`): queued for its
  // client by the fast path where it lies, or JS's, moved down after JS's earlier packets (after
  // what the fast path queued before it has left, and what that refused joined JS's). The hidden
  // header says whether the checksum is partial (VIRTIO_NET_HDR_F_NEEDS_CSUM), with where it goes.
  // No GSO: TSO is never offered.
  void Take(size_t offset, size_t got, const uint8_t* header, size_t* used, size_t* end, double* now) {
    uint8_t* at = buffer_.data() + offset;
    const size_t n = hidden_header_ ? got - kVnetHeaderSize : got;
    PartialSum sum;
    bool partial = false;
    if (hidden_header_ && (header[0] & 1)) {
      partial = true;
      sum.start = static_cast<uint16_t>(header[6] | (header[7] << 8));
      sum.offset = static_cast<uint16_t>(header[8] | (header[9] << 8));
    }
    if (fast_) {
      if (*now == 0) *now = NowMs();
      // For an established flow: un-NATed and queued for its client (sent with the batch).
      if (fast_->FromKernel(at, n, *now, partial ? &sum : nullptr)) {
        queued_at_.push_back({offset, n});
        *end = offset + n;
        return;
      }
    }
    if (partial) CompleteChecksum(at, n, sum);  // JS's packets are whole
    if (!queued_at_.empty()) FlushFast(used, end);
    // Below it lie only JS's packets and what FlushFast freed; later slots lie above it.
    if (offset != *used) memmove(buffer_.data() + *used, at, n);
    *used += n;
    *end = *used;
    offsets_.push_back(static_cast<uint32_t>(*used));
  }

  // Sends the fast path's queued packets; those refused (a full client socket) move down to JS's,
  // and the buffer is free from the end of JS's packets.
  void FlushFast(size_t* used, size_t* end) {
    fast_->FlushKernel(&refused_);
    for (size_t i = 0; i < queued_at_.size(); i++) {
      if (!refused_[i]) continue;
      memmove(buffer_.data() + *used, buffer_.data() + queued_at_[i].first, queued_at_[i].second);
      *used += queued_at_[i].second;
      offsets_.push_back(static_cast<uint32_t>(*used));
    }
    queued_at_.clear();
    *end = *used;
  }

  // writeBatch(packets, start) -> packets written from `start`; stops early on
  // EAGAIN, throws (with `index`) on any other error.
  Napi::Value WriteBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "write");
    Napi::Array list = info[0].As<Napi::Array>();
    uint32_t start = info[1].As<Napi::Number>().Uint32Value();
    uint32_t end = list.Length();
    uint32_t index = start;
    while (index < end) {
      ByteView bytes;
      if (!GetBytes(list.Get(index), &bytes)) ThrowIndexed(env, EINVAL, index, "packet is not a Buffer/Uint8Array");
      ssize_t n;
      if (hidden_header_) {
        // A zero header: the kernel takes the packet as a TUN without IFF_VNET_HDR would.
        uint8_t header[kVnetHeaderSize] = {};
        iovec iov[2] = {{header, sizeof(header)}, {const_cast<uint8_t*>(bytes.data), bytes.length}};
        n = writev(fd_, iov, 2);
      } else {
        n = write(fd_, bytes.data, bytes.length);
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        ThrowIndexed(env, errno, index, name_ + ", packet of " + std::to_string(bytes.length) + " bytes");
      }
      index++;
    }
    return Napi::Number::New(env, index - start);
  }

  [[noreturn]] void ThrowIndexed(Napi::Env env, int err, uint32_t index, const std::string& detail) {
    Napi::Object error = ErrnoError(env, "write", err, detail);
    error.Set("index", index);
    throw Napi::Error(env, error);
  }

  std::string name_;
  bool vnet_header_ = false;
  // IFF_VNET_HDR kept inside the addon (partialChecksums).
  bool hidden_header_ = false;
  int control_fd_ = -1;
  uint32_t batch_size_ = 64;
  uint32_t max_packet_ = 65535;
  std::vector<uint8_t> buffer_;
  // Where the fast path's queued packets of this batch are (offset, length), and which it refused.
  std::vector<std::pair<size_t, size_t>> queued_at_;
  std::vector<uint8_t> refused_;
  std::vector<uint32_t> offsets_;
  std::shared_ptr<FastNat> fast_;
  Napi::FunctionReference on_batch_;
  Napi::FunctionReference on_writable_;
  Napi::FunctionReference on_error_;
};

}  // namespace

Napi::Function InitTun(Napi::Env env) { return TunDevice::Init(env); }

void NoteTunDue(uint32_t packets) {
  if (fast_tuns.empty()) return;
  tun_due = true;
  if (packets == 0) tun_due_uncounted = true;
  tun_due_packets += packets;
}

void NoteTunUncounted() { tun_due_uncounted = true; }

void RunTunDue() {
  const uint64_t limit = !tun_due_uncounted && fast_tuns.size() == 1 && DueCounted() ? tun_due_packets : 0;
  tun_due_packets = 0;
  tun_due_uncounted = false;
  if (!tun_due) return;
  tun_due = false;
  TunDevice::ReadDue(limit);
}

void ReadTunsNow(uint32_t packets) {
  if (fast_tuns.empty()) return;
  TunDevice::ReadDue(fast_tuns.size() == 1 && DueCounted() ? packets : 0, false);
}

double TunDueReads() { return tun_due_reads; }
double TunDueCounted() { return tun_due_counted; }

}  // namespace oxy
