#include "devicemodel/pci/pci_ecam.h"

#include "devicemodel/pci/pci_bus.h"

namespace vmm::pci {

namespace {
bool decode(std::uint64_t offset, std::size_t len, PciRootBus::Address& where, std::uint32_t& reg) {
    if ((len != 1 && len != 2 && len != 4) || offset % len != 0 || offset >= (std::uint64_t{256} << 20)) return false;
    where = {unsigned(offset >> 20) & 0xff, unsigned(offset >> 15) & 0x1f, unsigned(offset >> 12) & 0x7};
    reg = std::uint32_t(offset & 0xfff);
    return true;
}
}  // namespace

void PciEcam::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    PciRootBus::Address where;
    std::uint32_t reg = 0;
    if (!decode(offset, data.size(), where, reg)) {
        for (auto& b : data) b = 0xff;
        return;
    }
    bus_.config_read(where, reg, data);
}

void PciEcam::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    PciRootBus::Address where;
    std::uint32_t reg = 0;
    if (decode(offset, data.size(), where, reg)) bus_.config_write(where, reg, data);
}

}  // namespace vmm::pci
