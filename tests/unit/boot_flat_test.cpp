// Flat (raw) binaries: placement, bounds and the three entry modes.
#include "boot/flat_binary.h"
#include "common/error.h"
#include "tests/support/fakes.h"
#include "x86/memory_layout.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace vmm::boot {
namespace {

using ::testing::HasSubstr;

constexpr std::uint64_t kMiB = 1024 * 1024;

struct Guest {
    explicit Guest(std::uint64_t bytes) : ram(x86::ram_layout(bytes)), mem({{0, ram.low_size}}) {}
    const GuestMemory& m() const { return mem.memory(); }
    x86::RamLayout ram;
    test::FakeGuestMemory mem;
};

const std::vector<std::uint8_t> kCode = {0xf4, 0xeb, 0xfd, 0x90, 0x11, 0x22};  // hlt; jmp $-1; ...

BootImages images_for(const std::vector<std::uint8_t>& kernel) {
    BootImages im;
    im.kernel_name = "/synthetic/flat.bin";
    im.kernel = kernel;
    return im;
}

template <typename F>
void expect_error(F&& f, std::initializer_list<const char*> parts) {
    try {
        f();
        ADD_FAILURE() << "no exception";
    } catch (const Error& e) {
        for (const char* p : parts) EXPECT_THAT(e.what(), HasSubstr(p));
    }
}

void expect_loaded(const GuestMemory& mem, std::uint64_t gpa) {
    std::vector<std::uint8_t> got(kCode.size());
    ASSERT_TRUE(mem.read(gpa, got.data(), got.size()));
    EXPECT_EQ(got, kCode);
}

TEST(FlatBinary, Real16SplitsEntryIntoCsIp) {
    Guest g(4 * kMiB);
    const BootSetup s = load_flat(g.mem, g.ram, images_for(kCode), {0x12340, 0x12345, EntryMode::Real16});
    expect_loaded(g.m(), 0x12340);
    EXPECT_EQ(s.format, "flat");
    EXPECT_EQ(s.kernel_addr, 0x12340u);
    EXPECT_EQ(s.kernel_size, kCode.size());
    EXPECT_EQ(s.cpu.cs.selector, 0x1000);
    EXPECT_EQ(s.cpu.cs.base, 0x10000u);
    EXPECT_EQ(s.cpu.rip, 0x2345u);
    EXPECT_EQ(s.cpu.cs.base + s.cpu.rip, 0x12345u);
    EXPECT_EQ(s.cpu.ds.selector, 0x1000);
    EXPECT_EQ(s.cpu.ss.base + s.cpu.rsp, x86::kBootStackTop);  // the boot stack, whatever cs is
    EXPECT_EQ(s.cpu.cr0 & x86::kCr0Pe, 0u);
}

TEST(FlatBinary, Real16LowEntryUsesSegmentZero) {
    Guest g(4 * kMiB);
    const BootSetup s = load_flat(g.mem, g.ram, images_for(kCode), {0x7c00, 0x7c00, EntryMode::Real16});
    EXPECT_EQ(s.cpu.cs.selector, 0);
    EXPECT_EQ(s.cpu.rip, 0x7c00u);
    EXPECT_EQ(s.cpu.rsp, x86::kBootStackTop);
}

TEST(FlatBinary, Real16RejectsEntryAbove1MiB) {
    Guest g(4 * kMiB);
    expect_error([&] { load_flat(g.mem, g.ram, images_for(kCode), {0x100000, 0x100000, EntryMode::Real16}); },
                 {"/synthetic/flat.bin", "below 1 MiB"});
}

TEST(FlatBinary, Protected32) {
    Guest g(4 * kMiB);
    const BootSetup s = load_flat(g.mem, g.ram, images_for(kCode), {0x100000, 0x100001, EntryMode::Protected32});
    expect_loaded(g.m(), 0x100000);
    EXPECT_EQ(s.cpu.rip, 0x100001u);
    EXPECT_EQ(s.cpu.rsp, x86::kBootStackTop);
    EXPECT_TRUE(s.cpu.cr0 & x86::kCr0Pe);
    EXPECT_FALSE(s.cpu.cr0 & x86::kCr0Pg);
    EXPECT_EQ(s.cpu.cs.selector, x86::kBootCs32);
    EXPECT_EQ(s.cpu.efer, 0u);
    EXPECT_NE(g.m().read_obj<std::uint64_t>(x86::kGdtAddr + x86::kBootCs32), 0u);  // GDT written
    EXPECT_EQ(g.m().read_obj<std::uint64_t>(x86::kPml4Addr), 0u);                   // no page tables
}

TEST(FlatBinary, Long64) {
    Guest g(4 * kMiB);
    const BootSetup s = load_flat(g.mem, g.ram, images_for(kCode), {0x200000, 0x200000, EntryMode::Long64});
    expect_loaded(g.m(), 0x200000);
    EXPECT_EQ(s.cpu.rip, 0x200000u);
    EXPECT_EQ(s.cpu.rsp, x86::kBootStackTop);
    EXPECT_TRUE(s.cpu.efer & x86::kEferLma);
    EXPECT_TRUE(s.cpu.cr0 & x86::kCr0Pg);
    EXPECT_EQ(s.cpu.cr3, x86::kPml4Addr);
    EXPECT_EQ(s.cpu.cs.selector, x86::kBootCs64);
    EXPECT_EQ(g.m().read_obj<std::uint64_t>(x86::kPml4Addr), x86::kPdptAddr | 3);
    EXPECT_NE(g.m().read_obj<std::uint64_t>(x86::kGdtAddr + x86::kBootCs64), 0u);
}

TEST(FlatBinary, RejectsEntryAbove4GiB) {
    Guest g(4 * kMiB);
    expect_error([&] { load_flat(g.mem, g.ram, images_for(kCode), {0x100000, 0x100000000ull, EntryMode::Long64}); },
                 {"below 4 GiB"});
    expect_error(
        [&] { load_flat(g.mem, g.ram, images_for(kCode), {0x100000, 0x100000000ull, EntryMode::Protected32}); },
        {"below 4 GiB"});
}

TEST(FlatBinary, RejectsImageOutsideRam) {
    Guest g(4 * kMiB);
    expect_error([&] { load_flat(g.mem, g.ram, images_for(kCode), {4 * kMiB - 2, 4 * kMiB - 2, EntryMode::Long64}); },
                 {"/synthetic/flat.bin", "outside guest RAM"});
    expect_error(
        [&] { load_flat(g.mem, g.ram, images_for(kCode), {~0ull - 2, 0, EntryMode::Real16}); }, {"outside guest RAM"});
}

TEST(FlatBinary, RejectsOverlapWithBootTables) {
    Guest g(4 * kMiB);
    expect_error([&] { load_flat(g.mem, g.ram, images_for(kCode), {0x9ffe, 0x9ffe, EntryMode::Long64}); },
                 {"page tables"});
    // The same place is fine in 32-bit mode, which has no page tables.
    EXPECT_NO_THROW(load_flat(g.mem, g.ram, images_for(kCode), {0x9ffe, 0x9ffe, EntryMode::Protected32}));
    expect_error([&] { load_flat(g.mem, g.ram, images_for(kCode), {0x500, 0x500, EntryMode::Protected32}); }, {"GDT"});
}

TEST(FlatBinary, RejectsEmptyAndInitrd) {
    Guest g(4 * kMiB);
    expect_error([&] { load_flat(g.mem, g.ram, images_for({}), {0x100000, 0x100000, EntryMode::Long64}); }, {"empty"});
    BootImages im = images_for(kCode);
    im.initrd = InitrdImage::from_bytes("rd", {1, 2, 3});
    expect_error([&] { load_flat(g.mem, g.ram, im, {0x100000, 0x100000, EntryMode::Long64}); }, {"initrd"});
}

}  // namespace
}  // namespace vmm::boot
