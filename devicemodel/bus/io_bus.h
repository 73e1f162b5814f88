// IoBus: non-overlapping address ranges mapped to BusDevices; one bus for port I/O, one for
// MMIO. The vCPU exit loop hands each access to the bus; an access that hits no device reads
// as all-ones and writes are dropped (as on a PC). Ranges may be added or removed at run time
// (PCI BAR moves) under a writer lock; dispatch takes a reader lock.
#pragma once

#include "devicemodel/bus/bus_device.h"

#include <cstdint>
#include <map>
#include <memory>
#include <shared_mutex>
#include <span>
#include <string>

namespace vmm {

class IoBus {
public:
    explicit IoBus(std::string name) : name_(std::move(name)) {}

    // Throws vmm::Error if [base, base+len) overlaps an existing range or len is 0.
    void insert(std::uint64_t base, std::uint64_t len, std::shared_ptr<BusDevice> device);
    // Removes the range starting exactly at base; returns whether one was there.
    bool remove(std::uint64_t base);

    // Returns false if no device covers the access (reads are then filled with 0xff).
    bool read(std::uint64_t addr, std::span<std::uint8_t> data) const;
    bool write(std::uint64_t addr, std::span<const std::uint8_t> data) const;

    const std::string& name() const noexcept { return name_; }

private:
    struct Range {
        std::uint64_t len;
        std::shared_ptr<BusDevice> device;
    };
    // The device covering [addr, addr+size) and the offset inside it, or nullptr.
    std::shared_ptr<BusDevice> find(std::uint64_t addr, std::uint64_t size, std::uint64_t& offset) const;

    std::string name_;
    mutable std::shared_mutex mutex_;
    std::map<std::uint64_t, Range> ranges_;  // by base
};

}  // namespace vmm
