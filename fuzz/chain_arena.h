// ChainArena: where a fuzz target's driver puts its buffers and indirect tables: a bump
// allocator over [from, to) of guest RAM, never reused within an input (so no two chains share
// a byte, and a device's write into a buffer it already gave back is still told apart), and
// the posting of a chain, directly or through an indirect table taken from the arena.
#pragma once

#include "tests/support/virtqueue_driver.h"

#include <cstdint>
#include <optional>
#include <vector>

namespace vmm::fuzz {

class ChainArena {
public:
    ChainArena(std::uint64_t from, std::uint64_t to) : next_(from), end_(to) {}

    // 16-byte aligned; nullopt once the arena is full (the input posts nothing more).
    std::optional<std::uint64_t> alloc(std::uint64_t len) {
        const std::uint64_t at = (next_ + 15) & ~std::uint64_t{15};
        if (at + len > end_) return std::nullopt;
        next_ = at + len;
        return at;
    }

    // Makes `bufs` available on `q`; the head, or nullopt without room (descriptors or arena).
    std::optional<std::uint16_t> post(test::VirtqueueDriver& q, const std::vector<test::VirtqueueDriver::Buf>& bufs,
                                      bool via_table) {
        if (via_table) {
            const auto table = alloc(16 * bufs.size());
            if (!table || q.free_descriptors() < 1) return std::nullopt;
            return q.add_indirect_chain(bufs, *table);
        }
        if (q.free_descriptors() < bufs.size()) return std::nullopt;
        return q.add_chain(bufs);
    }

private:
    std::uint64_t next_, end_;
};

}  // namespace vmm::fuzz
