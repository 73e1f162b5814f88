#include "anchor/pc_devices.h"

#include "devicemodel/legacy/cmos_rtc.h"
#include "devicemodel/legacy/debug_exit.h"
#include "devicemodel/legacy/i8042.h"
#include "devicemodel/legacy/pci_config_absent.h"
#include "devicemodel/legacy/pvpanic.h"
#include "devicemodel/legacy/serial_16550.h"

#include <atomic>
#include <string>

namespace vmm::anchor {

namespace {

// Port 0x80, the POST diagnostic port: Linux writes it for I/O delays. Keeps the last code so
// a hung boot can be diagnosed, and keeps those writes out of the unhandled-access log.
class PostCodePort : public BusDevice {
public:
    void read(std::uint64_t, std::span<std::uint8_t> data) override { set_bus_value(data, last_.load()); }
    void write(std::uint64_t, std::span<const std::uint8_t> data) override {
        last_.store(static_cast<std::uint8_t>(bus_value(data)));
    }

private:
    std::atomic<std::uint8_t> last_{0};
};

}  // namespace

PcDevices install_pc_devices(IoBus& pio, const PcDevicesConfig& config, std::shared_ptr<InterruptLine> com1_irq,
                             std::function<void(std::span<const std::uint8_t>)> console_out, VmControl& control) {
    PcDevices d;
    d.com1 = std::make_shared<legacy::Serial16550>(std::move(com1_irq), std::move(console_out));
    pio.insert(0x3f8, 8, d.com1);
    pio.insert(0x60, 5, std::make_shared<legacy::I8042>([&control] {
        control.guest_stop({StopKind::Reset, 0, "i8042 reset line pulsed"});
    }));
    pio.insert(0x70, 2, std::make_shared<legacy::CmosRtc>(config.low_ram, config.high_ram, config.vcpus));
    pio.insert(0x80, 1, std::make_shared<PostCodePort>());
    pio.insert(0xf4, 4, std::make_shared<legacy::DebugExit>([&control](int status) {
        control.guest_stop({StopKind::GuestExitPort, status >> 1, ""});
    }));
    pio.insert(0x505, 1, std::make_shared<legacy::Pvpanic>([&control](std::uint8_t events) {
        control.guest_stop({StopKind::GuestPanicked, 0, "pvpanic events " + std::to_string(events)});
    }));
    pio.insert(0xcf8, 8, std::make_shared<legacy::PciConfigAbsent>());
    return d;
}

}  // namespace vmm::anchor
