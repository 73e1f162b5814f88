// Configuration space mechanisms: 0xcf8/0xcfc (including byte/word accesses at 0xcfd..0xcff),
// ECAM, absent devices, and the type-0 header masks of PciConfigSpace.
#include "devicemodel/pci/pci_bus.h"
#include "devicemodel/pci/pci_config_space.h"
#include "devicemodel/pci/pci_host_bridge.h"
#include "common/error.h"
#include "tests/support/fakes.h"

#include <linux/pci_regs.h>

#include <gtest/gtest.h>

namespace vmm::pci {
namespace {

// A device with a recognizable identity and nothing else.
class PlainDevice : public PciDevice {
public:
    explicit PlainDevice(PciIdentity id) : config(id) {}
    std::string name() const override { return "plain"; }
    void config_read(std::uint32_t offset, std::span<std::uint8_t> data) override { config.read(offset, data); }
    void config_write(std::uint32_t offset, std::span<const std::uint8_t> data) override { config.write(offset, data); }
    std::optional<PciBar> bar(unsigned) const override { return std::nullopt; }
    std::shared_ptr<BusDevice> bar_device(unsigned) override { return nullptr; }
    PciConfigSpace config;
};

constexpr PciIdentity kPlainId{.vendor_id = 0x1234, .device_id = 0x5678, .revision = 7, .class_code = 0xabcdef,
                               .subsystem_vendor_id = 0x1111, .subsystem_id = 0x2222};

class PciConfigTest : public ::testing::Test {
protected:
    PciConfigTest()
        : bus(pio, mmio, pc_pci_windows(x86::ram_layout(256 << 20)),
              [](std::uint32_t) { return std::make_shared<test::FakeInterruptLine>(); }) {
        bus.install_config_access();
        dev = std::make_shared<PlainDevice>(kPlainId);
        bus.add_device(3, dev);
    }
    std::uint64_t in(std::uint16_t port, std::size_t width) {
        std::uint8_t b[4] = {};
        pio.read(port, std::span(b, width));
        return bus_value(std::span<const std::uint8_t>(b, width));
    }
    void out(std::uint16_t port, std::uint64_t v, std::size_t width) {
        std::uint8_t b[4];
        set_bus_value(std::span(b, width), v);
        pio.write(port, std::span<const std::uint8_t>(b, width));
    }
    std::uint64_t mmread(std::uint64_t gpa, std::size_t width) {
        std::uint8_t b[8] = {};
        mmio.read(gpa, std::span(b, width));
        return bus_value(std::span<const std::uint8_t>(b, width));
    }
    void mmwrite(std::uint64_t gpa, std::uint64_t v, std::size_t width) {
        std::uint8_t b[8];
        set_bus_value(std::span(b, width), v);
        mmio.write(gpa, std::span<const std::uint8_t>(b, width));
    }
    static std::uint32_t cf8(unsigned bus, unsigned dev, unsigned fn, unsigned reg) {
        return 0x80000000u | bus << 16 | dev << 11 | fn << 8 | (reg & 0xfc);
    }
    static std::uint64_t ecam(unsigned bus, unsigned dev, unsigned fn, unsigned reg) {
        return x86::kPciEcamBase + (std::uint64_t(bus) << 20 | dev << 15 | fn << 12 | reg);
    }

