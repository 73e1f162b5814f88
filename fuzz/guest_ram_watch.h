// GuestRamWatch: a fuzz target's guest RAM (a buffer of exactly its size, so ASan catches any
// access past it) that can tell whether a device step wrote anywhere it had no right to.
// snapshot() before the step; then allow() each range the device may write (the buffers it
// holds, the used rings) and ask changed_outside(). One per target, kept across inputs (fresh
// pages for every input were a fifth of a run: the kernel zeroing them); clear() starts one.
#pragma once

#include "fuzz/fuzz_reader.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace vmm::fuzz {

class GuestRamWatch {
public:
    explicit GuestRamWatch(std::size_t size) : ram_(size), before_(size), allowed_(size) {}

    std::uint8_t* data() { return ram_.data(); }
    std::size_t size() const { return ram_.size(); }
    void clear() { std::fill(ram_.begin(), ram_.end(), 0); }
    // A guest that stops behaving as a driver: takes u32 offset, u8 length and that many bytes
    // off the input and writes them there (offset modulo the size, clipped at the end).
    void scribble(FuzzReader& in) {
        const std::size_t at = in.le(4) % ram_.size();
        std::size_t got = 0;
        const std::uint8_t* bytes = in.take(in.le(1), got);
        std::memcpy(ram_.data() + at, bytes, std::min(got, ram_.size() - at));
    }

    void snapshot() {
        std::memcpy(before_.data(), ram_.data(), ram_.size());
        std::fill(allowed_.begin(), allowed_.end(), 0);
    }
    // [from, to) may change (clipped to RAM).
    void allow(std::uint64_t from, std::uint64_t to) {
        from = std::min<std::uint64_t>(from, ram_.size());
        to = std::min<std::uint64_t>(std::max(from, to), ram_.size());
        std::fill(allowed_.begin() + static_cast<std::ptrdiff_t>(from), allowed_.begin() + static_cast<std::ptrdiff_t>(to), 1);
    }
    // Whether a byte outside the allowed ranges differs from the snapshot. Block by block
    // (memcmp is not instrumented: a byte loop over all of RAM would be most of an input's
    // time), byte by byte only where a block changed.
    bool changed_outside() const {
        constexpr std::size_t kBlock = 256;
        for (std::size_t at = 0; at < ram_.size(); at += kBlock) {
            const std::size_t n = std::min(kBlock, ram_.size() - at);
            if (std::memcmp(before_.data() + at, ram_.data() + at, n) == 0) continue;
            for (std::size_t i = at; i < at + n; ++i)
                if (before_[i] != ram_[i] && !allowed_[i]) return true;
        }
        return false;
    }

private:
    std::vector<std::uint8_t> ram_, before_, allowed_;
};

}  // namespace vmm::fuzz
