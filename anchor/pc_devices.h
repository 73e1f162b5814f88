// The legacy PC devices every domain gets, installed on the port-I/O bus, and what each one
// does to the domain (reset, exit, panic). Shared by Machine and the scripted-vCPU tests so
// both exercise the same wiring.
//
//   0x060-0x064  i8042 (reset line)          0x070-0x071  CMOS RTC + NVRAM
//   0x080        POST code port              0x0f4-0x0f7  debug-exit (QEMU isa-debug-exit)
//   0x3f8-0x3ff  COM1 16550, IRQ 4           0x505        pvpanic
//   0xcf8-0xcff  PCI config (no devices yet)
#pragma once

#include "anchor/vm_control.h"
#include "devicemodel/bus/interrupt_line.h"
#include "devicemodel/bus/io_bus.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

namespace vmm::legacy {
class Serial16550;
}

namespace vmm::anchor {

inline constexpr std::uint32_t kCom1Irq = 4;

struct PcDevicesConfig {
    std::uint64_t low_ram = 0;
    std::uint64_t high_ram = 0;
    unsigned vcpus = 1;
};

struct PcDevices {
    std::shared_ptr<legacy::Serial16550> com1;
};

PcDevices install_pc_devices(IoBus& pio, const PcDevicesConfig& config, std::shared_ptr<InterruptLine> com1_irq,
                             std::function<void(std::span<const std::uint8_t>)> console_out, VmControl& control);

}  // namespace vmm::anchor
