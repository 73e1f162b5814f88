// filter_cpuid on a synthetic KVM_GET_SUPPORTED_CPUID table shaped like one from an Intel host
// (with AMD extended leaves added so both vendors' topology leaves are covered).
#include "x86/cpuid.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <stdexcept>
#include <utility>

namespace vmm::x86 {
namespace {

using ::testing::HasSubstr;

constexpr std::uint32_t kSig = kCpuidFlagSignificantIndex;

// Host: APIC ID 0x12, 16 logical processors, caches shared by up to 16 threads, 8 cores.
std::vector<CpuidEntry> supported_table() {
    return {
        {0x0, 0, 0, 0x1f, 0x756e6547, 0x6c65746e, 0x49656e69},  // "GenuineIntel"
        // EBX: APIC ID 0x12, 16 logical, CLFLUSH 8 (64 bytes), brand index 0x5.
        // ECX: OSXSAVE (27) set, hypervisor (31) clear. EDX: HTT (28) set.
        {0x1, 0, 0, 0x000906ea, 0x12100805, 0x7ffafbff, 0x1f8bfbff},
        {0x4, 0, kSig, 0x1c004121, 0x01c0003f, 0x0000003f, 0},  // L1d
        {0x4, 1, kSig, 0x1c004122, 0x01c0003f, 0x0000003f, 0},  // L1i
        {0x4, 2, kSig, 0x1c004143, 0x00c0003f, 0x000003ff, 0},  // L2
        {0x4, 3, kSig, 0x1c03c163, 0x02c0003f, 0x00003fff, 6},  // L3, 16 sharing
        {0x4, 4, kSig, 0, 0, 0, 0},                             // end of list
        {0x7, 0, kSig, 0, 0x029c6fbf, 0x40000000, 0xbc000400},
        {0xa, 0, 0, 0x07300404, 0, 0, 0x603},
        {0xb, 0, kSig, 1, 2, 0x100, 0x12},
        {0xb, 1, kSig, 4, 16, 0x201, 0x12},
        {0xb, 2, kSig, 0, 0, 0x2, 0x12},
        {0xd, 0, kSig, 0x2e7, 0x340, 0x440, 0},
        {0xd, 1, kSig, 0xf, 0x340, 0, 0},
        {0x40000000, 0, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x0000004d},  // "KVMKVMKVM\0\0\0"
        {0x40000001, 0, 0, 0x01007afb, 0, 0, 0},
        {0x80000000, 0, 0, 0x8000001f, 0, 0, 0},
        {0x80000008, 0, 0, 0x00003030, 0x0100d000, 0x0000703f, 0},  // ApicIdSize 7, NC 63
        {0x8000001e, 0, 0, 0x12, 0x0000010a, 0x00000103, 0},        // core 10, 2 threads, node 3
    };
}

const CpuidEntry& entry(const std::vector<CpuidEntry>& table, std::uint32_t function,
                        std::uint32_t index = 0) {
    const CpuidEntry* e = find_cpuid_entry(table, function, index);
    if (e == nullptr) {
        throw std::runtime_error("missing leaf " + std::to_string(function) + "." +
                                 std::to_string(index));
    }
    return *e;
}

std::vector<CpuidEntry> filter(unsigned vcpus, unsigned apic_id, bool hide = false) {
    return filter_cpuid(supported_table(), CpuidPolicy{vcpus, hide}, apic_id);
}

std::vector<std::pair<std::uint32_t, std::uint32_t>> keys(const std::vector<CpuidEntry>& t) {
    std::vector<std::pair<std::uint32_t, std::uint32_t>> k;
    for (const CpuidEntry& e : t) k.emplace_back(e.function, e.index);
    return k;
}

class CpuidPerApic : public ::testing::TestWithParam<unsigned> {};
INSTANTIATE_TEST_SUITE_P(Apic, CpuidPerApic, ::testing::Values(0u, 3u));

TEST_P(CpuidPerApic, Leaf1TopologyAndClflush) {
    const unsigned apic = GetParam();
    const CpuidEntry e = entry(filter(4, apic), 0x1);
    EXPECT_EQ(e.ebx >> 24, apic);
    EXPECT_EQ((e.ebx >> 16) & 0xff, 4u);
    EXPECT_EQ((e.ebx >> 8) & 0xff, 8u) << "CLFLUSH line size kept";
    EXPECT_EQ(e.ebx & 0xff, 5u) << "brand index kept";
    EXPECT_NE(e.edx & kCpuid1EdxHtt, 0u);
    EXPECT_EQ(e.eax, 0x000906eau);
}

TEST(Cpuid, Leaf1HttClearForOneVcpu) {
    const CpuidEntry e = entry(filter(1, 0), 0x1);
    EXPECT_EQ(e.edx & kCpuid1EdxHtt, 0u);
    EXPECT_EQ((e.ebx >> 16) & 0xff, 1u);
    EXPECT_EQ(e.edx | kCpuid1EdxHtt, 0x1f8bfbffu) << "other EDX bits kept";
}

TEST(Cpuid, Leaf1OsxsaveClearedHypervisorBitFollowsPolicy) {
    const CpuidEntry shown = entry(filter(4, 0, false), 0x1);
    EXPECT_EQ(shown.ecx & kCpuid1EcxOsxsave, 0u);
    EXPECT_NE(shown.ecx & kCpuid1EcxHypervisor, 0u);
    const std::uint32_t others = ~(kCpuid1EcxOsxsave | kCpuid1EcxHypervisor);
    EXPECT_EQ(shown.ecx & others, 0x7ffafbffu & others);

    const CpuidEntry hidden = entry(filter(4, 0, true), 0x1);
    EXPECT_EQ(hidden.ecx & kCpuid1EcxHypervisor, 0u);
    EXPECT_EQ(hidden.ecx & kCpuid1EcxOsxsave, 0u);
}

TEST(Cpuid, KvmLeavesKeptUnlessHidden) {
    const auto shown = filter(4, 0, false);
    EXPECT_EQ(cpuid_signature(shown, 0x40000000), std::string("KVMKVMKVM\0\0\0", 12));
    EXPECT_EQ(entry(shown, 0x40000001).eax, 0x01007afbu);

    const auto hidden = filter(4, 0, true);
    EXPECT_EQ(cpuid_signature(hidden, 0x40000000), "");
    EXPECT_TRUE(std::none_of(hidden.begin(), hidden.end(), [](const CpuidEntry& e) {
        return e.function >= 0x40000000 && e.function <= 0x4fffffff;
    }));
    EXPECT_EQ(hidden.size(), supported_table().size() - 2);
}

TEST_P(CpuidPerApic, Leaf4CoresAndCacheSharing) {
    const auto out = filter(4, GetParam());
    for (std::uint32_t sub = 0; sub < 4; ++sub) {
        const CpuidEntry in = entry(supported_table(), 0x4, sub);
        const CpuidEntry& e = entry(out, 0x4, sub);
        EXPECT_EQ(e.eax >> 26, 3u) << "subleaf " << sub;
        const std::uint32_t sharing = (e.eax >> 14) & 0xfff;
        EXPECT_EQ(sharing, sub == 3 ? 3u : 0u) << "subleaf " << sub;
        EXPECT_EQ(e.eax & 0x3fff, in.eax & 0x3fff) << "type, level, flags kept";
        EXPECT_EQ(std::tie(e.ebx, e.ecx, e.edx, e.flags),
                  std::tie(in.ebx, in.ecx, in.edx, in.flags));
    }
    EXPECT_EQ(entry(out, 0x4, 4), entry(supported_table(), 0x4, 4)) << "null entry untouched";
}

TEST(Cpuid, Leaf4CoreCountCappedAt63) {
    const CpuidEntry l3 = entry(filter_cpuid(supported_table(), {100, false}, 99), 0x4, 3);
    EXPECT_EQ(l3.eax >> 26, 63u);
    EXPECT_EQ((l3.eax >> 14) & 0xfff, 99u);
}

TEST_P(CpuidPerApic, Leaf0bExtendedTopology) {
    const unsigned apic = GetParam();
    const auto out = filter(4, apic);
    const CpuidEntry& smt = entry(out, 0xb, 0);
    EXPECT_EQ(smt.eax, 0u);
    EXPECT_EQ(smt.ebx, 1u);
    EXPECT_EQ(smt.ecx, 0x100u) << "level 0, type SMT";
    EXPECT_EQ(smt.edx, apic);
    const CpuidEntry& core = entry(out, 0xb, 1);
    EXPECT_EQ(core.eax, 2u) << "4 vCPUs need 2 APIC ID bits";
    EXPECT_EQ(core.ebx, 4u);
    EXPECT_EQ(core.ecx, 0x201u) << "level 1, type core";
    EXPECT_EQ(core.edx, apic);
    const CpuidEntry& end = entry(out, 0xb, 2);
    EXPECT_EQ(end.ebx, 0u);
    EXPECT_EQ((end.ecx >> 8) & 0xff, 0u) << "type invalid ends the enumeration";
    EXPECT_EQ(end.ecx & 0xff, 2u);
    EXPECT_EQ(end.edx, apic);
    for (const auto* e : {&smt, &core, &end}) EXPECT_EQ(e->flags, kSig);
}

TEST(Cpuid, CoreShiftRoundsUp) {
    EXPECT_EQ(entry(filter(1, 0), 0xb, 1).eax, 0u);
    EXPECT_EQ(entry(filter(2, 1), 0xb, 1).eax, 1u);
    EXPECT_EQ(entry(filter(5, 4), 0xb, 1).eax, 3u);
    EXPECT_EQ(entry(filter(64, 63), 0xb, 1).eax, 6u);
}

TEST(Cpuid, Leaf1fTreatedLikeLeaf0b) {
    auto table = supported_table();
    table.push_back({0x1f, 0, kSig, 1, 2, 0x100, 0x12});
    table.push_back({0x1f, 1, kSig, 4, 16, 0x201, 0x12});
    table.push_back({0x1f, 2, kSig, 5, 32, 0x502, 0x12});  // die level
    const auto out = filter_cpuid(table, {4, false}, 3);
    EXPECT_EQ(entry(out, 0x1f, 0), (CpuidEntry{0x1f, 0, kSig, 0, 1, 0x100, 3}));
    EXPECT_EQ(entry(out, 0x1f, 1), (CpuidEntry{0x1f, 1, kSig, 2, 4, 0x201, 3}));
    EXPECT_EQ(entry(out, 0x1f, 2), (CpuidEntry{0x1f, 2, kSig, 0, 0, 0x2, 3}));
}

TEST(Cpuid, MissingTopologySubleavesAdded) {
    std::vector<CpuidEntry> table = {{0xb, 0, kSig, 1, 2, 0x100, 0x12},
                                     {0xd, 0, kSig, 0x2e7, 0x340, 0x440, 0}};
    const auto out = filter_cpuid(table, {4, false}, 2);
    ASSERT_EQ(out.size(), 3u);
    EXPECT_EQ(out[1], (CpuidEntry{0xb, 1, kSig, 2, 4, 0x201, 2})) << "inserted after subleaf 0";
    EXPECT_EQ(out[2], table[1]);
}

TEST_P(CpuidPerApic, AmdSizesAndExtendedApicId) {
    const unsigned apic = GetParam();
    const auto out = filter(4, apic);
    const CpuidEntry& sizes = entry(out, 0x80000008);
    EXPECT_EQ(sizes.ecx & 0xff, 3u) << "NC = vcpus - 1";
    EXPECT_EQ((sizes.ecx >> 12) & 0xf, 2u) << "ApicIdSize matches leaf 0xb core shift";
    EXPECT_EQ(sizes.eax, 0x3030u);
    EXPECT_EQ(sizes.ebx, 0x0100d000u);

    const CpuidEntry& ext = entry(out, 0x8000001e);
    EXPECT_EQ(ext.eax, apic);
    EXPECT_EQ(ext.ebx & 0xff, apic) << "core ID";
    EXPECT_EQ((ext.ebx >> 8) & 0xff, 0u) << "one thread per core";
    EXPECT_EQ(ext.ecx & 0x7ff, 0u) << "node 0 of 1";
}

TEST(Cpuid, PmuLeafZeroed) {
    const CpuidEntry pmu = entry(filter(4, 1), 0xa);
    EXPECT_EQ(pmu, (CpuidEntry{0xa, 0, 0, 0, 0, 0, 0}));
}

TEST(Cpuid, UntouchedLeavesPassThroughInOrder) {
    const auto in = supported_table();
    for (bool hide : {false, true}) {
        const auto out = filter(4, 3, hide);
        for (std::uint32_t function : {0x0u, 0x7u, 0x80000000u}) {
            EXPECT_EQ(entry(out, function), entry(in, function)) << std::hex << function;
        }
        EXPECT_EQ(entry(out, 0xd, 0), entry(in, 0xd, 0));
        EXPECT_EQ(entry(out, 0xd, 1), entry(in, 0xd, 1));

        auto expected = keys(in);
        if (hide) {
            std::erase_if(expected, [](auto k) { return k.first >> 28 == 0x4; });
        }
        EXPECT_EQ(keys(out), expected) << "hide=" << hide;
    }
}

TEST(Cpuid, FlagsPreserved) {
    const auto in = supported_table();
    const auto out = filter(4, 0);
    ASSERT_EQ(out.size(), in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        EXPECT_EQ(out[i].flags, in[i].flags) << std::hex << in[i].function << "." << in[i].index;
    }
}

TEST(Cpuid, FindHonoursSignificantIndex) {
    const auto in = supported_table();
    EXPECT_EQ(find_cpuid_entry(in, 0x4, 9), nullptr);
    EXPECT_EQ(find_cpuid_entry(in, 0x1, 9), &in[1]) << "index ignored without the flag";
    EXPECT_EQ(find_cpuid_entry(in, 0x12345678), nullptr);
}

TEST(Cpuid, RejectsInvalidPolicy) {
    try {
        filter(4, 4);
        FAIL() << "apic_id 4 accepted for 4 vCPUs";
    } catch (const std::invalid_argument& e) {
        EXPECT_THAT(e.what(), HasSubstr("apic_id 4"));
    }
    EXPECT_THROW(filter(0, 0), std::invalid_argument);
    EXPECT_THROW(filter(256, 0), std::invalid_argument);
    EXPECT_NO_THROW(filter(255, 254));
}

}  // namespace
}  // namespace vmm::x86
