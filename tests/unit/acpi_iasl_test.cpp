// The ACPI tables as the reference ACPICA tools see them (Debian package acpica-tools):
//  - `iasl -d` decodes every table without errors; the fields it prints are the ones we meant;
//  - recompiling the disassembly with `iasl` gives back our bytes (data tables) or compiles
//    with no errors and no warnings (the DSDT);
//  - `acpiexec` loads the DSDT and evaluates \_S5, and runs ACPICA's resource manager (the
//    code the Linux kernel uses) on \_SB.PCI0's _CRS and _PRT.
// Skipped with the reason when the tools are not installed.
#include "x86/acpi/acpi_tables.h"

#include "tests/support/process.h"
#include "tests/support/test_paths.h"
#include "x86/memory_layout.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

namespace vmm::x86::acpi {
namespace {

using test::find_tool;

using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

std::size_t count(const std::string& hay, const std::string& needle) {
    std::size_t n = 0;
    for (auto p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) ++n;
    return n;
}

class AcpiIasl : public ::testing::Test {
protected:
    static constexpr unsigned kVcpus = 4;

    void SetUp() override {
        iasl_ = find_tool("iasl");
        acpiexec_ = find_tool("acpiexec");
        if (iasl_.empty()) GTEST_SKIP() << "iasl not installed (apt-get install acpica-tools)";
        dir_ = test::make_temp_dir("acpi-iasl-");
        AcpiConfig c;
        c.vcpus = kVcpus;
        c.ram = ram_layout(8ull << 30);  // 3 GiB low + 5 GiB high: 64-bit window at 9 GiB
        tables_ = build_tables(c);
        dump_tables(tables_, dir_);
    }
    void TearDown() override {
        if (!dir_.empty() && !HasFailure()) std::filesystem::remove_all(dir_);
    }

    test::ProcessResult run(const std::vector<std::string>& argv) { return test::run_process(argv, 60s); }

    // Disassembles <SIG>.dat and returns the .dsl text.
    std::string disassemble(const std::string& sig) {
        const auto r = run({iasl_, "-d", dir_ + "/" + sig + ".dat"});
        EXPECT_EQ(r.exit_status, 0) << sig << ":\n" << r.out << r.err;
        EXPECT_THAT(r.out + r.err, Not(HasSubstr("Error"))) << sig;
        EXPECT_THAT(r.out + r.err, Not(HasSubstr("Warning"))) << sig;
        EXPECT_THAT(r.out + r.err, Not(HasSubstr("Invalid"))) << sig;
        return slurp(dir_ + "/" + sig + ".dsl");
    }

    std::vector<std::uint8_t> blob(const std::string& sig) {
        for (const auto& [addr, b] : tables_.blobs) {
            if (table_signature(b) == sig) return b;
        }
        ADD_FAILURE() << "no table " << sig;
        return {};
    }

