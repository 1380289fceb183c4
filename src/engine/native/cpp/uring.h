// A minimal io_uring over the raw system calls (no liburing): set up, take submission entries,
// submit and wait in one io_uring_enter, read completions. One thread uses a ring (it is created
// with IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN where the kernel has them: the
// completions' work then runs when that thread enters, not as interrupts of whatever runs).
#pragma once

#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

namespace oxy {

class Ring {
 public:
  Ring() = default;
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring() {
    if (sq_ptr_ != nullptr) munmap(sq_ptr_, ring_size_);
    if (sqes_ != nullptr) munmap(sqes_, sqes_size_);
    if (fd_ >= 0) close(fd_);
  }

  // 0, or the errno that refused it (ENOSYS: no io_uring; EPERM: io_uring_disabled or a seccomp filter).
  int Setup(unsigned entries) {
    io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    fd_ = static_cast<int>(syscall(__NR_io_uring_setup, entries, &p));
    if (fd_ < 0 && errno == EINVAL) {  // a kernel before 6.1
      memset(&p, 0, sizeof(p));
      fd_ = static_cast<int>(syscall(__NR_io_uring_setup, entries, &p));
    }
    if (fd_ < 0) return errno;
    if (!(p.features & IORING_FEAT_SINGLE_MMAP)) return Refuse(EOPNOTSUPP);  // before 5.4
    size_t sq_size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
    size_t cq_size = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
    ring_size_ = sq_size > cq_size ? sq_size : cq_size;
    void* ring = mmap(nullptr, ring_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_SQ_RING);
    if (ring == MAP_FAILED) return Refuse(errno);
    sq_ptr_ = static_cast<uint8_t*>(ring);
    sqes_size_ = p.sq_entries * sizeof(io_uring_sqe);
    void* sqes = mmap(nullptr, sqes_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, IORING_OFF_SQES);
    if (sqes == MAP_FAILED) return Refuse(errno);
    sqes_ = static_cast<io_uring_sqe*>(sqes);
    sq_tail_ = reinterpret_cast<unsigned*>(sq_ptr_ + p.sq_off.tail);
    sq_head_ = reinterpret_cast<unsigned*>(sq_ptr_ + p.sq_off.head);
    sq_mask_ = *reinterpret_cast<unsigned*>(sq_ptr_ + p.sq_off.ring_mask);
    sq_entries_ = p.sq_entries;
    sq_array_ = reinterpret_cast<unsigned*>(sq_ptr_ + p.sq_off.array);
    cq_head_ = reinterpret_cast<unsigned*>(sq_ptr_ + p.cq_off.head);
    cq_tail_ = reinterpret_cast<unsigned*>(sq_ptr_ + p.cq_off.tail);
    cq_mask_ = *reinterpret_cast<unsigned*>(sq_ptr_ + p.cq_off.ring_mask);
    cqes_ = reinterpret_cast<io_uring_cqe*>(sq_ptr_ + p.cq_off.cqes);
    tail_ = *sq_tail_;
    return 0;
  }

  // A zeroed entry to fill, or nullptr when the queue is full (submit first).
  io_uring_sqe* Sqe() {
    unsigned head = __atomic_load_n(sq_head_, __ATOMIC_ACQUIRE);
    if (tail_ - head >= sq_entries_) return nullptr;
    unsigned index = tail_ & sq_mask_;
    io_uring_sqe* sqe = &sqes_[index];
    memset(sqe, 0, sizeof(*sqe));
    sq_array_[index] = index;
    tail_++;
    queued_++;
    return sqe;
  }

  // Submits what was queued and waits until `min_complete` completions are there (0: no wait),
  // or `timeout_ns` passed (0: no limit). Returns 0 or -errno (EINTR, ETIME included).
  int Enter(unsigned min_complete, uint64_t timeout_ns = 0) {
    __atomic_store_n(sq_tail_, tail_, __ATOMIC_RELEASE);
    // GETEVENTS even without a wait: with DEFER_TASKRUN the completions' work runs only then.
    unsigned flags = IORING_ENTER_GETEVENTS;
    __kernel_timespec ts{static_cast<int64_t>(timeout_ns / 1000000000), static_cast<long long>(timeout_ns % 1000000000)};
    io_uring_getevents_arg arg;
    memset(&arg, 0, sizeof(arg));
    void* argp = nullptr;
    size_t argsz = 0;
    if (timeout_ns > 0 && min_complete > 0) {
      arg.ts = reinterpret_cast<uint64_t>(&ts);
      flags |= IORING_ENTER_EXT_ARG;
      argp = &arg;
      argsz = sizeof(arg);
    }
    long rc = syscall(__NR_io_uring_enter, fd_, queued_, min_complete, flags, argp, argsz);
    if (rc < 0) return -errno;
    queued_ -= static_cast<unsigned>(rc) < queued_ ? static_cast<unsigned>(rc) : queued_;
    return 0;
  }

  bool Completions() const { return __atomic_load_n(cq_tail_, __ATOMIC_ACQUIRE) != *cq_head_; }
  unsigned queued() const { return queued_; }

  // Calls f(cqe) for each completion there, in order, and frees them.
  template <typename F>
  void Reap(F&& f) {
    unsigned head = *cq_head_;
    unsigned tail = __atomic_load_n(cq_tail_, __ATOMIC_ACQUIRE);
    for (; head != tail; head++) {
      io_uring_cqe cqe = cqes_[head & cq_mask_];
      __atomic_store_n(cq_head_, head + 1, __ATOMIC_RELEASE);
      f(cqe);
    }
  }

 private:
  int Refuse(int err) {
    close(fd_);
    fd_ = -1;
    return err;
  }

  int fd_ = -1;
  uint8_t* sq_ptr_ = nullptr;
  size_t ring_size_ = 0;
  io_uring_sqe* sqes_ = nullptr;
  size_t sqes_size_ = 0;
  unsigned* sq_tail_ = nullptr;
  unsigned* sq_head_ = nullptr;
  unsigned sq_mask_ = 0;
  unsigned sq_entries_ = 0;
  unsigned* sq_array_ = nullptr;
  unsigned* cq_head_ = nullptr;
  unsigned* cq_tail_ = nullptr;
  unsigned cq_mask_ = 0;
  io_uring_cqe* cqes_ = nullptr;
  unsigned tail_ = 0;    // our tail, published at Enter
  unsigned queued_ = 0;  // entries not submitted yet
};

}  // namespace oxy
