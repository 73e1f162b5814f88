#include "devicemodel/legacy/pci_config_absent.h"

#include "common/log.h"

namespace vmm::legacy {

PciConfigAbsent::PciConfigAbsent() : log_(vmm::logger("pci-config")) {}

void PciConfigAbsent::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    if (offset == 0 && data.size() == 4) {
        set_bus_value(data, config_address_.load());
        return;
    }
    for (auto& b : data) b = 0xff;
}

void PciConfigAbsent::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    if (offset == 0 && data.size() == 4) {
        config_address_.store(static_cast<std::uint32_t>(bus_value(data)));
    } else if (offset >= 4) {
        log_->debug("config write {:#x} to absent device at CONFIG_ADDRESS {:#010x} dropped", bus_value(data),
                    config_address_.load());
    }
}

}  // namespace vmm::legacy
