// The ACPI tables: placement, checksums, and every field the guest relies on, read back from
// guest memory the way a guest walks them (RSDP -> XSDT/RSDT -> FADT -> FACS/DSDT, MADT, MCFG).
#include "x86/acpi/acpi_tables.h"

#include "common/error.h"
#include "devicemodel/legacy/acpi_pm.h"
#include "tests/support/fakes.h"
#include "tests/support/test_paths.h"
#include "x86/acpi/sdt.h"
#include "x86/acpi/tables.h"
#include "x86/memory_layout.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>

namespace vmm::x86::acpi {
namespace {

using legacy::AcpiPm;

std::uint64_t le(const std::vector<std::uint8_t>& b, std::size_t off, std::size_t n) {
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < n; ++i) v |= std::uint64_t(b.at(off + i)) << (8 * i);
    return v;
}

// Reads a table from guest memory by its header's length field.
std::vector<std::uint8_t> read_table(const GuestMemory& mem, std::uint64_t addr) {
    const auto len = mem.read_obj<std::uint32_t>(addr + 4);
    EXPECT_TRUE(len);
    if (!len || *len < kSdtHeaderSize || *len > 0x10000) return {};
    std::vector<std::uint8_t> b(*len);
    EXPECT_TRUE(mem.read(addr, b.data(), b.size()));
    return b;
}

std::string sig(const std::vector<std::uint8_t>& b) { return b.size() >= 4 ? std::string(b.begin(), b.begin() + 4) : ""; }

AcpiConfig config(unsigned vcpus, std::uint64_t memory = 512ull << 20) {
    AcpiConfig c;
    c.vcpus = vcpus;
    c.ram = ram_layout(memory);
    return c;
}

struct Walked {
    std::vector<std::uint8_t> rsdp, xsdt, rsdt, fadt, facs, dsdt;
    std::map<std::string, std::vector<std::uint8_t>> by_sig;  // XSDT entries
    std::uint64_t facs_addr = 0, dsdt_addr = 0;
};

// Walks the tables from the RSDP as Linux does, checking each checksum on the way.
Walked walk(const GuestMemory& mem, std::uint64_t rsdp_addr) {
    Walked w;
    w.rsdp.resize(kRsdpSize);
    EXPECT_TRUE(mem.read(rsdp_addr, w.rsdp.data(), kRsdpSize));
    EXPECT_EQ(std::string(w.rsdp.begin(), w.rsdp.begin() + 8), "RSD PTR ");
    EXPECT_EQ(byte_sum(std::span(w.rsdp.data(), 20)), 0) << "RSDP checksum (first 20 bytes)";
    EXPECT_EQ(byte_sum(w.rsdp), 0) << "RSDP extended checksum";
    EXPECT_EQ(w.rsdp[15], 2) << "RSDP revision";
    EXPECT_EQ(le(w.rsdp, 20, 4), kRsdpSize);

    w.xsdt = read_table(mem, le(w.rsdp, 24, 8));
    w.rsdt = read_table(mem, le(w.rsdp, 16, 4));
    EXPECT_EQ(sig(w.xsdt), "XSDT");
    EXPECT_EQ(sig(w.rsdt), "RSDT");
    EXPECT_EQ(byte_sum(w.xsdt), 0);
    EXPECT_EQ(byte_sum(w.rsdt), 0);
    const std::size_t n = (w.xsdt.size() - kSdtHeaderSize) / 8;
    EXPECT_EQ((w.rsdt.size() - kSdtHeaderSize) / 4, n);
    for (std::size_t i = 0; i < n; ++i) {
        const std::uint64_t addr = le(w.xsdt, kSdtHeaderSize + 8 * i, 8);
        EXPECT_EQ(le(w.rsdt, kSdtHeaderSize + 4 * i, 4), addr) << "RSDT and XSDT disagree";
        auto t = read_table(mem, addr);
        EXPECT_EQ(byte_sum(t), 0) << sig(t) << " checksum";
        w.by_sig[sig(t)] = t;
    }
    w.fadt = w.by_sig["FACP"];
    if (w.fadt.size() >= kFadtSize) {
        w.facs_addr = le(w.fadt, 132, 8);
        w.dsdt_addr = le(w.fadt, 140, 8);
        w.facs.resize(kFacsSize);
        EXPECT_TRUE(mem.read(w.facs_addr, w.facs.data(), kFacsSize));
        w.dsdt = read_table(mem, w.dsdt_addr);
    }
    return w;
}

TEST(AcpiTables, PlacedInTheBiosAreaWithoutOverlap) {
    const auto t = build_tables(config(4));
    EXPECT_EQ(t.rsdp_addr, kAcpiTablesStart);
    EXPECT_EQ(t.rsdp_addr % 16, 0u);
    ASSERT_EQ(t.blobs.size(), 8u);
    EXPECT_EQ(t.blobs.front().first, t.rsdp_addr);
    std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
    for (const auto& [addr, bytes] : t.blobs) {
        EXPECT_GE(addr, kBiosAreaStart) << table_signature(bytes);
        EXPECT_LE(addr + bytes.size(), kHighMemStart) << table_signature(bytes);
        EXPECT_EQ(addr % (table_signature(bytes) == "FACS" ? 64 : 16), 0u) << table_signature(bytes);
        ranges.emplace_back(addr, addr + bytes.size());
    }
    std::sort(ranges.begin(), ranges.end());
    for (std::size_t i = 1; i < ranges.size(); ++i) EXPECT_LE(ranges[i - 1].second, ranges[i].first);
    // The BIOS area is e820-reserved, so the guest never reuses the tables' memory as RAM.
    bool reserved = false;
    for (const auto& e : e820_map(config(4).ram)) {
        if (e.type == E820Type::Reserved && e.addr <= ranges.front().first && ranges.back().second <= e.addr + e.size)
            reserved = true;
    }
    EXPECT_TRUE(reserved);
}

TEST(AcpiTables, EveryTableHasAValidChecksumAndSignature) {
    const auto t = build_tables(config(2));
    std::set<std::string> sigs;
    for (const auto& [addr, b] : t.blobs) {
        const std::string s = table_signature(b);
        sigs.insert(s);
        if (s == "RSDP") {
            EXPECT_EQ(byte_sum(std::span(b.data(), 20)), 0);
            EXPECT_EQ(byte_sum(b), 0);
        } else if (s == "FACS") {
            EXPECT_EQ(b.size(), kFacsSize);  // the FACS has no checksum
        } else {
            EXPECT_EQ(le(b, 4, 4), b.size()) << s << " length field";
            EXPECT_EQ(byte_sum(b), 0) << s;
            EXPECT_EQ(std::string(b.begin() + 10, b.begin() + 16), "VMMKVM") << s;
        }
    }
    EXPECT_EQ(sigs, (std::set<std::string>{"RSDP", "XSDT", "RSDT", "FACP", "FACS", "DSDT", "APIC", "MCFG"}));
}

TEST(AcpiTables, GuestWalkFromRsdp) {
    test::FakeGuestMemory mem({{0, 2 << 20}});
    const auto t = build_tables(config(3));
    write_tables(mem, t);
    const auto w = walk(mem, t.rsdp_addr);
    EXPECT_EQ(w.by_sig.size(), 3u);
    EXPECT_TRUE(w.by_sig.count("FACP") && w.by_sig.count("APIC") && w.by_sig.count("MCFG"));
    EXPECT_EQ(sig(w.facs), "FACS");
    EXPECT_EQ(sig(w.dsdt), "DSDT");
    EXPECT_EQ(w.dsdt[8], 2) << "DSDT revision 2: 64-bit integers";
    EXPECT_EQ(byte_sum(w.dsdt), 0);
}

TEST(AcpiTables, FadtFields) {
    test::FakeGuestMemory mem({{0, 2 << 20}});
    auto c = config(1);
    const auto t = build_tables(c);
    write_tables(mem, t);
    const auto w = walk(mem, t.rsdp_addr);
    const auto& f = w.fadt;
    ASSERT_EQ(f.size(), kFadtSize);
    EXPECT_EQ(f[8], 6) << "revision";
    EXPECT_EQ(f[131], 3) << "minor version";
    EXPECT_EQ(le(f, 36, 4), w.facs_addr) << "FIRMWARE_CTRL == X_FIRMWARE_CTRL";
    EXPECT_EQ(le(f, 40, 4), w.dsdt_addr) << "DSDT == X_DSDT";
    EXPECT_EQ(w.facs_addr % 64, 0u);
    EXPECT_EQ(le(f, 46, 2), 9u) << "SCI_INT";
    EXPECT_EQ(le(f, 48, 4), 0u) << "SMI_CMD: ACPI always enabled";
    EXPECT_EQ(le(f, 56, 4), 0x600u) << "PM1a_EVT_BLK";
    EXPECT_EQ(le(f, 60, 4), 0u) << "PM1b_EVT_BLK";
    EXPECT_EQ(le(f, 64, 4), 0x604u) << "PM1a_CNT_BLK";
    EXPECT_EQ(le(f, 76, 4), 0x608u) << "PM_TMR_BLK";
    EXPECT_EQ(le(f, 80, 4), 0u) << "no GPE0";
    EXPECT_EQ(f[88], 4) << "PM1_EVT_LEN";
    EXPECT_EQ(f[89], 2) << "PM1_CNT_LEN";
    EXPECT_EQ(f[91], 4) << "PM_TMR_LEN";
    EXPECT_EQ(f[108], 0x32) << "CENTURY";
    EXPECT_EQ(le(f, 109, 2) & kBootArch8042, kBootArch8042);
    const auto flags = static_cast<std::uint32_t>(le(f, 112, 4));
    EXPECT_EQ(flags & kFadtPwrButton, 0u) << "fixed power button";
    EXPECT_EQ(flags & kFadtHwReducedAcpi, 0u);
    EXPECT_EQ(flags & kFadtTmrValExt, 0u) << "24-bit timer";
    EXPECT_NE(flags & kFadtResetRegSup, 0u);
    EXPECT_NE(flags & kFadtSlpButton, 0u) << "no fixed sleep button";
    // RESET_REG: system I/O, 8 bits at 0x64, value 0xfe.
    EXPECT_EQ(f[116], 1);
    EXPECT_EQ(f[117], 8);
    EXPECT_EQ(le(f, 120, 8), 0x64u);
    EXPECT_EQ(f[128], 0xfe);
    // X_PM1a_EVT_BLK, X_PM1a_CNT_BLK, X_PM_TMR_BLK: system I/O GAS matching the 32-bit fields.
    struct Gas { std::size_t off; unsigned bits; std::uint64_t addr; };
    for (const Gas g : {Gas{148, 32, 0x600}, Gas{172, 16, 0x604}, Gas{208, 32, 0x608}}) {
        EXPECT_EQ(f[g.off], 1) << g.off;
        EXPECT_EQ(f[g.off + 1], g.bits) << g.off;
        EXPECT_EQ(le(f, g.off + 4, 8), g.addr) << g.off;
    }
    for (std::size_t off : {160u, 184u, 196u, 220u, 232u, 244u, 256u}) EXPECT_EQ(le(f, off + 4, 8), 0u) << off;
    // The FADT's register block is the one AcpiPm implements.
    EXPECT_EQ(le(f, 64, 4) - le(f, 56, 4), AcpiPm::kPm1ControlOffset);
    EXPECT_EQ(le(f, 76, 4) - le(f, 56, 4), AcpiPm::kPmTimerOffset);
    EXPECT_LE(le(f, 76, 4) + f[91] - le(f, 56, 4), AcpiPm::kPorts);

    EXPECT_EQ(le(w.facs, 4, 4), kFacsSize);
    EXPECT_EQ(w.facs[32], 2) << "FACS version";
}

TEST(AcpiTables, FadtFollowsPmIoBase) {
    auto c = config(1);
    c.pm_io_base = 0xb000;
    const auto f = build_fadt(c, 0x1000, 0x2000);
    EXPECT_EQ(le(f, 56, 4), 0xb000u);
    EXPECT_EQ(le(f, 64, 4), 0xb004u);
    EXPECT_EQ(le(f, 212, 8), 0xb008u);
    EXPECT_EQ(byte_sum(f), 0);
}

class Madt : public ::testing::TestWithParam<unsigned> {};

TEST_P(Madt, Entries) {
    const unsigned n = GetParam();
    const auto m = build_madt(config(n));
    ASSERT_GE(m.size(), 44u);
    EXPECT_EQ(sig(m), "APIC");
    EXPECT_EQ(byte_sum(m), 0);
    EXPECT_EQ(le(m, 4, 4), m.size());
    EXPECT_EQ(le(m, 36, 4), kLapicAddr);
    EXPECT_EQ(le(m, 40, 4), 1u) << "PCAT_COMPAT";

    std::vector<std::pair<unsigned, unsigned>> lapics;  // (uid, apic id)
    unsigned ioapics = 0, nmis = 0;
    std::map<unsigned, std::pair<std::uint32_t, std::uint16_t>> isos;  // irq -> (gsi, flags)
    std::size_t off = 44;
    while (off < m.size()) {
        const unsigned type = m.at(off), len = m.at(off + 1);
        ASSERT_GE(len, 2u);
        ASSERT_LE(off + len, m.size());
        switch (type) {
        case 0:
            ASSERT_EQ(len, 8u);
            EXPECT_EQ(le(m, off + 4, 4), 1u) << "enabled";
            lapics.emplace_back(m[off + 2], m[off + 3]);
            break;
        case 1:
            ASSERT_EQ(len, 12u);
            ++ioapics;
            EXPECT_EQ(m[off + 2], 0) << "IOAPIC id";
            EXPECT_EQ(le(m, off + 4, 4), kIoapicAddr);
            EXPECT_EQ(le(m, off + 8, 4), 0u) << "GSI base";
            break;
        case 2:
            ASSERT_EQ(len, 10u);
            EXPECT_EQ(m[off + 2], 0) << "ISA bus";
            isos[m[off + 3]] = {static_cast<std::uint32_t>(le(m, off + 4, 4)), static_cast<std::uint16_t>(le(m, off + 8, 2))};
            break;
        case 4:
            ASSERT_EQ(len, 6u);
            ++nmis;
            EXPECT_EQ(m[off + 2], 0xff) << "all processors";
            EXPECT_EQ(m[off + 5], 1) << "LINT1";
            break;
        default:
            ADD_FAILURE() << "unexpected MADT entry type " << type;
        }
        off += len;
    }
    EXPECT_EQ(off, m.size());
    ASSERT_EQ(lapics.size(), n);
    for (unsigned i = 0; i < n; ++i) EXPECT_EQ(lapics[i], std::make_pair(i, i));
    EXPECT_EQ(ioapics, 1u);
    EXPECT_EQ(nmis, 1u);
    ASSERT_EQ(isos.size(), 2u);
    EXPECT_EQ(isos[0], std::make_pair(std::uint32_t(2), std::uint16_t(0))) << "IRQ0 -> GSI 2, ISA defaults";
    EXPECT_EQ(isos[9], std::make_pair(std::uint32_t(9), std::uint16_t(0x0d))) << "SCI: level, active-high";
}

INSTANTIATE_TEST_SUITE_P(Vcpus, Madt, ::testing::Values(1u, 2u, 41u, 64u, kMaxVcpus));

TEST(AcpiTables, Mcfg) {
    const auto m = build_mcfg();
    EXPECT_EQ(sig(m), "MCFG");
    ASSERT_EQ(m.size(), 60u);
    EXPECT_EQ(byte_sum(m), 0);
    EXPECT_EQ(le(m, 44, 8), kPciEcamBase);
    EXPECT_EQ(le(m, 52, 2), 0u) << "segment";
    EXPECT_EQ(m[54], 0) << "start bus";
    EXPECT_EQ(m[55], 255) << "end bus";
    EXPECT_EQ((m[55] - m[54] + 1ull) << 20, kPciEcamSize) << "1 MiB of ECAM per bus";
}

TEST(AcpiTables, RejectsBadConfigs) {
    EXPECT_THROW(build_tables(config(0)), Error);
    EXPECT_THROW(build_tables(config(kMaxVcpus + 1)), Error);
    auto small = config(1);
    small.tables_end = small.tables_start + 256;  // the DSDT alone is bigger
    EXPECT_THROW(build_tables(small), Error);
    auto unaligned = config(1);
    unaligned.tables_start += 8;
    EXPECT_THROW(build_tables(unaligned), Error);
}

TEST(AcpiTables, AlternativeBaseIsHonoured) {
    auto c = config(2);
    c.tables_start = 0xe0000;
    c.tables_end = 0xf0000;
    const auto t = build_tables(c);
    EXPECT_EQ(t.rsdp_addr, 0xe0000u);
    for (const auto& [addr, b] : t.blobs) EXPECT_LE(addr + b.size(), 0xf0000u);
    test::FakeGuestMemory mem({{0, 2 << 20}});
    write_tables(mem, t);
    EXPECT_EQ(walk(mem, t.rsdp_addr).by_sig.size(), 3u);
}

TEST(AcpiTables, WriteOutsideRamThrows) {
    test::FakeGuestMemory mem({{0, 0x9fc00}});  // no BIOS area
    EXPECT_THROW(write_tables(mem, build_tables(config(1))), Error);
}

TEST(AcpiTables, DumpWritesOneFilePerSignature) {
    const auto t = build_tables(config(2));
    const std::string dir = test::make_temp_dir("acpi-dump-");
    dump_tables(t, dir);
    for (const auto& [addr, b] : t.blobs) {
        std::ifstream in(dir + "/" + table_signature(b) + ".dat", std::ios::binary);
        ASSERT_TRUE(in) << table_signature(b);
        const std::vector<std::uint8_t> got{std::istreambuf_iterator<char>(in), {}};
        EXPECT_EQ(got, b) << table_signature(b);
    }
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir), {}), 8);
    std::filesystem::remove_all(dir);
    EXPECT_THROW(dump_tables(t, dir + "/missing"), std::system_error);
}

}  // namespace
}  // namespace vmm::x86::acpi
