#include "devicemodel/legacy/debug_exit.h"

#include "common/log.h"

namespace vmm::legacy {

DebugExit::DebugExit(std::function<void(int status)> on_exit)
    : on_exit_(std::move(on_exit)), log_(vmm::logger("debug-exit")) {}

void DebugExit::read(std::uint64_t, std::span<std::uint8_t> data) {
    for (auto& b : data) b = 0xff;
}

void DebugExit::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    const std::size_t width = data.size();
    if (offset != 0 || (width != 1 && width != 2 && width != 4)) {
        log_->debug("ignored {}-byte write at offset {}", width, offset);
        return;
    }
    const auto value = static_cast<std::uint32_t>(bus_value(data));
    // Unsigned arithmetic, then the C++20 modular conversion to int.
    const int status = static_cast<int>((value << 1) | 1u);
    log_->info("guest requested exit, value {:#x}, status {}", value, status);
    if (on_exit_) on_exit_(status);
}

}  // namespace vmm::legacy
