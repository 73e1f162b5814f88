// MP spec 1.4 tables: write, then read back with the independent parser.
#include "x86/mptable.h"

#include "common/error.h"
#include "tests/support/fakes.h"
#include "x86/memory_layout.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <numeric>

namespace vmm::x86 {
namespace {

using ::testing::HasSubstr;

std::uint8_t byte_sum(const GuestMemory& mem, std::uint64_t gpa, std::size_t len) {
    auto s = mem.span(gpa, len);
    EXPECT_TRUE(s);
    if (!s) return 0xff;
    return static_cast<std::uint8_t>(std::accumulate(s->begin(), s->end(), 0u));
}

class MpTable : public ::testing::TestWithParam<unsigned> {};

TEST_P(MpTable, WriteThenParse) {
    const unsigned n = GetParam();
    test::FakeGuestMemory mem({{0, 2 * 1024 * 1024}});
    write_mptable(mem, n);

    // Both checksums by hand (MP spec 4.1, 4.2): bytes sum to 0 mod 256.
    EXPECT_EQ(byte_sum(mem, kMpTableAddr, 16), 0);
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(mem.memory().span(kMpTableAddr, 4)->data()), 4), "_MP_");
    const auto cfg = mem.memory().read_obj<std::uint32_t>(kMpTableAddr + 4);
    ASSERT_TRUE(cfg);
    const auto len = mem.memory().read_obj<std::uint16_t>(*cfg + 4);
    ASSERT_TRUE(len);
    EXPECT_EQ(byte_sum(mem, *cfg, *len), 0);
    EXPECT_LE(*cfg + *len, kEbdaStart + 1024) << "the table must stay in the 1 KiB EBDA";
    EXPECT_EQ(*len, 212u - 16 + 20 * n);

    const auto info = parse_mptable(mem);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->floating_addr, kEbdaStart);
    EXPECT_EQ(info->spec_rev, 4);
    EXPECT_EQ(info->lapic_address, kLapicAddr);
    ASSERT_EQ(info->apic_ids.size(), n);
    for (unsigned i = 0; i < n; ++i) EXPECT_EQ(info->apic_ids[i], i);
    ASSERT_TRUE(info->bsp_apic_id);
    EXPECT_EQ(*info->bsp_apic_id, 0);
    EXPECT_EQ(info->ioapic_id, n);
    EXPECT_EQ(info->ioapic_version, 0x11);
    EXPECT_EQ(info->ioapic_address, kIoapicAddr);
    EXPECT_EQ(info->bus_types, std::vector<std::string>{"ISA   "});
    EXPECT_EQ(info->local_interrupts, 2u);

    // ISA IRQ 0 -> pin 2, IRQ 2 absent (cascade), the rest identity, all on the IOAPIC.
    ASSERT_EQ(info->io_interrupts.size(), 15u);
    for (const auto& io : info->io_interrupts) {
        EXPECT_EQ(io.type, 0);
        EXPECT_EQ(io.flags, 0);
        EXPECT_EQ(io.source_bus, 0);
        EXPECT_EQ(io.ioapic_id, n);
        EXPECT_NE(io.source_irq, 2);
        EXPECT_EQ(io.ioapic_pin, io.source_irq == 0 ? 2 : io.source_irq);
    }
}

INSTANTIATE_TEST_SUITE_P(VcpuCounts, MpTable, ::testing::Values(1u, 2u, 4u, 39u, kMpTableMaxCpus));

TEST(MpTableLimits, RejectsZeroAndTooMany) {
    test::FakeGuestMemory mem({{0, 2 * 1024 * 1024}});
    try {
        write_mptable(mem, 0);
        ADD_FAILURE() << "no exception";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("at least 1"));
    }
    for (unsigned n : {kMpTableMaxCpus + 1, 64u, 254u}) {
        try {
            write_mptable(mem, n);
            ADD_FAILURE() << "no exception for " << n;
        } catch (const Error& e) {
            EXPECT_THAT(e.what(), HasSubstr(std::to_string(n) + " vCPUs do not fit"));
            EXPECT_THAT(e.what(), HasSubstr("at most 40"));
        }
    }
    EXPECT_FALSE(parse_mptable(mem)) << "a refused table must not be half-written";
}

TEST(MpTableLimits, EbdaMustBeRam) {
    test::FakeGuestMemory mem({{0, 0x9f000}});
    EXPECT_THROW(write_mptable(mem, 1), Error);
}

TEST(MpTableParse, RejectsCorruption) {
    test::FakeGuestMemory mem({{0, 2 * 1024 * 1024}});
    EXPECT_FALSE(parse_mptable(mem));
    write_mptable(mem, 2);
    ASSERT_TRUE(parse_mptable(mem));
    auto table = mem.memory().span(kMpTableAddr, 1024);
    (*table)[16 + 50] ^= 1;  // inside the config table: its checksum breaks
    EXPECT_FALSE(parse_mptable(mem));
    (*table)[16 + 50] ^= 1;
    ASSERT_TRUE(parse_mptable(mem));
    (*table)[10] ^= 1;  // floating pointer checksum
    EXPECT_FALSE(parse_mptable(mem));
}

}  // namespace
}  // namespace vmm::x86
