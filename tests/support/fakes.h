// Test doubles for the device seam (STYLE.md "Testing a device without KVM").
#pragma once

#include "common/mapping.h"
#include "devicemodel/bus/guest_memory.h"
#include "devicemodel/bus/interrupt_line.h"

#include <atomic>
#include <cstdint>
#include <vector>

namespace vmm::test {

// Counts edges and remembers the current level.
class FakeInterruptLine : public InterruptLine {
public:
    void trigger() override { ++triggers; }
    void set_level(bool asserted) override {
        if (asserted && !level) ++triggers;
        level = asserted;
    }
    std::atomic<int> triggers{0};
    std::atomic<bool> level{false};
};

// Heap-backed guest memory with the given (gpa, size) regions; holes between them are not RAM.
class FakeGuestMemory {
public:
    explicit FakeGuestMemory(std::vector<std::pair<std::uint64_t, std::uint64_t>> regions) {
        std::vector<GuestRegion> r;
        storage_.reserve(regions.size());
        for (auto [gpa, size] : regions) {
            storage_.emplace_back(size, 0);
            r.push_back({gpa, size, storage_.back().data()});
        }
        mem_ = GuestMemory(std::move(r));
    }
    const GuestMemory& memory() const { return mem_; }
    operator const GuestMemory&() const { return mem_; }

private:
    std::vector<std::vector<std::uint8_t>> storage_;
    GuestMemory mem_;
};

// One region of guest RAM at gpa 0, mapped as the anchor maps a guest's (Mapping::guest_ram:
// transparent huge pages by default): for benchmarks, whose per-buffer costs (TLB misses over a
// ring of buffers) then are those of the anchor's memory, not of a heap vector's 4 KiB pages.
class RamGuestMemory {
public:
    explicit RamGuestMemory(std::uint64_t size, Mapping::RamPages pages = Mapping::RamPages::Transparent)
        : ram_(Mapping::guest_ram(size, pages)), mem_({{0, size, ram_.data()}}) {}
    const GuestMemory& memory() const { return mem_; }
    operator const GuestMemory&() const { return mem_; }

private:
    Mapping ram_;
    GuestMemory mem_;
};

}  // namespace vmm::test
