// I8042: the PC keyboard controller with no keyboard or mouse attached, kept for what guests use
// it for without input devices: the reset line (Linux reboot=k, the default fallback after
// ACPI) and probing. Mapped over ports 0x60..0x64: offset 0 = data (0x60), offset 4 =
// status/command (0x64). Offsets 1..3 are not part of it (port 0x61 belongs to the PIT/speaker
// logic): they read as 0xff and ignore writes.
// Reference: IBM PS/2 Hardware Interface Technical Reference, "Keyboard/Auxiliary Device
// Controller"; QEMU hw/input/pckbd.c where behaviour is unspecified.
//
// Called on vCPU threads. `reset_request` runs on the vCPU thread that asked for the reset,
// without the device lock held; it must only request the reset (not tear down the VM inline).
//
// No IRQ 1/12 is raised: with no devices nothing ever arrives unsolicited. Guests probing for a
// keyboard or mouse time out; Linux wants i8042.noaux (and i8042.dumbkbd) to skip that.
#pragma once

#include "common/log.h"
#include "devicemodel/bus/bus_device.h"


#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>

namespace vmm::legacy {

class I8042 : public BusDevice {
public:
    static constexpr std::uint64_t kDataOffset = 0;     // port 0x60
    static constexpr std::uint64_t kCommandOffset = 4;  // port 0x64
    static constexpr std::uint64_t kPorts = 5;

    explicit I8042(std::function<void()> reset_request);

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

private:
    // Return true when the guest asked for a CPU reset.
    bool command_locked(std::uint8_t cmd);
    bool data_locked(std::uint8_t value);
    void put_output_locked(std::uint8_t value, bool aux);
    std::uint8_t status_locked() const;

    std::function<void()> reset_request_;
    std::shared_ptr<spdlog::logger> log_;

    std::mutex mutex_;
    std::uint8_t ctr_;                    // controller command byte ("CTR")
    std::uint8_t output_port_;            // bit 0 = reset line (active low), bit 1 = A20
    std::uint8_t output_ = 0;             // output buffer (port 0x60)
    bool output_full_ = false;            // status OBF
    bool output_aux_ = false;             // status AUXB: the byte came from the aux side
    bool last_write_command_ = true;      // status A2
    std::optional<std::uint8_t> pending_; // command waiting for its data byte
};

}  // namespace vmm::legacy
