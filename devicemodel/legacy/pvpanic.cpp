#include "devicemodel/legacy/pvpanic.h"

#include "common/log.h"

namespace vmm::legacy {

Pvpanic::Pvpanic(std::function<void(std::uint8_t events)> on_event)
    : on_event_(std::move(on_event)), log_(vmm::logger("pvpanic")) {}

void Pvpanic::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    for (std::size_t i = 0; i < data.size(); ++i) data[i] = offset + i == 0 ? kSupported : 0xff;
}

void Pvpanic::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    if (offset != 0 || data.empty()) return;
    const std::uint8_t value = data[0];
    if ((value & ~kSupported) && !warned_unknown_.exchange(true)) {
        log_->warn("unknown event bits {:#04x}", value & ~kSupported);
    }
    const std::uint8_t events = value & kSupported;
    if (!events) return;
    log_->warn("guest reported {}", (events & kPanicked) ? "a panic" : "a panic with a crash kernel loaded");
    if (on_event_) on_event_(events);
}

}  // namespace vmm::legacy
