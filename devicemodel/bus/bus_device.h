// BusDevice: something that answers port-I/O or MMIO accesses. A device sees the offset inside
// the range it was registered for, never its base address.
// Called on vCPU threads, possibly several at once: implementations guard their own state.
#pragma once

#include <cstdint>
#include <span>

namespace vmm {

class BusDevice {
public:
    virtual ~BusDevice() = default;
    // Fill `data` (1, 2, 4 or 8 bytes, little-endian) with the register value at `offset`.
    virtual void read(std::uint64_t offset, std::span<std::uint8_t> data) = 0;
    virtual void write(std::uint64_t offset, std::span<const std::uint8_t> data) = 0;
};

// Little-endian helpers for register values of 1..8 bytes.
inline std::uint64_t bus_value(std::span<const std::uint8_t> data) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < data.size() && i < 8; ++i) v |= std::uint64_t(data[i]) << (8 * i);
    return v;
}
inline void set_bus_value(std::span<std::uint8_t> data, std::uint64_t v) {
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = i < 8 ? std::uint8_t(v >> (8 * i)) : 0;
}

}  // namespace vmm
