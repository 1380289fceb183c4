// UDP socket that knows, for every datagram, the local address it arrived on
// (IP_PKTINFO / IPV6_RECVPKTINFO) and can choose the source address of every
// datagram it sends (sendmsg cmsg). Receives with recvmmsg and sends with
// sendmmsg so one N-API call moves a whole batch.
#include "modules.h"

#include "polled.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace oxy {

namespace {

// Layout of one record in the metadata buffer handed to JS (host byte order);
// the TypeScript side (udp.ts) reads the same offsets.
constexpr size_t kRecordSize = 56;
constexpr size_t kOffData = 0;       // u32 offset of the payload in the data buffer
constexpr size_t kOffLength = 4;     // u32 payload length
constexpr size_t kOffIfindex = 8;    // u32 interface the datagram arrived on (0: unknown)
constexpr size_t kOffSrcPort = 12;   // u16 source port
constexpr size_t kOffSrcFamily = 14; // u8 4|6
constexpr size_t kOffDstFamily = 15; // u8 4|6, 0 when no pktinfo came with the datagram
constexpr size_t kOffSrcAddr = 16;   // 16 bytes; IPv4 in the first 4
constexpr size_t kOffDstAddr = 32;   // 16 bytes; IPv4 in the first 4
constexpr size_t kOffFlags = 48;     // u32 bit 0: truncated to maxDatagramSize
constexpr size_t kOffSrcScope = 52;  // u32 IPv6 scope id of the source

constexpr size_t kRecvControlSize = 128;  // room for IP_PKTINFO and IPV6_PKTINFO
// IP(V6)_PKTINFO, then optionally UDP_SEGMENT (GSO).
constexpr size_t kSendControlSize = CMSG_SPACE(sizeof(in6_pktinfo)) + CMSG_SPACE(sizeof(uint16_t));
constexpr unsigned kSendChunk = 64;

template <typename V>
void Put(uint8_t* record, size_t offset, V value) {
  memcpy(record + offset, &value, sizeof(V));
}

class UdpSocket : public PolledWrap<UdpSocket> {
 public:
  static Napi::Function Init(Napi::Env env) {
    std::vector<PropertyDescriptor> methods = {
        InstanceMethod("bind", &UdpSocket::Bind),
        InstanceMethod("address", &UdpSocket::Address),
        InstanceMethod("setBufferSizes", &UdpSocket::SetBufferSizes),
        InstanceMethod("getBufferSizes", &UdpSocket::GetBufferSizes),
        InstanceMethod("start", &UdpSocket::Start),
        InstanceMethod("setEvents", &UdpSocket::SetEvents),
        InstanceMethod("sendBatch", &UdpSocket::SendBatch),
        InstanceAccessor("family", &UdpSocket::Family, nullptr),
    };
    AddCommonMethods(methods);
    return DefineClass(env, "UdpSocket", methods);
  }

