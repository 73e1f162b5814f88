// PciConfigPort: PCI configuration mechanism #1 (PCI Local Bus Specification 3.0 §3.2.2.3.2),
// ports 0xcf8..0xcff, offset 0 = 0xcf8. CONFIG_ADDRESS (0xcf8) is a 32-bit register reached
// only by 4-byte accesses (as on PIIX: narrower ones at 0xcf8..0xcfb read all-ones and are
// dropped, which Linux's pci_check_type1 relies on). CONFIG_DATA (0xcfc..0xcff) forwards 1-,
// 2- and 4-byte accesses that stay inside the dword to the register CONFIG_ADDRESS selects
// (plus the byte offset 0..3); with the enable bit clear, or for an access crossing 0xcff,
// reads are all-ones and writes dropped.
// Threads: vCPU threads; CONFIG_ADDRESS is one shared register, as on hardware.
#pragma once

#include "devicemodel/bus/bus_device.h"

#include <atomic>
#include <cstdint>

namespace vmm::pci {

class PciRootBus;

class PciConfigPort : public BusDevice {
public:
    static constexpr std::uint16_t kBase = 0xcf8;
    static constexpr std::uint64_t kPorts = 8;

    explicit PciConfigPort(PciRootBus& bus) : bus_(bus) {}

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

private:
    PciRootBus& bus_;
    std::atomic<std::uint32_t> config_address_{0};
};

}  // namespace vmm::pci
