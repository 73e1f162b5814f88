// BAR sizing (32-bit, 64-bit, I/O), placement (natural alignment, windows, no overlaps),
// mapping on the IoBuses through the command register, and hostile BAR programming.
#include "devicemodel/pci/pci_bus.h"
#include "devicemodel/pci/pci_config_space.h"
#include "tests/support/fakes.h"

#include "common/error.h"

#include <linux/pci_regs.h>

#include <gtest/gtest.h>

#include <vector>

namespace vmm::pci {
namespace {

// Answers reads with 0xb000 + offset, remembers writes.
class BarEcho : public BusDevice {
public:
    void read(std::uint64_t offset, std::span<std::uint8_t> data) override { set_bus_value(data, 0xb000 + offset); }
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
        last_offset = offset;
        last_value = bus_value(data);
    }
    std::uint64_t last_offset = ~0ull, last_value = 0;
};

class BarDevice : public PciDevice {
public:
    explicit BarDevice(std::vector<std::pair<unsigned, PciBar>> bars)
        : config(PciIdentity{.vendor_id = 0x1234, .device_id = 0x1, .class_code = 0xff0000}) {
        for (auto& [i, b] : bars) {
            config.add_bar(i, b);
            devices[i] = std::make_shared<BarEcho>();
        }
    }
    std::string name() const override { return "bars"; }
    void config_read(std::uint32_t offset, std::span<std::uint8_t> data) override { config.read(offset, data); }
    void config_write(std::uint32_t offset, std::span<const std::uint8_t> data) override { config.write(offset, data); }
    std::optional<PciBar> bar(unsigned index) const override { return config.bar(index); }
    std::shared_ptr<BusDevice> bar_device(unsigned index) override { return devices[index]; }
    void bar_mapped(unsigned index, std::optional<std::uint64_t> gpa) override { events.push_back({index, gpa}); }

    PciConfigSpace config;
    std::shared_ptr<BarEcho> devices[kNumBars];
    std::vector<std::pair<unsigned, std::optional<std::uint64_t>>> events;
};

constexpr std::uint64_t kMiB = 1 << 20;

class PciBarTest : public ::testing::Test {
protected:
    PciBarTest()
        : ram(x86::ram_layout(5ull << 30)),  // 3 GiB low + 2 GiB high
          windows(pc_pci_windows(ram)),
          bus(pio, mmio, windows, [](std::uint32_t) { return std::make_shared<test::FakeInterruptLine>(); }) {}

    std::uint32_t cfg32(unsigned slot, unsigned reg) {
        std::uint8_t b[4];
        bus.config_read({0, slot, 0}, reg, b);
        return std::uint32_t(bus_value(b));
    }
    void cfg_write32(unsigned slot, unsigned reg, std::uint32_t v) {
        std::uint8_t b[4];
        set_bus_value(b, v);
        bus.config_write({0, slot, 0}, reg, b);
    }
    void cfg_write16(unsigned slot, unsigned reg, std::uint16_t v) {
        std::uint8_t b[2];
        set_bus_value(b, v);
        bus.config_write({0, slot, 0}, reg, b);
    }
    // Linux's __pci_read_base: save, write ~0, read the mask, restore; returns the size.
    std::uint64_t linux_size(unsigned slot, unsigned index) {
        const unsigned reg = PCI_BASE_ADDRESS_0 + 4 * index;
        const std::uint32_t l = cfg32(slot, reg);
        cfg_write32(slot, reg, 0xffffffff);
        const std::uint32_t sz = cfg32(slot, reg);
        cfg_write32(slot, reg, l);
        std::uint64_t mask;
        if (l & PCI_BASE_ADDRESS_SPACE_IO) {
            mask = sz & PCI_BASE_ADDRESS_IO_MASK & 0xffff;
        } else if ((l & PCI_BASE_ADDRESS_MEM_TYPE_MASK) == PCI_BASE_ADDRESS_MEM_TYPE_64) {
            const std::uint32_t h = cfg32(slot, reg + 4);
            cfg_write32(slot, reg + 4, 0xffffffff);
            const std::uint32_t szh = cfg32(slot, reg + 4);
            cfg_write32(slot, reg + 4, h);
            mask = (std::uint64_t(szh) << 32 | (sz & PCI_BASE_ADDRESS_MEM_MASK));
        } else {
            mask = 0xffffffff00000000ull | (sz & PCI_BASE_ADDRESS_MEM_MASK);
        }
        return mask & ~(mask - 1);  // lowest set bit
    }
    std::uint64_t bar_address(unsigned slot, unsigned index) {
        const unsigned reg = PCI_BASE_ADDRESS_0 + 4 * index;
        const std::uint32_t l = cfg32(slot, reg);
        if (l & PCI_BASE_ADDRESS_SPACE_IO) return l & PCI_BASE_ADDRESS_IO_MASK;
        std::uint64_t a = l & PCI_BASE_ADDRESS_MEM_MASK;
        if ((l & PCI_BASE_ADDRESS_MEM_TYPE_MASK) == PCI_BASE_ADDRESS_MEM_TYPE_64) a |= std::uint64_t(cfg32(slot, reg + 4)) << 32;
        return a;
    }
    bool mmio_hits(std::uint64_t gpa, std::uint64_t& value) {
        std::uint8_t b[4];
        const bool hit = mmio.read(gpa, b);
        value = bus_value(b);
        return hit;
    }

