// The AML builder's encodings against ACPI 6.4 §20 and §6.4, byte for byte.
#include "x86/acpi/aml.h"

#include "common/error.h"

#include <gtest/gtest.h>

#include <string>

namespace vmm::x86::acpi::aml {
namespace {

Bytes ascii(const std::string& s) { return Bytes(s.begin(), s.end()); }

// Decodes a PkgLength (§20.2.4): (total length, bytes used by the encoding).
std::pair<std::size_t, std::size_t> decode_pkg_length(const Bytes& b) {
    const unsigned follow = b.at(0) >> 6;
    if (follow == 0) return {b[0] & 0x3f, 1};
    std::size_t v = b[0] & 0x0f;
    for (unsigned i = 0; i < follow; ++i) v |= std::size_t(b.at(1 + i)) << (4 + 8 * i);
    return {v, 1 + follow};
}

TEST(AcpiAml, PkgLengthCountsItselfAndIsMinimal) {
    EXPECT_EQ(pkg_length(0), (Bytes{0x01}));
    EXPECT_EQ(pkg_length(62), (Bytes{0x3f}));
    EXPECT_EQ(pkg_length(63), (Bytes{0x41, 0x04}));  // 63 + 2 = 65 = 0x41
    for (std::size_t body : {0u, 1u, 61u, 62u, 63u, 64u, 0xffdu, 0xffeu, 0xfffu, 0x1000u, 0xffffcu, 0xffffdu, 0x100000u}) {
        const Bytes e = pkg_length(body);
        const auto [total, used] = decode_pkg_length(e);
        EXPECT_EQ(used, e.size()) << body;
        EXPECT_EQ(total, body + e.size()) << body;
        if (e.size() == 1) {
            EXPECT_LE(total, 0x3fu);
        } else {
            EXPECT_GT(body + 1, 0x3fu) << "a one-byte encoding would have fit";
            EXPECT_EQ(e[0] & 0x30, 0) << "bits 4-5 of a multi-byte lead are reserved";
            EXPECT_GE(total, std::size_t(1) << (4 + 8 * (e.size() - 2))) << "a shorter encoding would have fit";
        }
    }
    EXPECT_THROW(pkg_length(std::size_t(1) << 28), Error);
}

TEST(AcpiAml, Integers) {
    EXPECT_EQ(integer(0), (Bytes{0x00}));
    EXPECT_EQ(integer(1), (Bytes{0x01}));
    EXPECT_EQ(integer(2), (Bytes{0x0a, 0x02}));
    EXPECT_EQ(integer(0xff), (Bytes{0x0a, 0xff}));
    EXPECT_EQ(integer(0x100), (Bytes{0x0b, 0x00, 0x01}));
    EXPECT_EQ(integer(0x1ffff), (Bytes{0x0c, 0xff, 0xff, 0x01, 0x00}));
    EXPECT_EQ(integer(0x123456789ull), (Bytes{0x0e, 0x89, 0x67, 0x45, 0x23, 0x01, 0x00, 0x00, 0x00}));
}

TEST(AcpiAml, Names) {
    EXPECT_EQ(name_string("_S5"), ascii("_S5_"));
    EXPECT_EQ(name_string("\\_S5"), ascii("\\_S5_"));
    EXPECT_EQ(name_string("\\_SB.PCI0"), ascii("\\\x2e_SB_PCI0"));
    EXPECT_EQ(name_string("\\_SB.PCI0.COM1"), ascii("\\\x2f\x03_SB_PCI0COM1"));
    EXPECT_EQ(name_string("^^RTC"), ascii("^^RTC_"));
    EXPECT_EQ(name_string("\\"), (Bytes{'\\', 0x00}));
    for (const char* bad : {"1ABC", "ABCDE", "abc", "A..B", "A.", ".A", "A-B"}) {
        EXPECT_THROW(name_string(bad), Error) << bad;
    }
}

TEST(AcpiAml, StringsAndEisaIds) {
    EXPECT_EQ(string("QEMU0001"), concat({Bytes{0x0d}, ascii("QEMU0001"), Bytes{0x00}}));
    EXPECT_THROW(string(std::string("a\0b", 3)), Error);
    // Values iasl produces for EisaId(): PNP0A03 = 0x030AD041 and so on, stored little-endian.
    EXPECT_EQ(eisa_id("PNP0A03"), (Bytes{0x0c, 0x41, 0xd0, 0x0a, 0x03}));
    EXPECT_EQ(eisa_id("PNP0A08"), (Bytes{0x0c, 0x41, 0xd0, 0x0a, 0x08}));
    EXPECT_EQ(eisa_id("PNP0501"), (Bytes{0x0c, 0x41, 0xd0, 0x05, 0x01}));
    for (const char* bad : {"PNP0A0", "pnp0A03", "PNP0A0G", "PNP0A033"}) EXPECT_THROW(eisa_id(bad), Error) << bad;
}

TEST(AcpiAml, PackagesBuffersAndNames) {
    // Name(_S5, Package(){5, 0}) = 08 "_S5_" 12 len count elements.
    EXPECT_EQ(name("_S5", package({integer(5), integer(0)})),
              concat({Bytes{0x08}, ascii("_S5_"), Bytes{0x12, 0x05, 0x02, 0x0a, 0x05, 0x00}}));
    EXPECT_EQ(buffer({0xaa, 0xbb}), (Bytes{0x11, 0x05, 0x0a, 0x02, 0xaa, 0xbb}));
    EXPECT_THROW(package(std::vector<Bytes>(256, integer(0))), Error);
    // A package long enough to need a two-byte PkgLength.
    const Bytes big = package(std::vector<Bytes>(100, integer(7)));  // 1 + 200 bytes of body
    EXPECT_EQ(big[0], 0x12);
    EXPECT_EQ(decode_pkg_length(Bytes(big.begin() + 1, big.end())).first, big.size() - 1);
}

TEST(AcpiAml, MethodsDevicesScopes) {
    // Method(_STA, 0, NotSerialized) { Return (0x0F) }
    EXPECT_EQ(method("_STA", 0, return_value(integer(0x0f))),
              concat({Bytes{0x14, 0x09}, ascii("_STA"), Bytes{0x00, 0xa4, 0x0a, 0x0f}}));
    EXPECT_THROW(method("_FOO", 8, {}), Error);
    // Device(RTC) {} = 5B 82 len "RTC_"
    EXPECT_EQ(device("RTC", {}), concat({Bytes{0x5b, 0x82, 0x05}, ascii("RTC_")}));
    EXPECT_EQ(scope("\\_SB", {0x01}), concat({Bytes{0x10, 0x07}, ascii("\\_SB_"), Bytes{0x01}}));
}

TEST(AcpiAml, ResourceDescriptors) {
    EXPECT_EQ(ResourceTemplate().io(0x3f8, 0x3f8, 1, 8).descriptors(),
              (Bytes{0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08, 0x79, 0x00}));
    EXPECT_EQ(ResourceTemplate().irq_no_flags({4}).descriptors(), (Bytes{0x22, 0x10, 0x00, 0x79, 0x00}));
    EXPECT_EQ(ResourceTemplate().irq_no_flags({1, 12}).descriptors(), (Bytes{0x22, 0x02, 0x10, 0x79, 0x00}));
    EXPECT_THROW(ResourceTemplate().irq_no_flags({16}), Error);
    // Interrupt(ResourceConsumer, Level, ActiveHigh, Exclusive) {9}
    EXPECT_EQ(ResourceTemplate().interrupt(9, true, false).descriptors(),
              (Bytes{0x89, 0x06, 0x00, 0x01, 0x01, 0x09, 0x00, 0x00, 0x00, 0x79, 0x00}));
    // Interrupt(ResourceConsumer, Edge, ActiveLow, Exclusive) {0x20}
    EXPECT_EQ(ResourceTemplate().interrupt(0x20, false, true).descriptors()[3], 0x07);
    EXPECT_EQ(ResourceTemplate().memory32_fixed(0xe0000000, 0x10000000).descriptors(),
              (Bytes{0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xe0, 0x00, 0x00, 0x00, 0x10, 0x79, 0x00}));
    // WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, 0, 255, 0, 256)
    EXPECT_EQ(ResourceTemplate().word_bus_number(0, 255).descriptors(),
              (Bytes{0x88, 0x0d, 0x00, 0x02, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0x00, 0x00, 0x00, 0x00,
                     0x01, 0x79, 0x00}));
    const Bytes dw = ResourceTemplate().dword_memory(0xc0000000, 0xdfffffff, false).descriptors();
    ASSERT_EQ(dw.size(), 3u + 23u + 2u);
    EXPECT_EQ(dw[0], 0x87);
    EXPECT_EQ(dw[5], 0x01) << "ReadWrite, NonCacheable";
    const Bytes qw = ResourceTemplate().qword_memory(0x240000000ull, 0x123fffffffull, true).descriptors();
    ASSERT_EQ(qw.size(), 3u + 43u + 2u);
    EXPECT_EQ(qw[0], 0x8a);
    EXPECT_EQ(qw[5], 0x03) << "ReadWrite, Cacheable";
    EXPECT_THROW(ResourceTemplate().qword_memory(2, 1, true), Error);
}

}  // namespace
}  // namespace vmm::x86::acpi::aml
