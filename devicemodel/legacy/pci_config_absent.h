// PciConfigAbsent: PCI configuration mechanism #1 (ports 0xcf8..0xcff) with no bus behind it,
// until a real PCI host bridge exists. CONFIG_ADDRESS (0xcf8) is a 32-bit register that reads
// back what was written; like PIIX, only 4-byte accesses at 0xcf8 reach it (narrower ones read
// all-ones and are dropped). CONFIG_DATA (0xcfc..0xcff) reads all-ones for every width: no
// device answers (PCI Local Bus Specification 3.0 §3.2.2.3.2). Linux's pci_check_type1 thus
// finds the mechanism but its sanity check finds no host bridge, and it runs without PCI.
// Called on vCPU threads.
#pragma once

#include "common/log.h"
#include "devicemodel/bus/bus_device.h"


#include <atomic>
#include <cstdint>
#include <memory>
#include <span>

namespace vmm::legacy {

class PciConfigAbsent : public BusDevice {
public:
    static constexpr std::uint64_t kPorts = 8;

    PciConfigAbsent();

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

private:
    std::shared_ptr<spdlog::logger> log_;
    std::atomic<std::uint32_t> config_address_{0};
};

}  // namespace vmm::legacy
