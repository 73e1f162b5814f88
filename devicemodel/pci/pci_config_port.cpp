#include "devicemodel/pci/pci_config_port.h"

#include "devicemodel/pci/pci_bus.h"

namespace vmm::pci {

namespace {
constexpr std::uint32_t kEnable = 0x80000000u;

// The config target of a CONFIG_DATA access at port offset `offset` (4..7), if any.
bool target(std::uint32_t address, std::uint64_t offset, std::size_t len, PciRootBus::Address& where,
            std::uint32_t& reg) {
    if (!(address & kEnable) || offset < 4 || (offset - 4) + len > 4) return false;
    where = {(address >> 16) & 0xff, (address >> 11) & 0x1f, (address >> 8) & 0x7};
    reg = (address & 0xfc) + std::uint32_t(offset - 4);
    return true;
}
}  // namespace

void PciConfigPort::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    if (offset == 0 && data.size() == 4) {
        set_bus_value(data, config_address_.load());
        return;
    }
    PciRootBus::Address where;
    std::uint32_t reg = 0;
    if (!target(config_address_.load(), offset, data.size(), where, reg)) {
        for (auto& b : data) b = 0xff;
        return;
    }
    bus_.config_read(where, reg, data);
}

void PciConfigPort::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    if (offset == 0 && data.size() == 4) {
        config_address_.store(static_cast<std::uint32_t>(bus_value(data)));
        return;
    }
    PciRootBus::Address where;
    std::uint32_t reg = 0;
    if (target(config_address_.load(), offset, data.size(), where, reg)) bus_.config_write(where, reg, data);
}

}  // namespace vmm::pci