    std::string iasl_, acpiexec_, dir_;
    AcpiTables tables_;
};

TEST_F(AcpiIasl, DataTablesDecodeAndRecompileToTheSameBytes) {
    for (const std::string sig : {"FACP", "APIC", "MCFG", "XSDT", "RSDT", "FACS"}) {
        const std::string dsl = disassemble(sig);
        ASSERT_FALSE(dsl.empty()) << sig;
        EXPECT_THAT(dsl, HasSubstr("Signature : \"" + sig + "\"")) << sig;
        const auto r = run({iasl_, "-p", dir_ + "/re_" + sig, dir_ + "/" + sig + ".dsl"});
        ASSERT_EQ(r.exit_status, 0) << sig << ":\n" << r.out << r.err;
        EXPECT_THAT(r.out, HasSubstr("0 Errors, 0 Warnings")) << sig;
        const std::string aml = slurp(dir_ + "/re_" + sig + ".aml");
        const auto ours = blob(sig);
        ASSERT_EQ(aml.size(), ours.size()) << sig;
        for (std::size_t i = 0; i < ours.size(); ++i) {
            // iasl puts its own compiler id/revision (28..35) and so its own checksum (9).
            if (sig != "FACS" && (i == 9 || (i >= 28 && i < 36))) continue;
            EXPECT_EQ(static_cast<std::uint8_t>(aml[i]), ours[i]) << sig << " byte " << i;
        }
    }
}

TEST_F(AcpiIasl, FadtAsDecoded) {
    const std::string d = disassemble("FACP");
    EXPECT_THAT(d, HasSubstr("Revision : 06"));
    EXPECT_THAT(d, HasSubstr("SCI Interrupt : 0009"));
    EXPECT_THAT(d, HasSubstr("SMI Command Port : 00000000"));
    EXPECT_THAT(d, HasSubstr("PM1A Event Block Address : 00000600"));
    EXPECT_THAT(d, HasSubstr("PM1A Control Block Address : 00000604"));
    EXPECT_THAT(d, HasSubstr("PM Timer Block Address : 00000608"));
    EXPECT_THAT(d, HasSubstr("Control Method Power Button (V1) : 0"));
    EXPECT_THAT(d, HasSubstr("Hardware Reduced (V5) : 0"));
    EXPECT_THAT(d, HasSubstr("32-bit PM Timer (V1) : 0"));
    EXPECT_THAT(d, HasSubstr("Reset Register Supported (V2) : 1"));
    EXPECT_THAT(d, HasSubstr("8042 Present on ports 60/64 (V2) : 1"));
    EXPECT_THAT(d, HasSubstr("Value to cause reset : FE"));
    EXPECT_THAT(d, HasSubstr("Address : 0000000000000064"));
    EXPECT_THAT(d, HasSubstr("Address : 0000000000000600"));
    EXPECT_THAT(d, HasSubstr("Address : 0000000000000604"));
    EXPECT_THAT(d, HasSubstr("Address : 0000000000000608"));
}

TEST_F(AcpiIasl, MadtAndMcfgAsDecoded) {
    const std::string m = disassemble("APIC");
    EXPECT_EQ(count(m, "[Processor Local APIC]"), kVcpus);
    EXPECT_EQ(count(m, "[I/O APIC]"), 1u);
    EXPECT_EQ(count(m, "[Interrupt Source Override]"), 2u);
    EXPECT_EQ(count(m, "[Local APIC NMI]"), 1u);
    EXPECT_THAT(m, HasSubstr("Address : FEC00000"));
    EXPECT_THAT(m, HasSubstr("Interrupt Input LINT : 01"));
    EXPECT_THAT(m, HasSubstr("Local Apic ID : 03"));
    const std::string c = disassemble("MCFG");
    EXPECT_THAT(c, HasSubstr("Base Address : 00000000E0000000"));
    EXPECT_THAT(c, HasSubstr("Start Bus Number : 00"));
    EXPECT_THAT(c, HasSubstr("End Bus Number : FF"));
}

TEST_F(AcpiIasl, DsdtDisassemblesAndRecompilesCleanly) {
    const std::string d = disassemble("DSDT");
    ASSERT_FALSE(d.empty());
    EXPECT_THAT(d, HasSubstr("DefinitionBlock (\"\", \"DSDT\", 2, \"VMMKVM\""));
    EXPECT_THAT(d, HasSubstr("Device (PCI0)"));
    EXPECT_THAT(d, HasSubstr("EisaId (\"PNP0A08\")"));
    EXPECT_THAT(d, HasSubstr("EisaId (\"PNP0A03\")"));
    EXPECT_THAT(d, HasSubstr("Name (\\_S5, Package (0x04)"));
    EXPECT_THAT(d, HasSubstr("Name (_PRT, Package (0x7C)"));  // 31 slots x 4 pins
    EXPECT_THAT(d, HasSubstr("EisaId (\"PNP0501\")"));
    EXPECT_THAT(d, HasSubstr("EisaId (\"PNP0B00\")"));
    EXPECT_THAT(d, HasSubstr("EisaId (\"PNP0C02\")"));
    EXPECT_THAT(d, HasSubstr("Name (_HID, \"QEMU0001\")"));
    EXPECT_EQ(count(d, "\"ACPI0007\""), kVcpus);
    // The host bridge's windows, as iasl prints them.
    EXPECT_THAT(d, HasSubstr("0x00FF,             // Range Maximum"));
    EXPECT_THAT(d, HasSubstr("0xC000,             // Range Minimum"));
    EXPECT_THAT(d, HasSubstr("0xC0000000,         // Range Minimum"));
    EXPECT_THAT(d, HasSubstr("0xDFFFFFFF,         // Range Maximum"));
    char mmio64[64];
    std::snprintf(mmio64, sizeof mmio64, "0x%016llX, // Range Minimum",
                  static_cast<unsigned long long>(pci_mmio64_start(5ull << 30)));
    EXPECT_THAT(d, HasSubstr(mmio64));
    EXPECT_THAT(d, HasSubstr("0x0000001000000000, // Length"));
    EXPECT_THAT(d, HasSubstr("0xE0000000,         // Address Base"));

    const auto r = run({iasl_, "-p", dir_ + "/re_DSDT", dir_ + "/DSDT.dsl"});
    EXPECT_EQ(r.exit_status, 0) << r.out << r.err;
    EXPECT_THAT(r.out, HasSubstr("0 Errors, 0 Warnings")) << r.out << r.err;
}

TEST_F(AcpiIasl, AcpiexecEvaluatesS5AndHostBridgeResources) {
    if (acpiexec_.empty()) GTEST_SKIP() << "acpiexec not installed (acpica-tools)";
    const auto r = run({acpiexec_, "-b", "evaluate \\_S5; resources \\_SB.PCI0; evaluate \\_SB.PEVT._STA",
                        dir_ + "/DSDT.dat"});
    ASSERT_EQ(r.exit_status, 0) << r.out << r.err;
    const std::string& o = r.out;
    EXPECT_THAT(o, Not(HasSubstr("ACPI Error"))) << o;
    EXPECT_THAT(o, Not(HasSubstr("ACPI Exception"))) << o;

    // \_S5 = {5, 5, 0, 0}
    const auto s5 = o.find("Evaluation of \\_S5 returned");
    ASSERT_NE(s5, std::string::npos) << o;
    const std::string s5_out = o.substr(s5, 400);
    EXPECT_THAT(s5_out, HasSubstr("[Package] Contains 4 Elements"));
    EXPECT_EQ(count(s5_out, "[Integer] = 0000000000000005"), 2u) << s5_out;

    // _CRS through ACPICA's resource manager.
    const auto crs = o.find("Evaluating _CRS");
    ASSERT_NE(crs, std::string::npos) << o;
    const std::string c = o.substr(crs);
    EXPECT_THAT(c, HasSubstr("Resource Type : Bus Number Range"));
    EXPECT_THAT(c, HasSubstr("Address Maximum : 00FF"));
    EXPECT_THAT(c, HasSubstr("Address Minimum : 0CF8"));
    EXPECT_THAT(c, HasSubstr("Address Length : 08"));
    EXPECT_THAT(c, HasSubstr("Address Minimum : C000"));
    EXPECT_THAT(c, HasSubstr("Address Maximum : FFFF"));
    EXPECT_THAT(c, HasSubstr("Address Minimum : C0000000"));
    EXPECT_THAT(c, HasSubstr("Address Maximum : DFFFFFFF"));
    EXPECT_THAT(c, HasSubstr("Address Minimum : 0000000240000000"));
    EXPECT_THAT(c, HasSubstr("Address Maximum : 000000123FFFFFFF"));
    EXPECT_THAT(c, HasSubstr("[05] EndTag Resource"));

    // _PRT: every (slot, pin) of slots 1..31 maps to pci_intx_gsi(slot, pin), source = GSI.
    const auto prt = o.find("Evaluating _PRT");
    ASSERT_NE(prt, std::string::npos) << o;
    std::istringstream lines(o.substr(prt, crs - prt));
    std::string line;
    unsigned entries = 0;
    std::uint64_t address = 0, pin = 0;
    auto value = [](const std::string& l) { return std::stoull(l.substr(l.find(':') + 1), nullptr, 16); };
    while (std::getline(lines, line)) {
        if (line.find("Address :") != std::string::npos) address = value(line);
        if (line.find(" Pin :") != std::string::npos) pin = value(line);
        if (line.find("Source Index :") != std::string::npos) {
            const unsigned slot = unsigned(address >> 16);
            EXPECT_EQ(address & 0xffff, 0xffffu);
            EXPECT_EQ(value(line), pci_intx_gsi(slot, unsigned(pin))) << "slot " << slot << " pin " << pin;
            EXPECT_EQ(slot, 1 + entries / 4);
            EXPECT_EQ(pin, entries % 4);
            ++entries;
        }
    }
    EXPECT_EQ(entries, 31u * 4u);
    EXPECT_THAT(o, HasSubstr("Source : [NULL NAMESTRING]"));

    EXPECT_THAT(o, HasSubstr("[Integer] = 000000000000000F")) << "pvpanic _STA";
}

TEST_F(AcpiIasl, SmallGuestGetsTheWindowAt4GiB) {
    if (acpiexec_.empty()) GTEST_SKIP() << "acpiexec not installed (acpica-tools)";
    AcpiConfig c;
    c.vcpus = 1;
    c.ram = ram_layout(256ull << 20);
    const std::string dir = test::make_temp_dir("acpi-small-");
    dump_tables(build_tables(c), dir);
    const auto r = run({acpiexec_, "-b", "resources \\_SB.PCI0", dir + "/DSDT.dat"});
    EXPECT_EQ(r.exit_status, 0);
    EXPECT_THAT(r.out, HasSubstr("Address Minimum : 0000000100000000"));
    EXPECT_THAT(r.out, HasSubstr("Address Maximum : 00000010FFFFFFFF"));
    std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace vmm::x86::acpi
