#include "devicemodel/virtio-blk/restricted_ring.h"

#if __has_include(<liburing.h>)

#include <iterator>

namespace vmm::virtio_blk {

int setup_restricted_ring(io_uring& ring, unsigned depth, std::span<const int> files) {
    io_uring_params params{};
    params.flags = IORING_SETUP_R_DISABLED;
    if (const int r = io_uring_queue_init_params(depth, &ring, &params); r < 0) return r;
    const auto fail = [&ring](int r) {
        io_uring_queue_exit(&ring);
        return r;
    };
    if (const int r = io_uring_register_files(&ring, files.data(), static_cast<unsigned>(files.size())); r < 0)
        return fail(r);
    // NOP: the engine wakes its own thread out of a wait in the ring with one.
    const unsigned char ops[] = {IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC, IORING_OP_NOP};
    constexpr unsigned kOps = std::size(ops);
    io_uring_restriction allowed[kOps + 1]{};
    for (unsigned i = 0; i < kOps; ++i) {
        allowed[i].opcode = IORING_RESTRICTION_SQE_OP;
        allowed[i].sqe_op = ops[i];
    }
    allowed[kOps].opcode = IORING_RESTRICTION_SQE_FLAGS_REQUIRED;
    allowed[kOps].sqe_flags = IOSQE_FIXED_FILE;
    if (const int r = io_uring_register_restrictions(&ring, allowed, kOps + 1); r < 0) return fail(r);
    if (const int r = io_uring_enable_rings(&ring); r < 0) return fail(r);
    return 0;
}

}  // namespace vmm::virtio_blk

#endif