  // new UdpSocket(family: 4|6, {fd?, ipv6Only, reuseAddress, reusePort, batchSize, maxDatagramSize, maxReadsPerWakeup})
  // The socket is created now, in the network namespace of the calling thread;
  // with `fd` an existing UDP socket is adopted instead (owned from here on).
  explicit UdpSocket(const Napi::CallbackInfo& info) : PolledWrap<UdpSocket>(info) {
    Napi::Env env = info.Env();
    family_ = info[0].As<Napi::Number>().Int32Value() == 6 ? AF_INET6 : AF_INET;
    Napi::Object options = info[1].As<Napi::Object>();
    batch_size_ = std::clamp<uint32_t>(options.Get("batchSize").As<Napi::Number>().Uint32Value(), 1, 1024);
    slot_size_ = std::clamp<uint32_t>(options.Get("maxDatagramSize").As<Napi::Number>().Uint32Value(), 1, 65535);
    max_reads_ = std::clamp<uint32_t>(options.Get("maxReadsPerWakeup").As<Napi::Number>().Uint32Value(), 1, 64);

    Napi::Value adopt = options.Get("fd");
    bool adopted = adopt.IsNumber();
    if (adopted) {
      Adopt(env, adopt.As<Napi::Number>().Int32Value());
    } else {
      // rawProtocol: a raw socket of that IP protocol (e.g. ICMP for echo off-ramps, needs
      // CAP_NET_RAW); its datagrams carry the same pktinfo, batching and source choice.
      Napi::Value raw = options.Get("rawProtocol");
      int type = raw.IsNumber() ? SOCK_RAW : SOCK_DGRAM;
      int protocol = raw.IsNumber() ? raw.As<Napi::Number>().Int32Value() : 0;
      fd_ = socket(family_, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
      if (fd_ < 0) ThrowErrno(env, "socket", errno);
    }
    int on = 1;
    if (family_ == AF_INET6) {
      // Fixed once bound; an adopted socket keeps its own. Raw sockets refuse it (EINVAL: the
      // kernel allows it only before a protocol is bound) and are IPv6-only anyway.
      if (!adopted && !options.Get("rawProtocol").IsNumber()) {
        int v6only = options.Get("ipv6Only").ToBoolean() ? 1 : 0;
        SetOption(env, IPPROTO_IPV6, IPV6_V6ONLY, v6only, "setsockopt(IPV6_V6ONLY)");
      }
      SetOption(env, IPPROTO_IPV6, IPV6_RECVPKTINFO, on, "setsockopt(IPV6_RECVPKTINFO)");
    } else {
      SetOption(env, IPPROTO_IP, IP_PKTINFO, on, "setsockopt(IP_PKTINFO)");
    }
    if (options.Get("reuseAddress").ToBoolean()) SetOption(env, SOL_SOCKET, SO_REUSEADDR, on, "setsockopt(SO_REUSEADDR)");
    if (options.Get("reusePort").ToBoolean()) SetOption(env, SOL_SOCKET, SO_REUSEPORT, on, "setsockopt(SO_REUSEPORT)");

    // One contiguous slab for payloads, one for control data; recvmmsg fills them in place.
    slab_.resize(static_cast<size_t>(batch_size_) * slot_size_);
    control_.resize(static_cast<size_t>(batch_size_) * kRecvControlSize);
    names_.resize(batch_size_);
    iovs_.resize(batch_size_);
    msgs_.resize(batch_size_);
    for (uint32_t i = 0; i < batch_size_; i++) {
      iovs_[i].iov_base = slab_.data() + static_cast<size_t>(i) * slot_size_;
      iovs_[i].iov_len = slot_size_;
      msghdr& hdr = msgs_[i].msg_hdr;
      hdr.msg_name = &names_[i];
      hdr.msg_iov = &iovs_[i];
      hdr.msg_iovlen = 1;
      hdr.msg_control = control_.data() + i * kRecvControlSize;
    }
    send_msgs_.resize(kSendChunk);
    send_iovs_.resize(kSendChunk);
    send_names_.resize(kSendChunk);
    send_control_.resize(kSendChunk * kSendControlSize);
  }

 private:
  // Takes an fd (e.g. received over SCM_RIGHTS from a process in another
  // namespace); it is closed on refusal too, so the caller never leaks it.
  void Adopt(Napi::Env env, int fd) {
    fd_ = fd;
    int type = 0, domain = 0, protocol = 0;
    socklen_t len = sizeof(int);
    if (getsockopt(fd_, SOL_SOCKET, SO_TYPE, &type, &len) != 0) Refuse(env, "getsockopt(SO_TYPE)", errno, "");
    len = sizeof(int);
    getsockopt(fd_, SOL_SOCKET, SO_DOMAIN, &domain, &len);
    len = sizeof(int);
    getsockopt(fd_, SOL_SOCKET, SO_PROTOCOL, &protocol, &len);
    if (type != SOCK_DGRAM || protocol != IPPROTO_UDP || (domain != AF_INET && domain != AF_INET6)) {
      Refuse(env, "getsockopt(SO_TYPE)", ENOTSOCK, "fd is not a UDP socket");
    }
    family_ = domain;
    int flags = fcntl(fd_, F_GETFL);
    if (flags < 0 || fcntl(fd_, F_SETFL, flags | O_NONBLOCK) != 0) Refuse(env, "fcntl(O_NONBLOCK)", errno, "");
  }

  [[noreturn]] void Refuse(Napi::Env env, const char* syscall, int err, const std::string& detail) {
    CloseFd(fd_);
    ThrowErrno(env, syscall, err, detail);
  }

  Napi::Value Family(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), family_ == AF_INET6 ? 6 : 4); }

  void SetOption(Napi::Env env, int level, int name, int value, const char* what) {
    if (setsockopt(fd_, level, name, &value, sizeof(value)) != 0) {
      int err = errno;
      CloseFd(fd_);
      ThrowErrno(env, what, err);
    }
  }