    x86::RamLayout ram;
    PciWindows windows;
    IoBus pio{"pio"}, mmio{"mmio"};
    PciRootBus bus;
};

TEST_F(PciBarTest, SizingReadsBackTheMaskAndTypeBits) {
    auto dev = std::make_shared<BarDevice>(std::vector<std::pair<unsigned, PciBar>>{
        {0, {PciBarKind::Mem32, 0x1000, false}},
        {1, {PciBarKind::Io, 0x40, false}},
        {2, {PciBarKind::Mem64, 1ull << 33, true}},
        {4, {PciBarKind::Mem32, 16 * kMiB, true}}});
    bus.add_device(1, dev);
    EXPECT_EQ(linux_size(1, 0), 0x1000u);
    EXPECT_EQ(linux_size(1, 1), 0x40u);
    EXPECT_EQ(linux_size(1, 2), 1ull << 33);
    EXPECT_EQ(linux_size(1, 4), 16 * kMiB);
    // Type bits survive the all-ones write.
    cfg_write32(1, PCI_BASE_ADDRESS_1, 0xffffffff);
    EXPECT_EQ(cfg32(1, PCI_BASE_ADDRESS_1), (std::uint32_t(~(0x40 - 1)) & 0xfffc) | PCI_BASE_ADDRESS_SPACE_IO);
    cfg_write32(1, PCI_BASE_ADDRESS_2, 0xffffffff);
    EXPECT_EQ(cfg32(1, PCI_BASE_ADDRESS_2) & 0xf, unsigned(PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH));
    cfg_write32(1, PCI_BASE_ADDRESS_4, 0xffffffff);
    EXPECT_EQ(cfg32(1, PCI_BASE_ADDRESS_4) & 0xf, unsigned(PCI_BASE_ADDRESS_MEM_PREFETCH));
    // Unused BARs (5) read 0 even after all-ones: Linux sees no BAR.
    cfg_write32(1, PCI_BASE_ADDRESS_5, 0xffffffff);
    EXPECT_EQ(cfg32(1, PCI_BASE_ADDRESS_5), 0u);
}

TEST_F(PciBarTest, PlacementIsAlignedInsideTheWindowsAndDisjoint) {
    struct Placed {
        PciBarKind kind;
        std::uint64_t base, size;
    };
    std::vector<Placed> placed;
    const std::vector<std::vector<std::pair<unsigned, PciBar>>> layouts = {
        {{0, {PciBarKind::Mem32, 0x100, false}}, {1, {PciBarKind::Mem64, 0x4000, false}}, {3, {PciBarKind::Io, 0x20, false}}},
        {{0, {PciBarKind::Mem32, 0x10000, false}}, {2, {PciBarKind::Mem64, 1ull << 30, true}}},
        {{0, {PciBarKind::Io, 0x100, false}}, {1, {PciBarKind::Mem32, 0x1000, false}}, {2, {PciBarKind::Io, 4, false}}},
        {{4, {PciBarKind::Mem64, 0x10, false}}, {0, {PciBarKind::Mem32, 64 * kMiB, false}}},
    };
    for (unsigned i = 0; i < layouts.size(); ++i) {
        auto dev = std::make_shared<BarDevice>(layouts[i]);
        const unsigned slot = bus.add_device(dev);
        for (auto& [index, b] : layouts[i]) placed.push_back({b.kind, bar_address(slot, index), b.size});
    }
    for (std::size_t i = 0; i < placed.size(); ++i) {
        const auto& p = placed[i];
        EXPECT_EQ(p.base % p.size, 0u) << i;
        switch (p.kind) {
        case PciBarKind::Io:
            EXPECT_GE(p.base, windows.io_start);
            EXPECT_LE(p.base + p.size, windows.io_end);
            break;
        case PciBarKind::Mem32:
            EXPECT_GE(p.base, x86::kPciMmio32Start);
            EXPECT_LE(p.base + p.size, x86::kPciMmio32End);
            break;
        case PciBarKind::Mem64:
            EXPECT_GE(p.base, x86::pci_mmio64_start(ram.high_size));
            EXPECT_GE(p.base, x86::k4GiB + ram.high_size);  // above RAM
            EXPECT_LE(p.base + p.size, windows.mmio64_end);
            break;
        }
        for (std::size_t j = i + 1; j < placed.size(); ++j) {
            const auto& q = placed[j];
            const bool same_space = (p.kind == PciBarKind::Io) == (q.kind == PciBarKind::Io);
            EXPECT_FALSE(same_space && p.base < q.base + q.size && q.base < p.base + p.size) << i << " vs " << j;
        }
    }
}

TEST_F(PciBarTest, WindowExhaustionAndSlotConflictsThrow) {
    bus.add_device(2, std::make_shared<BarDevice>(std::vector<std::pair<unsigned, PciBar>>{{0, {PciBarKind::Mem32, 0x1000, false}}}));
    EXPECT_THROW(bus.add_device(2, std::make_shared<BarDevice>(std::vector<std::pair<unsigned, PciBar>>{})), Error);
    EXPECT_THROW(bus.add_device(0, std::make_shared<BarDevice>(std::vector<std::pair<unsigned, PciBar>>{})), Error);
    EXPECT_THROW(bus.add_device(32, std::make_shared<BarDevice>(std::vector<std::pair<unsigned, PciBar>>{})), Error);
    // The 32-bit window is 512 MiB: a 1 GiB 32-bit BAR cannot fit; the slot stays free.
    EXPECT_THROW(bus.add_device(5, std::make_shared<BarDevice>(std::vector<std::pair<unsigned, PciBar>>{
                                       {0, {PciBarKind::Mem32, 1ull << 30, false}}})),
                 Error);
    EXPECT_EQ(bus.device(5), nullptr);
}

TEST_F(PciBarTest, CommandRegisterMapsAndUnmaps) {
    auto dev = std::make_shared<BarDevice>(std::vector<std::pair<unsigned, PciBar>>{
        {0, {PciBarKind::Mem64, 0x4000, false}}, {2, {PciBarKind::Io, 0x20, false}}});
    bus.add_device(1, dev);
    const std::uint64_t mem = bar_address(1, 0);
    const std::uint64_t io = bar_address(1, 2);
    std::uint64_t v = 0;
    EXPECT_FALSE(mmio_hits(mem, v));  // decoding is off after reset
    EXPECT_FALSE(bus.bar_mapping(1, 0));

    cfg_write16(1, PCI_COMMAND, PCI_COMMAND_MEMORY);
    ASSERT_TRUE(mmio_hits(mem + 0x10, v));
    EXPECT_EQ(v, 0xb010u);
    EXPECT_EQ(bus.bar_mapping(1, 0), mem);
    std::uint8_t b[2];
    EXPECT_FALSE(pio.read(io, b));  // I/O decoding still off

    cfg_write16(1, PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_IO);
    ASSERT_TRUE(pio.read(io + 2, b));
    EXPECT_EQ(bus_value(b), 0xb002u);
    const std::uint8_t w[2] = {0x34, 0x12};
    pio.write(io + 4, w);
    EXPECT_EQ(dev->devices[2]->last_offset, 4u);
    EXPECT_EQ(dev->devices[2]->last_value, 0x1234u);

    cfg_write16(1, PCI_COMMAND, 0);
    EXPECT_FALSE(mmio_hits(mem, v));
    EXPECT_FALSE(pio.read(io, b));
    const decltype(dev->events) expected = {{0, mem}, {2, io}, {0, std::nullopt}, {2, std::nullopt}};
    EXPECT_EQ(dev->events, expected);
}

TEST_F(PciBarTest, GuestMovesABar) {
    auto dev = std::make_shared<BarDevice>(std::vector<std::pair<unsigned, PciBar>>{{0, {PciBarKind::Mem32, 0x1000, false}}});
    bus.add_device(1, dev);
    cfg_write16(1, PCI_COMMAND, PCI_COMMAND_MEMORY);
    const std::uint64_t old_base = bar_address(1, 0);
    const std::uint64_t new_base = 0xd0000000;
    cfg_write32(1, PCI_BASE_ADDRESS_0, std::uint32_t(new_base));
    std::uint64_t v = 0;
    EXPECT_FALSE(mmio_hits(old_base, v));
    ASSERT_TRUE(mmio_hits(new_base + 8, v));
    EXPECT_EQ(v, 0xb008u);
    ASSERT_EQ(dev->events.size(), 3u);
    EXPECT_EQ(dev->events[1], (std::pair<unsigned, std::optional<std::uint64_t>>{0, std::nullopt}));
    EXPECT_EQ(dev->events[2], (std::pair<unsigned, std::optional<std::uint64_t>>{0, new_base}));
}

TEST_F(PciBarTest, LinuxSizingWithDecodingOffLeavesTheMappingAlone) {
    auto dev = std::make_shared<BarDevice>(std::vector<std::pair<unsigned, PciBar>>{{0, {PciBarKind::Mem64, 0x4000, false}}});
    bus.add_device(1, dev);
    const std::uint64_t base = bar_address(1, 0);
    cfg_write16(1, PCI_COMMAND, 0);
    linux_size(1, 0);
    cfg_write16(1, PCI_COMMAND, PCI_COMMAND_MEMORY);
    EXPECT_EQ(bus.bar_mapping(1, 0), base);
}

TEST_F(PciBarTest, BarOverRamOrReservedRangesIsNotMapped) {
    auto dev = std::make_shared<BarDevice>(std::vector<std::pair<unsigned, PciBar>>{{0, {PciBarKind::Mem64, 0x1000, false}}});
    bus.add_device(1, dev);
    cfg_write16(1, PCI_COMMAND, PCI_COMMAND_MEMORY);
    for (std::uint64_t bad : {std::uint64_t{0x100000}, std::uint64_t{0x80000000}, x86::k4GiB + 0x1000,
                              std::uint64_t{x86::kLapicAddr}, std::uint64_t{x86::kIoapicAddr}, std::uint64_t{0}}) {
        cfg_write32(1, PCI_BASE_ADDRESS_0, std::uint32_t(bad));
        cfg_write32(1, PCI_BASE_ADDRESS_1, std::uint32_t(bad >> 32));
        EXPECT_FALSE(bus.bar_mapping(1, 0)) << std::hex << bad;
    }
    // Over the ECAM window (on the MMIO bus): refused by the bus.
    bus.install_config_access();
    cfg_write32(1, PCI_BASE_ADDRESS_0, std::uint32_t(x86::kPciEcamBase));
    cfg_write32(1, PCI_BASE_ADDRESS_1, 0);
    EXPECT_FALSE(bus.bar_mapping(1, 0));
    // Back to a free address: mapped again.
    cfg_write32(1, PCI_BASE_ADDRESS_0, 0xc8000000);
    EXPECT_EQ(bus.bar_mapping(1, 0), 0xc8000000u);
}

TEST_F(PciBarTest, BarOverAnotherBarWaitsUntilTheSpaceIsFree) {
    auto a = std::make_shared<BarDevice>(std::vector<std::pair<unsigned, PciBar>>{{0, {PciBarKind::Mem32, 0x1000, false}}});
    auto b = std::make_shared<BarDevice>(std::vector<std::pair<unsigned, PciBar>>{{0, {PciBarKind::Mem32, 0x2000, false}}});
    bus.add_device(1, a);
    bus.add_device(2, b);
    cfg_write16(1, PCI_COMMAND, PCI_COMMAND_MEMORY);
    cfg_write16(2, PCI_COMMAND, PCI_COMMAND_MEMORY);
    const std::uint64_t a_base = bar_address(1, 0);
    // b over a: b stops decoding; a keeps its range.
    cfg_write32(2, PCI_BASE_ADDRESS_0, std::uint32_t(a_base));
    EXPECT_EQ(bar_address(2, 0), a_base);
    EXPECT_FALSE(bus.bar_mapping(2, 0));
    std::uint64_t v = 0;
    ASSERT_TRUE(mmio_hits(a_base + 4, v));
    a->devices[0]->last_offset = ~0ull;
    b->devices[0]->last_offset = ~0ull;
    std::uint8_t w[4] = {1, 0, 0, 0};
    mmio.write(a_base + 4, w);
    EXPECT_EQ(a->devices[0]->last_offset, 4u);
    EXPECT_EQ(b->devices[0]->last_offset, ~0ull);
    // a moves away: b now gets the space.
    cfg_write32(1, PCI_BASE_ADDRESS_0, 0xc9000000);
    EXPECT_EQ(bus.bar_mapping(1, 0), 0xc9000000u);
    EXPECT_EQ(bus.bar_mapping(2, 0), a_base);
    mmio.write(a_base + 4, w);
    EXPECT_EQ(b->devices[0]->last_offset, 4u);
}

TEST_F(PciBarTest, IoBarPastPortSpaceIsNotMapped) {
    auto dev = std::make_shared<BarDevice>(std::vector<std::pair<unsigned, PciBar>>{{0, {PciBarKind::Io, 0x100, false}}});
    bus.add_device(1, dev);
    cfg_write16(1, PCI_COMMAND, PCI_COMMAND_IO);
    ASSERT_TRUE(bus.bar_mapping(1, 0));
    // The upper half of an I/O BAR is hard-wired to 0: the port wraps into 16 bits.
    cfg_write32(1, PCI_BASE_ADDRESS_0, 0x0001ff00 | PCI_BASE_ADDRESS_SPACE_IO);
    EXPECT_EQ(cfg32(1, PCI_BASE_ADDRESS_0), 0xff00u | PCI_BASE_ADDRESS_SPACE_IO);
    EXPECT_EQ(bus.bar_mapping(1, 0), 0xff00u);
    // Over a legacy device already on the port bus: refused.
    pio.insert(0x3f8, 8, std::make_shared<BarEcho>());
    cfg_write32(1, PCI_BASE_ADDRESS_0, 0x300 | PCI_BASE_ADDRESS_SPACE_IO);
    EXPECT_FALSE(bus.bar_mapping(1, 0));
}

TEST(PciConfigSpaceBarTest, BadBarDeclarationsThrow) {
    PciConfigSpace c(PciIdentity{});
    EXPECT_THROW(c.add_bar(6, {PciBarKind::Mem32, 0x1000, false}), Error);
    EXPECT_THROW(c.add_bar(0, {PciBarKind::Mem32, 0x1800, false}), Error);
    EXPECT_THROW(c.add_bar(0, {PciBarKind::Mem32, 8, false}), Error);
    EXPECT_THROW(c.add_bar(5, {PciBarKind::Mem64, 0x1000, false}), Error);
    EXPECT_THROW(c.add_bar(0, {PciBarKind::Io, 0x1000, false}), Error);
    c.add_bar(0, {PciBarKind::Mem64, 0x1000, false});
    EXPECT_THROW(c.add_bar(1, {PciBarKind::Mem32, 0x1000, false}), Error);  // upper half of BAR0
    EXPECT_FALSE(c.bar(1));
}

}  // namespace
}  // namespace vmm::pci
