// Multiboot v1 header finder and loader (Multiboot Specification 0.6.96, 3.1-3.3).
#include "boot/multiboot.h"
#include "common/error.h"
#include "tests/fixtures/boot/synthetic_images.h"
#include "tests/support/fakes.h"
#include "x86/memory_layout.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace vmm::boot {
namespace {

using ::testing::HasSubstr;
using test::make_multiboot_aout;
using test::make_multiboot_elf;

constexpr std::uint64_t kMiB = 1024 * 1024;

struct Guest {
    explicit Guest(std::uint64_t bytes) : ram(x86::ram_layout(bytes)), mem({{0, ram.low_size}}) {}
    const GuestMemory& m() const { return mem.memory(); }
    x86::RamLayout ram;
    test::FakeGuestMemory mem;
};

BootImages images_for(const std::vector<std::uint8_t>& kernel, std::string cmdline = "",
                      std::optional<InitrdImage> initrd = std::nullopt) {
    BootImages im;
    im.kernel_name = "/synthetic/mbkernel";
    im.kernel = kernel;
    im.cmdline = std::move(cmdline);
    im.initrd = std::move(initrd);
    return im;
}

std::string read_cstring(const GuestMemory& mem, std::uint64_t gpa) {
    std::string s;
    for (char c; mem.read(gpa + s.size(), &c, 1) && c != '\0';) s.push_back(c);
    return s;
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

TEST(MultibootHeader, FindsAlignedHeaderWithChecksum) {
    const auto img = make_multiboot_elf();
    const auto h = find_multiboot_header(img);
    ASSERT_TRUE(h);
    EXPECT_EQ(h->offset, test::kElfTextOff);
    EXPECT_EQ(h->flags, 0x3u);
    EXPECT_TRUE(h->checksum_ok);
}

TEST(MultibootHeader, IgnoresUnalignedAndLateMagic) {
    std::vector<std::uint8_t> img(16384, 0);
    test::put_multiboot_header(img, 8192, 0);  // past the first 8192 bytes
    EXPECT_FALSE(find_multiboot_header(img));
    std::vector<std::uint8_t> un(64, 0);
    test::put_multiboot_header(un, 0, 0);
    std::vector<std::uint8_t> shifted(1, 0);
    shifted.insert(shifted.end(), un.begin(), un.end());  // magic at offset 1
    EXPECT_FALSE(find_multiboot_header(shifted));
    EXPECT_FALSE(find_multiboot_header(std::vector<std::uint8_t>(11, 0)));
}

TEST(MultibootHeader, PrefersValidChecksumButReportsBadOne) {
    std::vector<std::uint8_t> img(256, 0);
    test::put_multiboot_header(img, 16, 0, /*bad_checksum=*/true);
    auto h = find_multiboot_header(img);
    ASSERT_TRUE(h);
    EXPECT_FALSE(h->checksum_ok);
    test::put_multiboot_header(img, 64, 0);
    h = find_multiboot_header(img);
    ASSERT_TRUE(h);
    EXPECT_TRUE(h->checksum_ok);
    EXPECT_EQ(h->offset, 64u);
}

TEST(MultibootLoad, Elf32SegmentsBssAndMachineState) {
    Guest g(32 * kMiB);
    const auto img = make_multiboot_elf();
    // Poison the bss so the test sees the loader zero it.
    std::vector<std::uint8_t> poison(test::kElfDataMem, 0xcc);
    ASSERT_TRUE(g.m().write(0x101000, poison.data(), poison.size()));

    const BootSetup s = load_multiboot(g.mem, g.ram, images_for(img, "hello multiboot"));
    EXPECT_EQ(s.format, "multiboot");
    EXPECT_EQ(s.kernel_addr, 0x100000u);
    EXPECT_EQ(s.kernel_size, 0x1000u + test::kElfDataMem);

    std::vector<std::uint8_t> text(test::kElfTextSize);
    ASSERT_TRUE(g.m().read(0x100000, text.data(), text.size()));
    EXPECT_TRUE(std::equal(text.begin(), text.end(), img.begin() + test::kElfTextOff));
    std::vector<std::uint8_t> data(test::kElfDataMem);
    ASSERT_TRUE(g.m().read(0x101000, data.data(), data.size()));
    EXPECT_TRUE(std::equal(data.begin(), data.begin() + test::kElfDataFile, img.begin() + test::kElfDataOff));
    for (std::size_t i = test::kElfDataFile; i < data.size(); ++i) ASSERT_EQ(data[i], 0) << "bss byte " << i;

    // Spec 3.2.
    EXPECT_EQ(s.cpu.rax, 0x2badb002u);
    EXPECT_EQ(s.cpu.rbx, kMultibootInfoAddr);
    EXPECT_EQ(s.cpu.rip, 0x100000u + test::kElfEntryOff);  // e_entry translated from vaddr to paddr
    EXPECT_TRUE(s.cpu.cr0 & x86::kCr0Pe);
    EXPECT_FALSE(s.cpu.cr0 & x86::kCr0Pg);
    EXPECT_EQ(s.cpu.efer, 0u);
    EXPECT_EQ(s.cpu.cs.db, 1);
    EXPECT_EQ(s.cpu.cs.limit, 0xffffffffu);
    EXPECT_EQ(s.cpu.ds.limit, 0xffffffffu);
    EXPECT_EQ(s.cpu.rflags & 0x200, 0u);  // IF clear

    const auto mbi = g.m().read_obj<MultibootInfo>(kMultibootInfoAddr);
    ASSERT_TRUE(mbi);
    EXPECT_EQ(mbi->flags & (kMbiMem | kMbiCmdline | kMbiMmap), kMbiMem | kMbiCmdline | kMbiMmap);
    EXPECT_EQ(mbi->flags & kMbiMods, 0u);
    EXPECT_EQ(mbi->mem_lower, 639u);
    EXPECT_EQ(mbi->mem_upper, (32 * kMiB - kMiB) / 1024);
    EXPECT_EQ(read_cstring(g.m(), mbi->cmdline), "hello multiboot");
    EXPECT_EQ(read_cstring(g.m(), mbi->boot_loader_name), "vmm");

    const auto e820 = x86::e820_map(g.ram);
    ASSERT_EQ(mbi->mmap_length, e820.size() * 24);
    for (std::size_t i = 0; i < e820.size(); ++i) {
        const auto e = g.m().read_obj<MultibootMmapEntry>(mbi->mmap_addr + i * 24);
        ASSERT_TRUE(e);
        EXPECT_EQ(e->size, 20u);
        EXPECT_EQ(e->addr, e820[i].addr);
        EXPECT_EQ(e->len, e820[i].size);
        EXPECT_EQ(e->type, static_cast<std::uint32_t>(e820[i].type));
    }
}

TEST(MultibootLoad, InitrdIsTheOneModule) {
    Guest g(32 * kMiB);
    std::vector<std::uint8_t> rd(10000);
    for (std::size_t i = 0; i < rd.size(); ++i) rd[i] = static_cast<std::uint8_t>(i ^ 0x5a);
    const BootSetup s =
        load_multiboot(g.mem, g.ram, images_for(make_multiboot_elf(), "", InitrdImage::from_bytes("/tmp/rd.img", rd)));
    const auto mbi = g.m().read_obj<MultibootInfo>(kMultibootInfoAddr);
    ASSERT_TRUE(mbi);
    EXPECT_TRUE(mbi->flags & kMbiMods);
    ASSERT_EQ(mbi->mods_count, 1u);
    const auto mod = g.m().read_obj<MultibootModule>(mbi->mods_addr);
    ASSERT_TRUE(mod);
    EXPECT_EQ(mod->mod_start, s.initrd_addr);
    EXPECT_EQ(mod->mod_end, s.initrd_addr + rd.size());
    EXPECT_EQ(mod->mod_start % 4096, 0u);
    EXPECT_GE(mod->mod_start, s.kernel_addr + s.kernel_size);
    EXPECT_EQ(read_cstring(g.m(), mod->string), "/tmp/rd.img");
    std::vector<std::uint8_t> got(rd.size());
    ASSERT_TRUE(g.m().read(mod->mod_start, got.data(), got.size()));
    EXPECT_EQ(got, rd);
}

TEST(MultibootLoad, AoutKludge) {
    Guest g(32 * kMiB);
    const test::AoutParams p;
    const auto img = make_multiboot_aout(p);
    std::vector<std::uint8_t> poison(p.bss_size, 0xcc);
    ASSERT_TRUE(g.m().write(p.load_addr + p.file_size, poison.data(), poison.size()));
    const BootSetup s = load_multiboot(g.mem, g.ram, images_for(img));
    EXPECT_EQ(s.kernel_addr, p.load_addr);
    EXPECT_EQ(s.kernel_size, p.file_size + p.bss_size);
    EXPECT_EQ(s.cpu.rip, p.load_addr + 0x40u);
    EXPECT_EQ(s.cpu.rax, 0x2badb002u);
    std::vector<std::uint8_t> got(p.file_size + p.bss_size);
    ASSERT_TRUE(g.m().read(p.load_addr, got.data(), got.size()));
    EXPECT_TRUE(std::equal(img.begin(), img.end(), got.begin()));
    for (std::size_t i = p.file_size; i < got.size(); ++i) ASSERT_EQ(got[i], 0) << "bss byte " << i;
}

TEST(MultibootLoad, AoutKludgeLoadEndAddrLimitsTheCopy) {
    Guest g(32 * kMiB);
    test::AoutParams p;
    p.load_end_addr = p.load_addr + 0x400;  // only the first 0x400 bytes are text+data
    p.bss_size = 0x100;
    const auto img = make_multiboot_aout(p);
    const BootSetup s = load_multiboot(g.mem, g.ram, images_for(img));
    EXPECT_EQ(s.kernel_size, 0x500u);
    EXPECT_EQ(g.m().read_obj<std::uint8_t>(p.load_addr + 0x3ff), img[0x3ff]);
    EXPECT_EQ(g.m().read_obj<std::uint8_t>(p.load_addr + 0x400), 0);
}

TEST(MultibootLoad, RejectsBadChecksum) {
    Guest g(32 * kMiB);
    test::ElfParams p;
    p.bad_checksum = true;
    expect_error([&] { load_multiboot(g.mem, g.ram, images_for(make_multiboot_elf(p))); },
                 {"/synthetic/mbkernel", "bad checksum"});
}

TEST(MultibootLoad, RejectsElf64) {
    Guest g(32 * kMiB);
    test::ElfParams p;
    p.elf_class = ELFCLASS64;
    expect_error([&] { load_multiboot(g.mem, g.ram, images_for(make_multiboot_elf(p))); },
                 {"/synthetic/mbkernel", "not ELF32"});
}

TEST(MultibootLoad, RejectsNonI386) {
    Guest g(32 * kMiB);
    test::ElfParams p;
    p.machine = EM_X86_64;
    expect_error([&] { load_multiboot(g.mem, g.ram, images_for(make_multiboot_elf(p))); }, {"not i386"});
}

TEST(MultibootLoad, RejectsSegmentOutsideRam) {
    Guest g(32 * kMiB);
    test::ElfParams p;
    p.data_paddr = 64 * kMiB;
    expect_error([&] { load_multiboot(g.mem, g.ram, images_for(make_multiboot_elf(p))); },
                 {"/synthetic/mbkernel", "segment 1", "outside guest RAM"});
}

TEST(MultibootLoad, RejectsSegmentOverLoaderLowMemory) {
    Guest g(32 * kMiB);
    test::ElfParams p;
    p.text_paddr = 0x10000;  // the multiboot info area
    expect_error([&] { load_multiboot(g.mem, g.ram, images_for(make_multiboot_elf(p))); },
                 {"segment 0", "low memory the loader uses"});
    p.text_paddr = 0x9fb00;  // 0x200 bytes: runs into the EBDA at 0x9fc00
    expect_error([&] { load_multiboot(g.mem, g.ram, images_for(make_multiboot_elf(p))); }, {"EBDA"});
}

TEST(MultibootLoad, AcceptsLowSegmentInFreeArea) {
    Guest g(32 * kMiB);
    test::ElfParams p;
    p.text_paddr = 0x40000;
    p.data_paddr = 0x41000;
    const BootSetup s = load_multiboot(g.mem, g.ram, images_for(make_multiboot_elf(p)));
    EXPECT_EQ(s.kernel_addr, 0x40000u);
    EXPECT_EQ(s.cpu.rip, 0x40000u + test::kElfEntryOff);
}

TEST(MultibootLoad, RejectsAoutAddressesOutsideFile) {
    Guest g(32 * kMiB);
    test::AoutParams p;
    p.load_end_addr = p.load_addr + 0x10000;  // beyond the 0x800-byte file
    expect_error([&] { load_multiboot(g.mem, g.ram, images_for(make_multiboot_aout(p))); },
                 {"/synthetic/mbkernel", "outside the file"});

    auto img = make_multiboot_aout();
    test::put32(img, 0x10 + 16, 0x200000 - 0x100);  // load_addr 0x100 before a header at offset 0x10
    expect_error([&] { load_multiboot(g.mem, g.ram, images_for(img)); }, {"outside the file"});
}

TEST(MultibootLoad, RejectsAoutOutsideRam) {
    Guest g(8 * kMiB);
    test::AoutParams p;
    p.load_addr = 0xc0000000;
    expect_error([&] { load_multiboot(g.mem, g.ram, images_for(make_multiboot_aout(p))); }, {"outside guest RAM"});
}

TEST(MultibootLoad, RejectsVideoModeRequirement) {
    Guest g(8 * kMiB);
    std::vector<std::uint8_t> img = make_multiboot_aout();
    test::put_multiboot_header(img, 0x10, 0x10007);
    expect_error([&] { load_multiboot(g.mem, g.ram, images_for(img)); }, {"video mode"});
}

TEST(MultibootLoad, RejectsInitrdTooBig) {
    Guest g(8 * kMiB);
    const std::vector<std::uint8_t> rd(8 * kMiB, 1);
    expect_error([&] { load_multiboot(g.mem, g.ram, images_for(make_multiboot_elf(), "", InitrdImage::from_bytes("rd", rd))); },
                 {"initrd rd", "too big"});
}

}  // namespace
}  // namespace vmm::boot
