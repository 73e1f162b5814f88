// setup_restricted_ring: an io_uring that can only read, write and fsync the files it was given.
//
// seccomp does not see the operations a ring carries out: a ring on which any opcode may be
// submitted (openat, connect, ...) against any fd would be a way around the block threads'
// syscall filter (docs/SECURITY.md). The io_uring engine's ring is made disabled
// (IORING_SETUP_R_DISABLED), gets its files registered, then IORING_REGISTER_RESTRICTIONS: every
// submission must name a registered file by index (IOSQE_FIXED_FILE) and be READV, WRITEV, FSYNC
// or NOP; no register operation is allowed afterwards. Only then is it enabled. Needs Linux
// 5.10; where the kernel cannot, the caller falls back to the thread pool.
#pragma once

#if __has_include(<liburing.h>)
#include <liburing.h>

#include <span>

namespace vmm::virtio_blk {

// Initialises `ring` with `depth` entries restricted to `files` (indices 0..n-1). Returns 0, or
// -errno with the ring not initialised.
int setup_restricted_ring(io_uring& ring, unsigned depth, std::span<const int> files);

}  // namespace vmm::virtio_blk
#endif