  Napi::Value Bind(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "bind");
    std::string address = info[0].As<Napi::String>();
    uint32_t port = info[1].As<Napi::Number>().Uint32Value();
    sockaddr_storage addr;
    socklen_t len = 0;
    if (port > 65535 || !ParseSockaddr(address, static_cast<uint16_t>(port), family_, &addr, &len)) {
      ThrowErrno(env, "bind", EINVAL, "not an address for this socket: " + address);
    }
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
      ThrowErrno(env, "bind", errno, address + " port " + std::to_string(port));
    }
    return env.Undefined();
  }

  Napi::Value Address(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "getsockname");
    sockaddr_storage addr;
    socklen_t len = sizeof(addr);
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) ThrowErrno(env, "getsockname", errno);
    return SockaddrToObject(env, addr);
  }

  // setBufferSizes(recv?: number, send?: number). Above net.core.[rw]mem_max the
  // *FORCE variants are tried (they need CAP_NET_ADMIN); the kernel doubles values.
  Napi::Value SetBufferSizes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "setsockopt");
    SetBuffer(env, info[0], SO_RCVBUF, SO_RCVBUFFORCE, "setsockopt(SO_RCVBUF)");
    SetBuffer(env, info[1], SO_SNDBUF, SO_SNDBUFFORCE, "setsockopt(SO_SNDBUF)");
    return env.Undefined();
  }

  void SetBuffer(Napi::Env env, Napi::Value value, int option, int force_option, const char* what) {
    if (!value.IsNumber()) return;
    int wanted = value.As<Napi::Number>().Int32Value();
    if (setsockopt(fd_, SOL_SOCKET, option, &wanted, sizeof(wanted)) != 0) ThrowErrno(env, what, errno);
    int actual = 0;
    socklen_t len = sizeof(actual);
    getsockopt(fd_, SOL_SOCKET, option, &actual, &len);
    if (actual / 2 < wanted) {
      // Capped by the sysctl; without CAP_NET_ADMIN (EPERM) the capped size stays.
      setsockopt(fd_, SOL_SOCKET, force_option, &wanted, sizeof(wanted));
    }
  }

  Napi::Value GetBufferSizes(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "getsockopt");
    int recv_size = 0, send_size = 0;
    socklen_t len = sizeof(int);
    if (getsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &recv_size, &len) != 0) ThrowErrno(env, "getsockopt(SO_RCVBUF)", errno);
    len = sizeof(int);
    if (getsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &send_size, &len) != 0) ThrowErrno(env, "getsockopt(SO_SNDBUF)", errno);
    Napi::Array result = Napi::Array::New(env, 2);
    result.Set(0u, recv_size);
    result.Set(1u, send_size);
    return result;
  }

  // start(onBatch(data, meta, count), onWritable(), onError(err))
  Napi::Value Start(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "start");
    on_batch_ = Napi::Persistent(info[0].As<Napi::Function>());
    on_writable_ = Napi::Persistent(info[1].As<Napi::Function>());
    on_error_ = Napi::Persistent(info[2].As<Napi::Function>());
    EnsureContext(env, "OxyPktinfoUdpSocket");
    return env.Undefined();
  }

  // setEvents(readable: boolean, writable: boolean)
  Napi::Value SetEvents(const Napi::CallbackInfo& info) {
    wanted_ = (info[0].ToBoolean() ? UV_READABLE : 0) | (info[1].ToBoolean() ? UV_WRITABLE : 0);
    SetWatch(info.Env(), wanted_);
    return info.Env().Undefined();
  }

  void ResetCallbacks() override {
    on_batch_.Reset();
    on_writable_.Reset();
    on_error_.Reset();
  }

  void OnPoll(int status, int events) override {
    Napi::Env env = Env();
    if (status < 0) {
      // POLLERR: libuv stopped the handle and says EBADF. The real error is the
      // pending socket error; reading it clears it, so polling can resume.
      int pending = 0;
      socklen_t len = sizeof(pending);
      getsockopt(fd_, SOL_SOCKET, SO_ERROR, &pending, &len);
      InvokeCallback(env, on_error_, *context_, {ErrnoError(env, "poll", pending != 0 ? pending : -status)});
      if (pending != 0 && fd_ >= 0) SetWatch(env, wanted_);
      return;
    }
    if (events & UV_READABLE) ReadBatch(env);
    if (fd_ >= 0 && (events & UV_WRITABLE)) InvokeCallback(env, on_writable_, *context_, {});
  }

  // Up to max_reads_ recvmmsg calls per wake-up (fewer once the queue is empty),
  // all handed to JS as one batch. A socket still readable after that is called
  // back on the next loop turn, so other work is not starved.
  void ReadBatch(Napi::Env env) {
    out_data_.clear();
    out_meta_.clear();
    uint32_t total_count = 0;
    int read_errno = 0;
    for (uint32_t round = 0; round < max_reads_; round++) {
      int count = ReceiveOnce(&read_errno);
      if (count <= 0) break;
      AppendRecords(count);
      total_count += static_cast<uint32_t>(count);
      if (static_cast<uint32_t>(count) < batch_size_) break;  // drained
    }
    if (total_count > 0) {
      Napi::Buffer<uint8_t> data = Napi::Buffer<uint8_t>::Copy(env, out_data_.data(), out_data_.size());
      Napi::Buffer<uint8_t> meta = Napi::Buffer<uint8_t>::Copy(env, out_meta_.data(), out_meta_.size());
      InvokeCallback(env, on_batch_, *context_, {data, meta, Napi::Number::New(env, total_count)});
    }
    if (read_errno != 0 && fd_ >= 0) InvokeCallback(env, on_error_, *context_, {ErrnoError(env, "recvmmsg", read_errno)});
  }

  // One recvmmsg into the slab. Returns the datagram count, 0 when none is
  // waiting, -1 on error (stored in *read_errno).
  int ReceiveOnce(int* read_errno) {
    for (uint32_t i = 0; i < batch_size_; i++) {
      msghdr& hdr = msgs_[i].msg_hdr;
      hdr.msg_namelen = sizeof(sockaddr_storage);
      hdr.msg_controllen = kRecvControlSize;
      hdr.msg_flags = 0;
      msgs_[i].msg_len = 0;
    }
    int count;
    do {
      count = recvmmsg(fd_, msgs_.data(), batch_size_, MSG_DONTWAIT, nullptr);
    } while (count < 0 && errno == EINTR);
    if (count < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      *read_errno = errno;
      return -1;
    }
    return count;
  }

  // Appends the payloads and metadata records of the first `count` slab slots.
  void AppendRecords(int count) {
    size_t meta_base = out_meta_.size();
    out_meta_.resize(meta_base + count * kRecordSize, 0);
    for (int i = 0; i < count; i++) {
      const msghdr& hdr = msgs_[i].msg_hdr;
      uint32_t length = msgs_[i].msg_len;
      uint8_t* record = out_meta_.data() + meta_base + i * kRecordSize;
      const uint8_t* payload = static_cast<const uint8_t*>(iovs_[i].iov_base);
      Put<uint32_t>(record, kOffData, static_cast<uint32_t>(out_data_.size()));
      Put<uint32_t>(record, kOffLength, length);
      Put<uint32_t>(record, kOffFlags, (hdr.msg_flags & MSG_TRUNC) ? 1u : 0u);
      out_data_.insert(out_data_.end(), payload, payload + length);

      uint16_t src_port = 0;
      uint32_t scope = 0;
      int src_family = StoreAddress(reinterpret_cast<const sockaddr*>(&names_[i]), record + kOffSrcAddr, &src_port, &scope);
      Put<uint16_t>(record, kOffSrcPort, src_port);
      Put<uint8_t>(record, kOffSrcFamily, static_cast<uint8_t>(src_family));
      Put<uint32_t>(record, kOffSrcScope, scope);

      for (cmsghdr* c = CMSG_FIRSTHDR(&hdr); c != nullptr; c = CMSG_NXTHDR(const_cast<msghdr*>(&hdr), c)) {
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
          in_pktinfo pktinfo;
          memcpy(&pktinfo, CMSG_DATA(c), sizeof(pktinfo));
          memcpy(record + kOffDstAddr, &pktinfo.ipi_addr, 4);
          Put<uint8_t>(record, kOffDstFamily, 4);
          Put<uint32_t>(record, kOffIfindex, static_cast<uint32_t>(pktinfo.ipi_ifindex));
        } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
          in6_pktinfo pktinfo;
          memcpy(&pktinfo, CMSG_DATA(c), sizeof(pktinfo));
          if (IN6_IS_ADDR_V4MAPPED(&pktinfo.ipi6_addr)) {
            memcpy(record + kOffDstAddr, &pktinfo.ipi6_addr.s6_addr[12], 4);
            Put<uint8_t>(record, kOffDstFamily, 4);
          } else {
            memcpy(record + kOffDstAddr, &pktinfo.ipi6_addr, 16);
            Put<uint8_t>(record, kOffDstFamily, 6);
          }
          Put<uint32_t>(record, kOffIfindex, pktinfo.ipi6_ifindex);
        }
      }
    }
  }

  // Fills send slot k from {data, address, port, sourceAddress?}. Returns an empty
  // string or the reason the datagram is unusable.
  std::string PrepareSend(Napi::Object item, unsigned k) {
    msghdr& hdr = send_msgs_[k].msg_hdr;
    memset(&hdr, 0, sizeof(hdr));
    ByteView bytes;
    if (!GetBytes(item.Get("data"), &bytes)) return "data is not a Buffer/Uint8Array";
    Napi::Value address_value = item.Get("address");
    Napi::Value port_value = item.Get("port");
    if (!address_value.IsString() || !port_value.IsNumber()) return "address/port missing";
    std::string address = address_value.As<Napi::String>();
    uint32_t port = port_value.As<Napi::Number>().Uint32Value();
    socklen_t name_len = 0;
    if (port > 65535 || !ParseSockaddr(address, static_cast<uint16_t>(port), family_, &send_names_[k], &name_len)) {
      return "not a destination for this socket: " + address;
    }
    send_iovs_[k].iov_base = const_cast<uint8_t*>(bytes.data);
    send_iovs_[k].iov_len = bytes.length;
    hdr.msg_name = &send_names_[k];
    hdr.msg_namelen = name_len;
    hdr.msg_iov = &send_iovs_[k];
    hdr.msg_iovlen = 1;

    Napi::Value source_value = item.Get("sourceAddress");
    if (!source_value.IsString()) return "";
    std::string source = source_value.As<Napi::String>();
    if (source.empty()) return "";

    // The destination decides the cmsg: IPv4 (also IPv4-mapped on a dual-stack
    // socket) takes IPPROTO_IP/IP_PKTINFO, IPv6 takes IPPROTO_IPV6/IPV6_PKTINFO.
    bool dest_is_v4 = send_names_[k].ss_family == AF_INET ||
                      IN6_IS_ADDR_V4MAPPED(&reinterpret_cast<sockaddr_in6*>(&send_names_[k])->sin6_addr);
    sockaddr_storage src;
    socklen_t src_len = 0;
    if (!ParseSockaddr(source, 0, dest_is_v4 ? AF_INET6 : family_, &src, &src_len)) {
      return "not a source address: " + source;
    }
    const in6_addr& src6 = reinterpret_cast<sockaddr_in6*>(&src)->sin6_addr;
    uint8_t* control = send_control_.data() + k * kSendControlSize;
    memset(control, 0, kSendControlSize);
    hdr.msg_control = control;
    if (dest_is_v4) {
      if (!IN6_IS_ADDR_V4MAPPED(&src6)) return "source " + source + " is not IPv4 like destination " + address;
      hdr.msg_controllen = CMSG_SPACE(sizeof(in_pktinfo));
      cmsghdr* c = CMSG_FIRSTHDR(&hdr);
      c->cmsg_level = IPPROTO_IP;
      c->cmsg_type = IP_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
      in_pktinfo pktinfo;
      memset(&pktinfo, 0, sizeof(pktinfo));
      memcpy(&pktinfo.ipi_spec_dst, &src6.s6_addr[12], 4);
      memcpy(CMSG_DATA(c), &pktinfo, sizeof(pktinfo));
    } else {
      if (src.ss_family != AF_INET6 || IN6_IS_ADDR_V4MAPPED(&src6)) {
        return "source " + source + " is not IPv6 like destination " + address;
      }
      hdr.msg_controllen = CMSG_SPACE(sizeof(in6_pktinfo));
      cmsghdr* c = CMSG_FIRSTHDR(&hdr);
      c->cmsg_level = IPPROTO_IPV6;
      c->cmsg_type = IPV6_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
      in6_pktinfo pktinfo;
      memset(&pktinfo, 0, sizeof(pktinfo));
      pktinfo.ipi6_addr = src6;
      pktinfo.ipi6_ifindex = reinterpret_cast<sockaddr_in6*>(&src)->sin6_scope_id;
      memcpy(CMSG_DATA(c), &pktinfo, sizeof(pktinfo));
    }
    return "";
  }

  // Optional UDP GSO: {segmentSize} splits `data` into datagrams of that many bytes (the
  // last may be shorter), all to the same destination from the same source, with one
  // UDP_SEGMENT cmsg after the pktinfo one. Absent, zero or >= the data length: one datagram.
  std::string PrepareSegmentation(Napi::Object item, unsigned k) {
    Napi::Value segment_value = item.Get("segmentSize");
    if (!segment_value.IsNumber()) return "";
    uint32_t segment = segment_value.As<Napi::Number>().Uint32Value();
    msghdr& hdr = send_msgs_[k].msg_hdr;
    if (segment == 0 || segment >= send_iovs_[k].iov_len) return "";
    if (segment > 65535) return "segmentSize above 65535";
    uint8_t* control = send_control_.data() + k * kSendControlSize;
    if (hdr.msg_control == nullptr) {
      hdr.msg_control = control;
      hdr.msg_controllen = 0;
    }
    cmsghdr* c = reinterpret_cast<cmsghdr*>(control + hdr.msg_controllen);
    memset(c, 0, CMSG_SPACE(sizeof(uint16_t)));
    c->cmsg_level = SOL_UDP;
    c->cmsg_type = UDP_SEGMENT;
    c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
    uint16_t size = static_cast<uint16_t>(segment);
    memcpy(CMSG_DATA(c), &size, sizeof(size));
    hdr.msg_controllen += CMSG_SPACE(sizeof(uint16_t));
    return "";
  }

  // sendBatch(datagrams, start) -> how many datagrams from `start` the kernel took.
  // Stops early (returns less) when the socket buffer is full (EAGAIN); any other
  // failure throws with `index` set to the datagram that failed (earlier ones were sent).
  Napi::Value SendBatch(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "sendmmsg");
    Napi::Array list = info[0].As<Napi::Array>();
    uint32_t start = info[1].As<Napi::Number>().Uint32Value();
    uint32_t end = list.Length();
    uint32_t index = start;
    while (index < end) {
      unsigned chunk = std::min<uint32_t>(end - index, kSendChunk);
      for (unsigned k = 0; k < chunk; k++) {
        Napi::Object item = list.Get(index + k).As<Napi::Object>();
        std::string problem = PrepareSend(item, k);
        if (problem.empty()) problem = PrepareSegmentation(item, k);
        if (!problem.empty()) {
          if (k == 0) ThrowIndexed(env, EINVAL, index, problem);
          chunk = k;  // send the good ones first; the bad one fails on the next round
          break;
        }
      }
      int sent = sendmmsg(fd_, send_msgs_.data(), chunk, MSG_DONTWAIT);
      if (sent < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        ThrowIndexed(env, errno, index, DescribeSend(list.Get(index).As<Napi::Object>()));
      }
      index += static_cast<uint32_t>(sent);
    }
    return Napi::Number::New(env, index - start);
  }

  static std::string DescribeSend(Napi::Object item) {
    std::string text = "to " + item.Get("address").ToString().Utf8Value() + " port " + item.Get("port").ToString().Utf8Value();
    Napi::Value source = item.Get("sourceAddress");
    if (source.IsString()) text += " from " + source.As<Napi::String>().Utf8Value();
    return text;
  }

  [[noreturn]] void ThrowIndexed(Napi::Env env, int err, uint32_t index, const std::string& detail) {
    Napi::Object error = ErrnoError(env, "sendmmsg", err, detail);
    error.Set("index", index);
    throw Napi::Error(env, error);
  }

  int family_ = AF_INET;
  uint32_t batch_size_ = 64;
  uint32_t slot_size_ = 2048;
  uint32_t max_reads_ = 4;
  int wanted_ = 0;
  std::vector<uint8_t> out_data_;
  std::vector<uint8_t> out_meta_;
  std::vector<uint8_t> slab_;
  std::vector<uint8_t> control_;
  std::vector<sockaddr_storage> names_;
  std::vector<iovec> iovs_;
  std::vector<mmsghdr> msgs_;
  std::vector<mmsghdr> send_msgs_;
  std::vector<iovec> send_iovs_;
  std::vector<sockaddr_storage> send_names_;
  std::vector<uint8_t> send_control_;
  Napi::FunctionReference on_batch_;
  Napi::FunctionReference on_writable_;
  Napi::FunctionReference on_error_;
};

}  // namespace

Napi::Function InitUdp(Napi::Env env) { return UdpSocket::Init(env); }

}  // namespace oxy
