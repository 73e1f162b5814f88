// DebugExit: QEMU's isa-debug-exit as test guests use it (iobase=0xf4, iosize=4). A write of
// value v asks the VMM to exit with status (v << 1) | 1, so a guest can never report 0 and a
// test harness can tell "the guest said so" from a crash (QEMU hw/misc/debugexit.c).
// Called on vCPU threads; `on_exit` runs on the writing vCPU thread and must only request the
// exit (library code never calls exit()). The status is the full 32-bit (v << 1) | 1; a process
// exit status keeps its low 8 bits, as QEMU's does.
#pragma once

#include "common/log.h"
#include "devicemodel/bus/bus_device.h"


#include <cstdint>
#include <functional>
#include <memory>
#include <span>

namespace vmm::legacy {

class DebugExit : public BusDevice {
public:
    static constexpr std::uint64_t kPorts = 4;

    explicit DebugExit(std::function<void(int status)> on_exit);

    // Reads return all-ones.
    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    // 1-, 2- and 4-byte writes at offset 0 exit; anything else is ignored.
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

private:
    std::function<void(int status)> on_exit_;
    std::shared_ptr<spdlog::logger> log_;
};

}  // namespace vmm::legacy
