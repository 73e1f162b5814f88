// Legacy INTx: the slot/pin swizzle onto GSIs 16..19, shared GSIs OR-ing their devices'
// levels, and the bus handing each device its line and the interrupt line register.
#include "devicemodel/pci/pci_bus.h"
#include "devicemodel/pci/pci_config_space.h"
#include "devicemodel/pci/pci_intx_router.h"

#include "common/error.h"
#include "tests/support/fakes.h"

#include <linux/pci_regs.h>

#include <gtest/gtest.h>

#include <map>

namespace vmm::pci {
namespace {

class IntxTest : public ::testing::Test {
protected:
    PciIntxRouter::LineFactory factory() {
        return [this](std::uint32_t gsi) {
            ++factory_calls[gsi];
            auto line = std::make_shared<test::FakeInterruptLine>();
            lines[gsi] = line;
            return line;
        };
    }
    std::map<std::uint32_t, std::shared_ptr<test::FakeInterruptLine>> lines;
    std::map<std::uint32_t, int> factory_calls;
};

TEST_F(IntxTest, SharedGsiIsTheOrOfItsDevices) {
    PciIntxRouter router(factory());
    // Slot 1 INTA and slot 0 INTB and slot 5 INTA all land on the same GSI.
    auto a = router.line(1, 1);
    auto b = router.line(0, 2);
    auto c = router.line(5, 1);
    const std::uint32_t gsi = x86::pci_intx_gsi(1, 0);
    ASSERT_EQ(x86::pci_intx_gsi(0, 1), gsi);
    ASSERT_EQ(x86::pci_intx_gsi(5, 0), gsi);
    EXPECT_EQ(factory_calls[gsi], 1);
    auto& line = *lines.at(gsi);
    a->set_level(true);
    EXPECT_TRUE(line.level);
    b->set_level(true);
    a->set_level(false);
    EXPECT_TRUE(line.level);  // b still holds it
    a->set_level(false);      // repeated deassert does not underflow the count
    EXPECT_TRUE(line.level);
    b->set_level(false);
    EXPECT_FALSE(line.level);
    EXPECT_EQ(line.triggers, 1);
    // An edge on a level line: a pulse, unless the device already holds the line.
    c->trigger();
    EXPECT_FALSE(line.level);
    EXPECT_EQ(line.triggers, 2);
    c->set_level(true);
    c->trigger();
    EXPECT_TRUE(line.level);
    EXPECT_EQ(line.triggers, 3);
}

TEST_F(IntxTest, DifferentGsisAreIndependent) {
    PciIntxRouter router(factory());
    auto a = router.line(2, 1);
    auto b = router.line(3, 1);
    ASSERT_NE(x86::pci_intx_gsi(2, 0), x86::pci_intx_gsi(3, 0));
    a->set_level(true);
    EXPECT_TRUE(lines.at(x86::pci_intx_gsi(2, 0))->level);
    EXPECT_FALSE(lines.at(x86::pci_intx_gsi(3, 0))->level);
    b->set_level(true);
    a->set_level(false);
    EXPECT_FALSE(lines.at(x86::pci_intx_gsi(2, 0))->level);
    EXPECT_TRUE(lines.at(x86::pci_intx_gsi(3, 0))->level);
}

TEST_F(IntxTest, BadPinsAndMissingLinesThrow) {
    PciIntxRouter router(factory());
    EXPECT_THROW(router.line(1, 0), Error);
    EXPECT_THROW(router.line(1, 5), Error);
    EXPECT_THROW(router.line(32, 1), Error);
    PciIntxRouter empty([](std::uint32_t) { return std::shared_ptr<InterruptLine>(); });
    EXPECT_THROW(empty.line(1, 1), Error);
}

class PinDevice : public PciDevice {
public:
    explicit PinDevice(std::uint8_t pin) : config(PciIdentity{.vendor_id = 0x1234, .device_id = 2}) {
        config.set_interrupt_pin(pin);
    }
    std::string name() const override { return "pin"; }
    void config_read(std::uint32_t offset, std::span<std::uint8_t> data) override { config.read(offset, data); }
    void config_write(std::uint32_t offset, std::span<const std::uint8_t> data) override { config.write(offset, data); }
    std::optional<PciBar> bar(unsigned) const override { return std::nullopt; }
    std::shared_ptr<BusDevice> bar_device(unsigned) override { return nullptr; }
    std::uint8_t interrupt_pin() const override { return config.read8(PCI_INTERRUPT_PIN); }
    void attach_intx(std::shared_ptr<InterruptLine> l) override { line = std::move(l); }
    PciConfigSpace config;
    std::shared_ptr<InterruptLine> line;
};

TEST_F(IntxTest, BusWiresDevicesWithAPin) {
    IoBus pio("pio"), mmio("mmio");
    PciRootBus bus(pio, mmio, pc_pci_windows(x86::ram_layout(64 << 20)), factory());
    auto with_pin = std::make_shared<PinDevice>(2);  // INTB#
    auto without = std::make_shared<PinDevice>(0);
    bus.add_device(6, with_pin);
    bus.add_device(7, without);
    ASSERT_TRUE(with_pin->line);
    EXPECT_FALSE(without->line);
    const std::uint32_t gsi = x86::pci_intx_gsi(6, 1);
    EXPECT_EQ(with_pin->config.read8(PCI_INTERRUPT_LINE), gsi);
    with_pin->line->set_level(true);
    EXPECT_TRUE(lines.at(gsi)->level);
    with_pin->line->set_level(false);
    EXPECT_FALSE(lines.at(gsi)->level);
}

}  // namespace
}  // namespace vmm::pci
