// ChainRing: descriptor chains a device holds, in order (first in, first out), in slots that
// are reused. A pop goes straight into the slot after the last held chain
// (VirtQueue::pop(next_slot())), commit_back() keeps it, and taking chains off the front leaves
// their slots for later pops: no chain (two small vectors of buffers) is built, moved or
// destroyed per buffer, as with a ring of values that constructs on push and destroys on erase.
// Full, it grows (doubling, the held chains moved once, in order); it never overwrites a held
// chain. Not thread-safe: the device's lock guards it.
#pragma once

#include "devicemodel/virtio/virtqueue.h"

#include <cstddef>
#include <utility>
#include <vector>

namespace vmm::virtio {

class ChainRing {
public:
    // Room for `capacity` chains at first (rounded up to a power of two, at least 1).
    explicit ChainRing(std::size_t capacity = 64) {
        std::size_t n = 1;
        while (n < capacity) n *= 2;
        slots_.resize(n);
    }

    bool empty() const noexcept { return count_ == 0; }
    std::size_t size() const noexcept { return count_; }
    std::size_t capacity() const noexcept { return slots_.size(); }
    // The i-th held chain from the front (i < size()).
    const DescriptorChain& operator[](std::size_t i) const noexcept { return slots_[(head_ + i) & mask()]; }
    const DescriptorChain& front() const noexcept { return slots_[head_]; }

    // The free slot after the last held chain, its previous contents whatever they were (a pop
    // replaces them); the ring grows first when every slot holds a chain. It is held only after
    // commit_back(); until then the next call returns the same slot.
    DescriptorChain& next_slot() {
        if (count_ == slots_.size()) grow();
        return slots_[(head_ + count_) & mask()];
    }
    void commit_back() noexcept { ++count_; }
    // Lets go of the first n held chains (n <= size()); their slots are reused.
    void drop_front(std::size_t n) noexcept {
        head_ = (head_ + n) & mask();
        count_ -= n;
    }
    void clear() noexcept { head_ = count_ = 0; }

private:
    std::size_t mask() const noexcept { return slots_.size() - 1; }
    void grow() {
        std::vector<DescriptorChain> bigger(slots_.size() * 2);
        for (std::size_t i = 0; i < count_; ++i) bigger[i] = std::move(slots_[(head_ + i) & mask()]);
        slots_ = std::move(bigger);
        head_ = 0;
    }

    std::vector<DescriptorChain> slots_;  // a power of two of them
    std::size_t head_ = 0, count_ = 0;
};

}  // namespace vmm::virtio
