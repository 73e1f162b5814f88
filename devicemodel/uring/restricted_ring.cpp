#include "devicemodel/uring/restricted_ring.h"

#if __has_include(<liburing.h>)

#include <cerrno>
#include <vector>

namespace vmm::uring {

int setup_restricted_ring(io_uring& ring, unsigned depth, std::span<const int> files,
                          std::span<const std::uint8_t> opcodes) {
    if (opcodes.empty() || files.empty()) return -EINVAL;
    io_uring_params params{};
    params.flags = IORING_SETUP_R_DISABLED;
    if (const int r = io_uring_queue_init_params(depth, &ring, &params); r < 0) return r;
    const auto fail = [&ring](int r) {
        io_uring_queue_exit(&ring);
        return r;
    };
    if (const int r = io_uring_register_files(&ring, files.data(), static_cast<unsigned>(files.size())); r < 0)
        return fail(r);
    std::vector<io_uring_restriction> allowed(opcodes.size() + 1);
    for (std::size_t i = 0; i < opcodes.size(); ++i) {
        allowed[i].opcode = IORING_RESTRICTION_SQE_OP;
        allowed[i].sqe_op = opcodes[i];
    }
    allowed.back().opcode = IORING_RESTRICTION_SQE_FLAGS_REQUIRED;
    allowed.back().sqe_flags = IOSQE_FIXED_FILE;
    // IO_LINK may be set too (the frame writer links a batch so it stops at the first frame the
    // backend cannot take); every other flag is refused.
    allowed.push_back({});
    allowed.back().opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED;
    allowed.back().sqe_flags = IOSQE_IO_LINK;
    // The one register operation left: giving the files back (close_restricted_ring), so the
    // last reference to a file (a tap) goes when the owner says, not when the kernel's
    // deferred ring teardown gets to it.
    allowed.push_back({});
    allowed.back().opcode = IORING_RESTRICTION_REGISTER_OP;
    allowed.back().register_op = IORING_UNREGISTER_FILES;
    if (const int r = io_uring_register_restrictions(&ring, allowed.data(), static_cast<unsigned>(allowed.size())); r < 0)
        return fail(r);
    if (const int r = io_uring_enable_rings(&ring); r < 0) return fail(r);
    return 0;
}

void close_restricted_ring(io_uring& ring) {
    io_uring_unregister_files(&ring);
    io_uring_queue_exit(&ring);
}

}  // namespace vmm::uring

#endif