    IoBus pio{"pio"}, mmio{"mmio"};
    PciRootBus bus;
    std::shared_ptr<PlainDevice> dev;
};

TEST_F(PciConfigTest, HostBridgeThroughConfigMechanism1) {
    out(0xcf8, cf8(0, 0, 0, 0), 4);
    EXPECT_EQ(in(0xcf8, 4), cf8(0, 0, 0, 0));
    EXPECT_EQ(in(0xcfc, 2), PciHostBridge::kVendorId);
    EXPECT_EQ(in(0xcfe, 2), PciHostBridge::kDeviceId);
    out(0xcf8, cf8(0, 0, 0, PCI_CLASS_REVISION), 4);
    EXPECT_EQ(in(0xcfc, 4) >> 8, PciHostBridge::kClassCode);
    EXPECT_EQ(in(0xcfe, 2), PciHostBridge::kClassCode >> 8);  // Linux's pci_sanity_check reads this
}

TEST_F(PciConfigTest, LinuxType1ProbeFindsTheBus) {
    // arch/x86/pci/direct.c pci_check_type1: outb(0x01, 0xcfb), save, write 0x80000000, read back.
    out(0xcfb, 0x01, 1);
    const auto saved = in(0xcf8, 4);
    out(0xcf8, 0x80000000, 4);
    EXPECT_EQ(in(0xcf8, 4), 0x80000000u);
    out(0xcf8, saved, 4);
}

TEST_F(PciConfigTest, PartialWidthDataPortAccesses) {
    out(0xcf8, cf8(0, 3, 0, PCI_VENDOR_ID), 4);
    EXPECT_EQ(in(0xcfc, 4), 0x56781234u);
    EXPECT_EQ(in(0xcfc, 1), 0x34u);
    EXPECT_EQ(in(0xcfd, 1), 0x12u);
    EXPECT_EQ(in(0xcfe, 1), 0x78u);
    EXPECT_EQ(in(0xcff, 1), 0x56u);
    EXPECT_EQ(in(0xcfe, 2), 0x5678u);
    out(0xcf8, cf8(0, 3, 0, PCI_INTERRUPT_LINE), 4);
    out(0xcfc, 0x5a, 1);  // interrupt line: writable
    out(0xcfd, 0x04, 1);  // interrupt pin: read-only
    EXPECT_EQ(in(0xcfc, 1), 0x5au);
    EXPECT_EQ(in(0xcfd, 1), 0u);
    out(0xcf8, cf8(0, 3, 0, PCI_SUBSYSTEM_VENDOR_ID), 4);
    EXPECT_EQ(in(0xcfe, 2), kPlainId.subsystem_id);
}

TEST_F(PciConfigTest, AccessesCrossingTheDataDwordReadAllOnes) {
    out(0xcf8, cf8(0, 3, 0, 0), 4);
    auto port = bus.config_port_device();
    std::uint8_t b[4] = {};
    port->read(6, std::span(b, 4));  // 0xcfe..0xd01
    EXPECT_EQ(bus_value(b), 0xffffffffu);
    port->read(7, std::span(b, 2));
    EXPECT_EQ(bus_value(std::span<const std::uint8_t>(b, 2)), 0xffffu);
    // A word write at 0xcff would spill past the register: dropped.
    out(0xcf8, cf8(0, 3, 0, PCI_INTERRUPT_LINE), 4);
    const std::uint8_t w[2] = {0x77, 0x77};
    port->write(7, w);
    EXPECT_EQ(in(0xcfc, 1), 0u);
    EXPECT_EQ(in(0xcff, 1), 0u);
}

TEST_F(PciConfigTest, NarrowAccessesToConfigAddressDoNotReachIt) {
    out(0xcf8, cf8(0, 3, 0, 0), 4);
    out(0xcf8, 0x12, 1);
    out(0xcfa, 0x3456, 2);
    EXPECT_EQ(in(0xcf8, 4), cf8(0, 3, 0, 0));
    EXPECT_EQ(in(0xcf9, 1), 0xffu);
}

TEST_F(PciConfigTest, EnableBitClearReadsAllOnes) {
    out(0xcf8, cf8(0, 3, 0, 0) & ~0x80000000u, 4);
    EXPECT_EQ(in(0xcfc, 4), 0xffffffffu);
}

TEST_F(PciConfigTest, AbsentDevicesFunctionsAndBusesReadAllOnes) {
    for (auto addr : {cf8(0, 4, 0, 0), cf8(0, 3, 1, 0), cf8(1, 3, 0, 0), cf8(0, 31, 7, 0x3c)}) {
        out(0xcf8, addr, 4);
        EXPECT_EQ(in(0xcfc, 4), 0xffffffffu) << std::hex << addr;
        out(0xcfc, 0, 4);  // dropped, no crash
        EXPECT_EQ(in(0xcfc, 2), 0xffffu);
    }
    EXPECT_EQ(mmread(ecam(0, 9, 0, 0), 4), 0xffffffffu);
    EXPECT_EQ(mmread(ecam(255, 31, 7, 0xffc), 4), 0xffffffffu);
}

TEST_F(PciConfigTest, EcamReachesTheSameConfigSpace) {
    EXPECT_EQ(mmread(ecam(0, 3, 0, PCI_VENDOR_ID), 4), 0x56781234u);
    EXPECT_EQ(mmread(ecam(0, 3, 0, PCI_DEVICE_ID), 2), 0x5678u);
    EXPECT_EQ(mmread(ecam(0, 3, 0, PCI_REVISION_ID), 1), 7u);
    EXPECT_EQ(mmread(ecam(0, 3, 0, PCI_CLASS_REVISION), 4) >> 8, kPlainId.class_code);
    mmwrite(ecam(0, 3, 0, PCI_INTERRUPT_LINE), 0x0b, 1);
    out(0xcf8, cf8(0, 3, 0, PCI_INTERRUPT_LINE), 4);
    EXPECT_EQ(in(0xcfc, 1), 0x0bu);
    // Extended configuration space exists (ECAM only) and is empty: no extended capabilities.
    EXPECT_EQ(mmread(ecam(0, 3, 0, 0x100), 4), 0u);
    EXPECT_EQ(mmread(ecam(0, 0, 0, PCI_CLASS_DEVICE), 2), PciHostBridge::kClassCode >> 8);
}

TEST_F(PciConfigTest, EcamRejectsMisalignedAndWideAccesses) {
    EXPECT_EQ(mmread(ecam(0, 3, 0, 1), 2), 0xffffu);
    EXPECT_EQ(mmread(ecam(0, 3, 0, 2), 4), 0xffffffffu);
    EXPECT_EQ(mmread(ecam(0, 3, 0, 0), 8), ~std::uint64_t{0});
    mmwrite(ecam(0, 3, 0, PCI_INTERRUPT_LINE - 1), 0xffff, 2);  // misaligned: dropped
    EXPECT_EQ(mmread(ecam(0, 3, 0, PCI_INTERRUPT_LINE), 1), 0u);
}

TEST_F(PciConfigTest, HeaderMasks) {
    // Identity is read-only.
    mmwrite(ecam(0, 3, 0, PCI_VENDOR_ID), 0, 4);
    EXPECT_EQ(mmread(ecam(0, 3, 0, PCI_VENDOR_ID), 4), 0x56781234u);
    // Command: only the defined control bits stick; status is read-only.
    mmwrite(ecam(0, 3, 0, PCI_COMMAND), 0xffffffff, 4);
    EXPECT_EQ(mmread(ecam(0, 3, 0, PCI_COMMAND), 2),
              unsigned(PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY |
                       PCI_COMMAND_SERR | PCI_COMMAND_INTX_DISABLE));
    EXPECT_EQ(mmread(ecam(0, 3, 0, PCI_STATUS), 2), 0u);
    EXPECT_EQ(mmread(ecam(0, 3, 0, PCI_HEADER_TYPE), 1), unsigned(PCI_HEADER_TYPE_NORMAL));
    // No expansion ROM.
    mmwrite(ecam(0, 3, 0, PCI_ROM_ADDRESS), 0xffffffff, 4);
    EXPECT_EQ(mmread(ecam(0, 3, 0, PCI_ROM_ADDRESS), 4), 0u);
}

TEST(PciConfigSpaceTest, CapabilityListIsChainedAndAnnounced) {
    PciConfigSpace c(kPlainId);
    EXPECT_EQ(c.read16(PCI_STATUS) & PCI_STATUS_CAP_LIST, 0);
    const std::uint8_t a[3] = {1, 2, 3};
    const std::uint8_t b[6] = {};
    const auto first = c.add_capability(0x09, a);
    const auto second = c.add_capability(0x11, b);
    EXPECT_NE(c.read16(PCI_STATUS) & PCI_STATUS_CAP_LIST, 0);
    EXPECT_EQ(c.read8(PCI_CAPABILITY_LIST), first);
    EXPECT_GE(first, PCI_STD_HEADER_SIZEOF);
    EXPECT_EQ(c.read8(first), 0x09);
    EXPECT_EQ(c.read8(first + 1), second);
    EXPECT_EQ(c.read8(first + 2), 1);
    EXPECT_EQ(second % 4, 0);
    EXPECT_GE(second, first + 2 + sizeof a);
    EXPECT_EQ(c.read8(second + 1), 0);
    // Capability bytes are read-only unless made writable.
    const std::uint8_t ff[1] = {0xff};
    c.write(first + 2, ff);
    EXPECT_EQ(c.read8(first + 2), 1);
    c.set_writable(first + 2, ff);
    c.write(first + 2, ff);
    EXPECT_EQ(c.read8(first + 2), 0xff);
}

TEST(PciConfigSpaceTest, CapabilityListOverflowThrows) {
    PciConfigSpace c(kPlainId);
    const std::uint8_t body[60] = {};
    c.add_capability(0x09, body);
    c.add_capability(0x09, body);
    c.add_capability(0x09, body);
    EXPECT_THROW(c.add_capability(0x09, body), Error);
}

TEST(PciConfigSpaceTest, OutOfRangeAccessesAreHarmless) {
    PciConfigSpace c(kPlainId);
    std::uint8_t b[4] = {};
    c.read(kConfigSpaceSize - 2, b);
    EXPECT_EQ(b[2], 0xff);
    EXPECT_EQ(b[3], 0xff);
    const std::uint8_t w[4] = {1, 2, 3, 4};
    c.write(kConfigSpaceSize - 1, w);  // must not write past the array
    c.read(0xffffffffu, b);
    EXPECT_EQ(bus_value(b), 0xffffffffu);
}

}  // namespace
}  // namespace vmm::pci
