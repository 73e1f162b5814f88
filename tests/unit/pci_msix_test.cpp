// MSI-X: the capability in config space, the table and PBA, function/vector masking and
// pending bits (a masked vector that fires is delivered on unmask).
#include "devicemodel/pci/msix.h"
#include "devicemodel/pci/pci_config_space.h"

#include "common/error.h"

#include <linux/pci_regs.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace vmm::pci {
namespace {

class RecordingSink : public MsiVectorSink {
public:
    struct Config {
        unsigned vector;
        std::uint64_t address;
        std::uint32_t data;
        bool masked;
        bool operator==(const Config&) const = default;
    };
    void configure(unsigned vector, std::uint64_t address, std::uint32_t data, bool masked) override {
        configs.push_back({vector, address, data, masked});
    }
    void trigger(unsigned vector) override { triggers.push_back(vector); }
    std::vector<Config> configs;
    std::vector<unsigned> triggers;
};

class MsixTest : public ::testing::Test {
protected:
    static constexpr unsigned kVectors = 5;
    static constexpr std::uint32_t kTableOffset = 0x2000, kPbaOffset = 0x3000;

    MsixTest() : sink(std::make_shared<RecordingSink>()), msix(kVectors, sink) {
        cap = msix.add_capability(config, 2, kTableOffset, 2, kPbaOffset);
    }
    void control(std::uint16_t v) {
        const std::uint8_t b[2] = {std::uint8_t(v), std::uint8_t(v >> 8)};
        config.write(cap + PCI_MSIX_FLAGS, b);
        msix.config_written(config);
    }
    void table_write32(unsigned vector, unsigned field, std::uint32_t v) {
        std::uint8_t b[4];
        set_bus_value(b, v);
        msix.table_write(vector * PCI_MSIX_ENTRY_SIZE + field, b);
    }
    std::uint32_t table_read32(unsigned vector, unsigned field) {
        std::uint8_t b[4];
        msix.table_read(vector * PCI_MSIX_ENTRY_SIZE + field, b);
        return std::uint32_t(bus_value(b));
    }
    std::uint64_t pba() {
        std::uint8_t b[8];
        msix.pba_read(0, b);
        return bus_value(b);
    }
    // What Linux's msix_setup_entries + msix_program_entries do for one vector.
    void program(unsigned vector, std::uint64_t address, std::uint32_t data) {
        table_write32(vector, PCI_MSIX_ENTRY_LOWER_ADDR, std::uint32_t(address));
        table_write32(vector, PCI_MSIX_ENTRY_UPPER_ADDR, std::uint32_t(address >> 32));
        table_write32(vector, PCI_MSIX_ENTRY_DATA, data);
    }
    void unmask(unsigned vector) { table_write32(vector, PCI_MSIX_ENTRY_VECTOR_CTRL, 0); }
    void mask(unsigned vector) { table_write32(vector, PCI_MSIX_ENTRY_VECTOR_CTRL, PCI_MSIX_ENTRY_CTRL_MASKBIT); }

