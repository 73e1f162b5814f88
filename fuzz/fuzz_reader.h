// FuzzReader: takes little-endian integers and byte runs off a fuzzer's input, yielding zeros
// (and short runs) once the input is used up, so every operation list decodes to something.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace vmm::fuzz {

class FuzzReader {
public:
    FuzzReader(const std::uint8_t* data, std::size_t size) : p_(data), end_(data + size) {}
    bool empty() const { return p_ == end_; }
    std::uint64_t le(unsigned bytes) {
        std::uint64_t v = 0;
        for (unsigned i = 0; i < bytes && p_ != end_; ++i) v |= std::uint64_t(*p_++) << (8 * i);
        return v;
    }
    // Up to `n` bytes; `got` says how many there were.
    const std::uint8_t* take(std::size_t n, std::size_t& got) {
        got = std::min<std::size_t>(n, static_cast<std::size_t>(end_ - p_));
        const std::uint8_t* at = p_;
        p_ += got;
        return at;
    }

private:
    const std::uint8_t* p_;
    const std::uint8_t* end_;
};

}  // namespace vmm::fuzz
