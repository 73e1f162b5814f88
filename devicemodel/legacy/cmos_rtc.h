// CmosRtc: the MC146818 real-time clock and its 128 bytes of CMOS NVRAM at ports 0x70 (offset
// 0: index; bit 7 is the NMI mask, ignored) and 0x71 (offset 1: data). The clock runs on UTC.
// Register descriptions: Motorola MC146818A datasheet, "Address Map" and "Registers A-D".
// Memory-size bytes are laid out as QEMU's pc_cmos_init() does, which is what SeaBIOS reads.
//
// Called on vCPU threads. `clock` is called with the device lock held, on those threads.
//
// Not modelled: periodic, alarm and update-ended interrupts (no IRQ 8; register C reads 0) and
// the update cycle itself: UIP (register A bit 7) always reads 0 because the clock has whole
// seconds only, so a guest never waits on it. Reads of the time bytes are computed from the
// clock when read; register B's SET bit freezes them so a guest can set the time, which then
// runs on as an offset from the host clock.
#pragma once

#include "common/log.h"
#include "devicemodel/bus/bus_device.h"


#include <array>
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <mutex>
#include <span>

namespace vmm::legacy {

class CmosRtc : public BusDevice {
public:
    static constexpr std::uint64_t kPorts = 2;

    // low_ram_bytes: guest RAM below 4 GiB (including the first MiB); high_ram_bytes: RAM from
    // 4 GiB up. Throws vmm::Error if vcpus is 0.
    CmosRtc(std::uint64_t low_ram_bytes, std::uint64_t high_ram_bytes, unsigned vcpus,
            std::function<std::time_t()> clock = [] { return std::time(nullptr); });

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

private:
    std::uint8_t read_data_locked();
    void write_data_locked(std::uint8_t value);
    // Stores the running time into the time bytes, in the current format.
    void latch_time_locked();
    // Makes the time held in the time bytes the running time (offset from the host clock).
    void start_from_registers_locked();

    std::function<std::time_t()> clock_;
    std::shared_ptr<spdlog::logger> log_;

    std::mutex mutex_;
    std::array<std::uint8_t, 128> nvram_{};
    std::uint8_t index_ = 0;
    std::int64_t offset_seconds_ = 0;  // guest time minus host time
};

}  // namespace vmm::legacy