    PciConfigSpace config{PciIdentity{}};
    std::shared_ptr<RecordingSink> sink;
    MsixTable msix;
    std::uint8_t cap = 0;
};

TEST_F(MsixTest, CapabilityDescribesTheTable) {
    EXPECT_EQ(config.read8(PCI_CAPABILITY_LIST), cap);
    EXPECT_EQ(config.read8(cap), PCI_CAP_ID_MSIX);
    EXPECT_EQ(config.read16(cap + PCI_MSIX_FLAGS) & PCI_MSIX_FLAGS_QSIZE, kVectors - 1);
    EXPECT_EQ(config.read32(cap + PCI_MSIX_TABLE), kTableOffset | 2);
    EXPECT_EQ(config.read32(cap + PCI_MSIX_PBA), kPbaOffset | 2);
    // Only enable and function mask are writable.
    const std::uint8_t ones[10] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    config.write(cap + PCI_MSIX_FLAGS, ones);
    EXPECT_EQ(config.read16(cap + PCI_MSIX_FLAGS), (kVectors - 1) | PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    EXPECT_EQ(config.read32(cap + PCI_MSIX_TABLE), kTableOffset | 2);
    EXPECT_EQ(msix.table_bytes(), kVectors * 16u);
    EXPECT_EQ(msix.pba_bytes(), 8u);
}

TEST_F(MsixTest, DisabledMsixDeliversNothingAndRecordsNothing) {
    program(0, 0xfee00000, 0x41);
    unmask(0);
    EXPECT_FALSE(msix.trigger(0));
    EXPECT_TRUE(sink->triggers.empty());
    EXPECT_FALSE(msix.pending(0));
}

TEST_F(MsixTest, VectorsStartMaskedAndFireOnUnmask) {
    EXPECT_EQ(table_read32(3, PCI_MSIX_ENTRY_VECTOR_CTRL), unsigned(PCI_MSIX_ENTRY_CTRL_MASKBIT));
    control(PCI_MSIX_FLAGS_ENABLE);
    EXPECT_TRUE(msix.trigger(3));
    EXPECT_TRUE(sink->triggers.empty());
    EXPECT_TRUE(msix.pending(3));
    EXPECT_EQ(pba(), 1u << 3);
    program(3, 0xfee01000, 0x4023);
    EXPECT_TRUE(sink->triggers.empty());  // programming a masked vector delivers nothing
    unmask(3);
    EXPECT_EQ(sink->triggers, std::vector<unsigned>{3});
    EXPECT_FALSE(msix.pending(3));
    EXPECT_EQ(pba(), 0u);
    ASSERT_FALSE(sink->configs.empty());
    // The unmask configured the route before the pending message went out.
    EXPECT_EQ(sink->configs.back(), (RecordingSink::Config{3, 0xfee01000, 0x4023, false}));
    EXPECT_TRUE(msix.trigger(3));
    EXPECT_EQ(sink->triggers, (std::vector<unsigned>{3, 3}));
}

TEST_F(MsixTest, FunctionMaskHoldsEveryVector) {
    // Linux: enable with the function masked, program, unmask vectors, clear the function mask.
    control(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    for (unsigned v = 0; v < kVectors; ++v) {
        program(v, 0xfee00000, 0x30 + v);
        unmask(v);
    }
    EXPECT_TRUE(msix.function_masked());
    EXPECT_TRUE(msix.trigger(1));
    EXPECT_TRUE(msix.trigger(4));
    EXPECT_TRUE(sink->triggers.empty());
    EXPECT_EQ(pba(), (1u << 1) | (1u << 4));
    control(PCI_MSIX_FLAGS_ENABLE);
    EXPECT_EQ(sink->triggers, (std::vector<unsigned>{1, 4}));
    EXPECT_EQ(pba(), 0u);
    for (unsigned v = 0; v < kVectors; ++v) EXPECT_FALSE(msix.pending(v));
}

TEST_F(MsixTest, MaskingAgainHoldsAndDisablingDropsRoutes) {
    control(PCI_MSIX_FLAGS_ENABLE);
    program(0, 0xfee00000, 0x51);
    unmask(0);
    mask(0);
    EXPECT_TRUE(msix.vector_masked(0));
    EXPECT_TRUE(msix.trigger(0));
    EXPECT_TRUE(sink->triggers.empty());
    EXPECT_EQ(sink->configs.back(), (RecordingSink::Config{0, 0xfee00000, 0x51, true}));
    unmask(0);
    EXPECT_EQ(sink->triggers, std::vector<unsigned>{0});
    control(0);
    EXPECT_EQ(sink->configs.back(), (RecordingSink::Config{0, 0xfee00000, 0x51, true}));
    EXPECT_FALSE(msix.trigger(0));
}

TEST_F(MsixTest, ConfigureIsCalledOnlyOnChanges) {
    control(PCI_MSIX_FLAGS_ENABLE);
    program(2, 0xfee00000, 0x60);
    const auto n = sink->configs.size();
    program(2, 0xfee00000, 0x60);  // same values again
    EXPECT_EQ(sink->configs.size(), n);
    table_write32(2, PCI_MSIX_ENTRY_VECTOR_CTRL, PCI_MSIX_ENTRY_CTRL_MASKBIT | 0xfffe);  // reserved bits ignored
    EXPECT_EQ(sink->configs.size(), n);
    EXPECT_EQ(table_read32(2, PCI_MSIX_ENTRY_VECTOR_CTRL), unsigned(PCI_MSIX_ENTRY_CTRL_MASKBIT));
}

TEST_F(MsixTest, TableAccessWidths) {
    // A qword write covers address low+high.
    std::uint8_t q[8];
    set_bus_value(q, 0x00000001fee0000cull);
    msix.table_write(1 * PCI_MSIX_ENTRY_SIZE, q);
    EXPECT_EQ(table_read32(1, PCI_MSIX_ENTRY_LOWER_ADDR), 0xfee0000cu);
    EXPECT_EQ(table_read32(1, PCI_MSIX_ENTRY_UPPER_ADDR), 1u);
    std::uint8_t r[8];
    msix.table_read(1 * PCI_MSIX_ENTRY_SIZE, r);
    EXPECT_EQ(bus_value(r), 0x00000001fee0000cull);
    // Byte, word, misaligned and out-of-range accesses: all-ones, writes dropped.
    std::uint8_t b1[1], b2[2], b4[4];
    msix.table_read(0, b1);
    EXPECT_EQ(b1[0], 0xff);
    msix.table_read(0, b2);
    EXPECT_EQ(bus_value(b2), 0xffffu);
    msix.table_read(2, b4);
    EXPECT_EQ(bus_value(b4), 0xffffffffu);
    msix.table_read(kVectors * PCI_MSIX_ENTRY_SIZE, b4);
    EXPECT_EQ(bus_value(b4), 0xffffffffu);
    msix.table_read(~std::uint64_t{0} - 3, b4);
    EXPECT_EQ(bus_value(b4), 0xffffffffu);
    const std::uint8_t w1[1] = {0};
    msix.table_write(PCI_MSIX_ENTRY_VECTOR_CTRL, w1);
    EXPECT_TRUE(msix.vector_masked(0));
    const std::uint8_t w4[4] = {0, 0, 0, 0};
    msix.table_write(kVectors * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL, w4);
    EXPECT_FALSE(msix.trigger(kVectors));
}

TEST_F(MsixTest, PbaIsReadOnly) {
    control(PCI_MSIX_FLAGS_ENABLE);
    msix.trigger(0);
    std::uint8_t zero[8] = {};
    // There is no pba_write: the transport drops writes. Reading in dwords works too.
    std::uint8_t lo[4], hi[4];
    msix.pba_read(0, lo);
    msix.pba_read(4, hi);
    EXPECT_EQ(bus_value(lo), 1u);
    EXPECT_EQ(bus_value(hi), 0u);
    msix.pba_read(8, zero);  // past the PBA
    EXPECT_EQ(bus_value(zero), ~std::uint64_t{0});
}

TEST(MsixTableTest, BadSizesThrow) {
    auto sink = std::make_shared<RecordingSink>();
    EXPECT_THROW(MsixTable(0, sink), Error);
    EXPECT_THROW(MsixTable(2049, sink), Error);
    EXPECT_THROW(MsixTable(4, nullptr), Error);
    MsixTable big(2048, sink);
    EXPECT_EQ(big.pba_bytes(), 256u);
}

}  // namespace
}  // namespace vmm::pci
