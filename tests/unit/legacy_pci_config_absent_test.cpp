#include "devicemodel/legacy/pci_config_absent.h"

#include <gtest/gtest.h>

namespace vmm::legacy {
namespace {

class PciConfigAbsentTest : public ::testing::Test {
protected:
    std::uint64_t rd(std::uint64_t off, std::size_t width) {
        std::uint8_t b[8] = {};
        dev.read(off, std::span(b, width));
        return bus_value(std::span<const std::uint8_t>(b, width));
    }
    void wr(std::uint64_t off, std::uint64_t v, std::size_t width) {
        std::uint8_t b[8];
        set_bus_value(std::span(b, width), v);
        dev.write(off, std::span<const std::uint8_t>(b, width));
    }
    PciConfigAbsent dev;
};

TEST_F(PciConfigAbsentTest, ConfigAddressReadsBack) {
    EXPECT_EQ(rd(0, 4), 0u);
    wr(0, 0x80001234, 4);
    EXPECT_EQ(rd(0, 4), 0x80001234u);
    wr(0, 0xdeadbeef, 4);
    EXPECT_EQ(rd(0, 4), 0xdeadbeefu);
}

TEST_F(PciConfigAbsentTest, NarrowAccessesToConfigAddressIgnored) {
    wr(0, 0x80000000, 4);
    wr(0, 0x12, 1);
    wr(3, 0x01, 1);  // Linux's pci_check_type1 starts with outb(0x01, 0xcfb)
    wr(0, 0x3456, 2);
    wr(2, 0x3456, 2);
    EXPECT_EQ(rd(0, 4), 0x80000000u);
    EXPECT_EQ(rd(0, 1), 0xffu);
    EXPECT_EQ(rd(1, 1), 0xffu);
    EXPECT_EQ(rd(2, 2), 0xffffu);
}

TEST_F(PciConfigAbsentTest, LinuxType1Check) {
    wr(3, 0x01, 1);
    const auto tmp = rd(0, 4);
    wr(0, 0x80000000, 4);
    EXPECT_EQ(rd(0, 4), 0x80000000u);
    // pci_sanity_check: the host bridge's vendor/class read as all-ones: no PCI.
    EXPECT_EQ(rd(4, 2), 0xffffu);
    wr(0, tmp, 4);
    EXPECT_EQ(rd(0, 4), tmp);
}

TEST_F(PciConfigAbsentTest, ConfigDataReadsAllOnesAtEveryWidth) {
    wr(0, 0x80000000, 4);
    EXPECT_EQ(rd(4, 4), 0xffffffffu);
    EXPECT_EQ(rd(4, 2), 0xffffu);
    EXPECT_EQ(rd(6, 2), 0xffffu);
    for (std::uint64_t off = 4; off < 8; ++off) EXPECT_EQ(rd(off, 1), 0xffu);
    wr(4, 0x12345678, 4);
    EXPECT_EQ(rd(4, 4), 0xffffffffu);
    EXPECT_EQ(rd(0, 4), 0x80000000u);  // data writes do not touch CONFIG_ADDRESS
}

}  // namespace
}  // namespace vmm::legacy
