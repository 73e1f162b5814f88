#include "x86/memory_layout.h"

#include "common/error.h"
#include "tests/support/fakes.h"
#include "x86/cpu_state.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace vmm::x86 {
namespace {

TEST(MemoryLayoutTest, SmallGuestIsAllBelowTheHole) {
    auto l = ram_layout(128ull << 20);
    EXPECT_EQ(l.low_size, 128ull << 20);
    EXPECT_EQ(l.high_size, 0u);
}

TEST(MemoryLayoutTest, LargeGuestSplitsAroundThePciHole) {
    auto l = ram_layout(5ull << 30);
    EXPECT_EQ(l.low_size, kPciHoleStart);
    EXPECT_EQ(l.high_size, (5ull << 30) - kPciHoleStart);
    auto map = e820_map(l);
    ASSERT_EQ(map.back().addr, k4GiB);
    EXPECT_EQ(map.back().size, l.high_size);
    std::uint64_t ram = 0;
    for (const auto& e : map)
        if (e.type == E820Type::Ram) ram += e.size;
    // Everything but the EBDA, the VGA hole and the BIOS area is usable.
    EXPECT_EQ(ram, l.total() - (kHighMemStart - kEbdaStart));
}

TEST(MemoryLayoutTest, E820IsSortedAndDisjointAndKeepsHolesOutOfRam) {
    auto map = e820_map(ram_layout(64ull << 20));
    for (std::size_t i = 1; i < map.size(); ++i) EXPECT_LE(map[i - 1].addr + map[i - 1].size, map[i].addr);
    for (const auto& e : map) {
        if (e.type != E820Type::Ram) continue;
        EXPECT_FALSE(e.addr < kLowRamEnd && e.addr + e.size > kEbdaStart) << "EBDA must not be usable RAM";
        EXPECT_FALSE(e.addr < kHighMemStart && e.addr + e.size > kLowRamEnd) << "VGA/BIOS hole must not be RAM";
    }
    EXPECT_EQ(map.front(), (E820Entry{0, kEbdaStart, E820Type::Ram}));
    EXPECT_NE(std::find(map.begin(), map.end(), E820Entry{kPciEcamBase, kPciEcamSize, E820Type::Reserved}), map.end())
        << "the ECAM window is reserved";
}

TEST(MemoryLayoutTest, BadSizesAreRefused) {
    EXPECT_THROW(ram_layout(1ull << 20), Error);
    EXPECT_THROW(ram_layout((64ull << 20) + 1), Error);
}

TEST(CpuStateTest, ProtectedModeIsFlat32) {
    auto st = protected32_state(0x100000);
    EXPECT_EQ(st.rip, 0x100000u);
    EXPECT_EQ(st.cs.selector, kBootCs32);
    EXPECT_EQ(st.cs.db, 1);
    EXPECT_EQ(st.cs.l, 0);
    EXPECT_EQ(st.cs.limit, 0xffffffffu);
    EXPECT_EQ(st.ds.selector, kBootDs);
    EXPECT_EQ(st.cr0 & kCr0Pe, kCr0Pe);
    EXPECT_EQ(st.cr0 & kCr0Pg, 0u);
}

TEST(CpuStateTest, LongModeHasPagingAndA64BitCodeSegment) {
    auto st = long64_state(0x100200);
    EXPECT_EQ(st.cs.l, 1);
    EXPECT_EQ(st.cs.db, 0);
    EXPECT_EQ(st.efer & (kEferLme | kEferLma), kEferLme | kEferLma);
    EXPECT_EQ(st.cr3, kPml4Addr);
    EXPECT_TRUE(st.cr4 & kCr4Pae);
}

TEST(CpuStateTest, RealModeSegmentsAreCsTimes16) {
    auto st = real_mode_state(0x1000, 0, 0xfffe);
    EXPECT_EQ(st.cs.base, 0x10000u);
    EXPECT_EQ(st.ss.base, 0x10000u);
    EXPECT_EQ(st.cr0 & kCr0Pe, 0u);
}

TEST(CpuStateTest, IdentityPageTablesMapFirst4GiB) {
    test::FakeGuestMemory fake({{0, 1 << 20}});
    const GuestMemory& m = fake;
    write_identity_page_tables(m);
    write_boot_gdt(m);
    EXPECT_EQ(m.read_obj<std::uint64_t>(kPml4Addr).value(), kPdptAddr | 3);
    EXPECT_EQ(m.read_obj<std::uint64_t>(kPdptAddr + 3 * 8).value(), (kPdAddr + 0x3000) | 3);
    // The last 2 MiB page below 4 GiB.
    EXPECT_EQ(m.read_obj<std::uint64_t>(kPdAddr + 2047 * 8).value(), (2047ull << 21) | 0x83);
    // GDT entry 2 (0x10): 32-bit flat code.
    EXPECT_EQ(m.read_obj<std::uint64_t>(kGdtAddr + 0x10).value(), 0x00cf9b000000ffffull);
}

}  // namespace
}  // namespace vmm::x86
