// PciHostBridge: device 0 of the root bus, class 0x060000 (host bridge), no BARs, no
// interrupt. Linux's pci_sanity_check and the ACPI PNP0A08 host bridge expect one at 00:00.0.
// Identity: Red Hat 1b36:0008, the "QEMU PCIe host bridge" (gpex), for which no guest has
// chipset quirks. Threads: as PciDevice (the bus serializes config accesses).
#pragma once

#include "devicemodel/pci/pci_config_space.h"
#include "devicemodel/pci/pci_device.h"

namespace vmm::pci {

class PciHostBridge : public PciDevice {
public:
    static constexpr std::uint16_t kVendorId = 0x1b36;
    static constexpr std::uint16_t kDeviceId = 0x0008;
    static constexpr std::uint32_t kClassCode = 0x060000;

    PciHostBridge();

    std::string name() const override { return "host-bridge"; }
    void config_read(std::uint32_t offset, std::span<std::uint8_t> data) override { config_.read(offset, data); }
    void config_write(std::uint32_t offset, std::span<const std::uint8_t> data) override {
        config_.write(offset, data);
    }
    std::optional<PciBar> bar(unsigned) const override { return std::nullopt; }
    std::shared_ptr<BusDevice> bar_device(unsigned) override { return nullptr; }

private:
    PciConfigSpace config_;
};

}  // namespace vmm::pci
