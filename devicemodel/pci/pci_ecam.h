// PciEcam: the PCIe Enhanced Configuration Access Mechanism (MMCONFIG; PCIe Base Specification
// §7.2.2), x86::kPciEcamSize bytes at x86::kPciEcamBase, announced to the guest by the ACPI
// MCFG table. Offset = bus << 20 | device << 15 | function << 12 | register. Accesses of 1, 2
// or 4 bytes, naturally aligned, reach the function's 4 KiB config space; others read
// all-ones and writes are dropped.
// Threads: vCPU threads (PciRootBus serializes).
#pragma once

#include "devicemodel/bus/bus_device.h"

#include <cstdint>

namespace vmm::pci {

class PciRootBus;

class PciEcam : public BusDevice {
public:
    explicit PciEcam(PciRootBus& bus) : bus_(bus) {}

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

private:
    PciRootBus& bus_;
};

}  // namespace vmm::pci
