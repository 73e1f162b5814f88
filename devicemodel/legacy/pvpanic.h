// Pvpanic: QEMU's ISA pvpanic device at port 0x505, 1 byte (QEMU hw/misc/pvpanic-isa.c,
// docs/specs/pvpanic.rst). A read returns the events the device supports; the guest writes the
// event that happened. Linux writes PANICKED on panic, or CRASH_LOADED instead when a kdump
// kernel is loaded, so both reach `on_event` (with the written bits that are supported).
// Called on vCPU threads; `on_event` runs on the writing vCPU thread, without any device lock,
// and must not block.
#pragma once

#include "common/log.h"
#include "devicemodel/bus/bus_device.h"


#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>

namespace vmm::legacy {

class Pvpanic : public BusDevice {
public:
    static constexpr std::uint8_t kPanicked = 0x01;     // PVPANIC_PANICKED
    static constexpr std::uint8_t kCrashLoaded = 0x02;  // PVPANIC_CRASH_LOADED
    static constexpr std::uint8_t kSupported = kPanicked | kCrashLoaded;
    static constexpr std::uint64_t kPorts = 1;

    explicit Pvpanic(std::function<void(std::uint8_t events)> on_event);

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

private:
    std::function<void(std::uint8_t events)> on_event_;
    std::shared_ptr<spdlog::logger> log_;
    std::atomic<bool> warned_unknown_{false};  // log unknown bits once, as QEMU does
};

}  // namespace vmm::legacy
