// setup_restricted_ring: an io_uring that can only carry out the opcodes it was made for, on
// the files it was given.
//
// seccomp does not see the operations a ring carries out: a ring on which any opcode may be
// submitted (openat, connect, ...) against any fd would be a way around the I/O threads'
// syscall filters (docs/SECURITY.md). A device's ring is made disabled
// (IORING_SETUP_R_DISABLED), gets its files registered, then IORING_REGISTER_RESTRICTIONS: every
// submission must name a registered file by index (IOSQE_FIXED_FILE) and use one of the
// opcodes given (virtio-blk: READV, WRITEV, READ, WRITE, FSYNC, NOP; virtio-net's frame writer:
// WRITEV and WRITE, or SENDMSG and SEND); the only register operation allowed afterwards is
// unregistering the files (what close_restricted_ring does). Only then is it enabled. Needs
// Linux 5.10; where the kernel cannot, the caller falls back to plain system calls.
#pragma once

#if __has_include(<liburing.h>)
#include <liburing.h>

#include <cstdint>
#include <span>

namespace vmm::uring {

// Initialises `ring` with `depth` entries restricted to `opcodes` (IORING_OP_*) on `files`
// (indices 0..n-1). Returns 0, or -errno with the ring not initialised.
int setup_restricted_ring(io_uring& ring, unsigned depth, std::span<const int> files,
                          std::span<const std::uint8_t> opcodes);
// Unregisters the files, then tears the ring down: the ring's references to the files are gone
// when this returns (io_uring_queue_exit alone leaves them to deferred kernel work, so a tap
// would outlive its closing for a while and a restarted domain could find it busy).
void close_restricted_ring(io_uring& ring);

}  // namespace vmm::uring
#endif
