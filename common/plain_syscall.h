// plain_syscall: the data path's read/write system calls without glibc's cancellation wrappers.
//
// glibc's read, write, pread, preadv, ... are cancellation points. In a process with more than
// one thread (the anchor: vCPUs, device and I/O threads) each call switches asynchronous
// cancellation on before the system call and off after it: two atomic read-modify-writes of
// the thread's cancel word per I/O, ~4 % of a cached 4 KiB read on the 2026-12 KVM host (issue
// #3). Nothing in the project is ever cancelled (no pthread_cancel), so the devices' per-request
// calls go through syscall(2) instead. Same system call numbers (the seccomp lists are unchanged);
// -1 with errno set on failure, as the wrappers.
#pragma once

#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstddef>

namespace vmm::sys {

inline ssize_t read(int fd, void* buf, std::size_t len) { return ::syscall(SYS_read, fd, buf, len); }
inline ssize_t write(int fd, const void* buf, std::size_t len) { return ::syscall(SYS_write, fd, buf, len); }
inline ssize_t readv(int fd, const iovec* iov, int cnt) { return ::syscall(SYS_readv, fd, iov, cnt); }
inline ssize_t writev(int fd, const iovec* iov, int cnt) { return ::syscall(SYS_writev, fd, iov, cnt); }
inline ssize_t pread(int fd, void* buf, std::size_t len, off_t off) { return ::syscall(SYS_pread64, fd, buf, len, off); }
inline ssize_t pwrite(int fd, const void* buf, std::size_t len, off_t off) {
    return ::syscall(SYS_pwrite64, fd, buf, len, off);
}
// The vector calls take the offset as two halves (low, high); a 64-bit kernel uses the low one
// whole (pos_from_hilo), as glibc's wrappers pass it.
inline ssize_t preadv(int fd, const iovec* iov, int cnt, off_t off) {
    return ::syscall(SYS_preadv, fd, iov, cnt, static_cast<unsigned long>(off), 0ul);
}
inline ssize_t pwritev(int fd, const iovec* iov, int cnt, off_t off) {
    return ::syscall(SYS_pwritev, fd, iov, cnt, static_cast<unsigned long>(off), 0ul);
}
inline ssize_t preadv2(int fd, const iovec* iov, int cnt, off_t off, int flags) {
    return ::syscall(SYS_preadv2, fd, iov, cnt, static_cast<unsigned long>(off), 0ul, flags);
}

}  // namespace vmm::sys
