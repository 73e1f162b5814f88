// bzImage parser and 64-bit boot protocol loader (Documentation/arch/x86/boot.rst), with
// synthetic images built in tests/fixtures/boot/synthetic_images.h.
#include "boot/bzimage.h"
#include "common/error.h"
#include "tests/fixtures/boot/synthetic_images.h"
#include "tests/support/fakes.h"
#include "x86/memory_layout.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <asm/bootparam.h>

namespace vmm::boot {
namespace {

using ::testing::HasSubstr;
using test::BzParams;
using test::make_bzimage;

constexpr std::uint64_t kMiB = 1024 * 1024;

struct Guest {
    explicit Guest(std::uint64_t bytes) : ram(x86::ram_layout(bytes)), mem({{0, ram.low_size}}) {}
    x86::RamLayout ram;
    test::FakeGuestMemory mem;
};

BootImages images_for(const std::vector<std::uint8_t>& kernel, std::string cmdline = "console=ttyS0",
                      std::optional<InitrdImage> initrd = std::nullopt) {
    BootImages im;
    im.kernel_name = "/synthetic/bzImage";
    im.kernel = kernel;
    im.cmdline = std::move(cmdline);
    im.initrd = std::move(initrd);
    return im;
}

std::vector<std::uint8_t> pattern(std::size_t n, std::uint8_t seed) {
    std::vector<std::uint8_t> v(n);
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(i * 13 + seed);
    return v;
}

boot_params read_zero_page(const GuestMemory& mem) {
    auto bp = mem.read_obj<boot_params>(x86::kBootParamsAddr);
    EXPECT_TRUE(bp.has_value());
    return bp.value_or(boot_params{});
}

// Expects `f` to throw vmm::Error whose message contains every one of `parts`.
template <typename F>
void expect_error(F&& f, std::initializer_list<const char*> parts) {
    try {
        f();
        ADD_FAILURE() << "no exception";
    } catch (const Error& e) {
        for (const char* p : parts) EXPECT_THAT(e.what(), HasSubstr(p));
    }
}

TEST(BzImageParse, ReadsHeaderFields) {
    BzParams p;
    p.setup_sects = 0;  // means 4
    const auto img = make_bzimage(p);
    const BzImageInfo info = parse_bzimage(img);
    EXPECT_EQ(info.setup_sects, 4);
    EXPECT_EQ(info.protocol, 0x020f);
    EXPECT_EQ(info.kernel_offset, 5u * 512);
    EXPECT_EQ(info.kernel_size, p.payload);
    EXPECT_EQ(info.header_end, test::kSynthHeaderEnd);
    EXPECT_TRUE(info.relocatable);
    EXPECT_EQ(info.kernel_alignment, 0x200000u);
    EXPECT_EQ(info.initrd_addr_max, 0x7fffffffu);
    EXPECT_EQ(info.cmdline_size, 2047u);
    EXPECT_EQ(info.pref_address, 0x100000u);
    EXPECT_EQ(info.init_size, 256u * 1024);
    EXPECT_EQ(info.code32_start, 0x100000u);
    EXPECT_TRUE(info.loadflags & LOADED_HIGH);
    EXPECT_TRUE(info.supports_64bit_entry());
}

TEST(BzImageParse, OldProtocolGetsDefaults) {
    BzParams p;
    p.version = 0x0202;
    const BzImageInfo info = parse_bzimage(make_bzimage(p));
    EXPECT_EQ(info.initrd_addr_max, 0x37ffffffu);
    EXPECT_EQ(info.cmdline_size, 255u);
    EXPECT_FALSE(info.relocatable);
    EXPECT_EQ(info.xloadflags, 0);
    EXPECT_FALSE(info.supports_64bit_entry());
}

TEST(BzImageParse, RejectsTruncated) {
    auto img = make_bzimage();
    img.resize(0x24f);
    expect_error([&] { parse_bzimage(img); }, {"truncated"});
}

TEST(BzImageParse, RejectsMissingHdrS) {
    auto img = make_bzimage();
    img[0x202] = 'X';
    expect_error([&] { parse_bzimage(img); }, {"not a bzImage", "HdrS"});
}

TEST(BzImageParse, RejectsMissingBootFlag) {
    auto img = make_bzimage();
    img[0x1fe] = 0;
    expect_error([&] { parse_bzimage(img); }, {"not a bzImage", "0xAA55"});
}

TEST(BzImageParse, RejectsZImage) {
    BzParams p;
    p.loadflags = 0;
    expect_error([&] { parse_bzimage(make_bzimage(p)); }, {"zImage"});
}

TEST(BzImageParse, RejectsSetupSectsPastEnd) {
    auto img = make_bzimage();
    img[0x1f1] = 200;  // 201 * 512 bytes of setup: beyond the file
    expect_error([&] { parse_bzimage(img); }, {"setup_sects=200", "past the end"});
}

TEST(BzImageParse, RejectsPayloadShorterThanSyssize) {
    auto img = make_bzimage();
    img.resize(img.size() - 32);
    expect_error([&] { parse_bzimage(img); }, {"truncated", "syssize"});
}

TEST(BzImageParse, RejectsBadAlignment) {
    BzParams p;
    p.kernel_alignment = 0x300000;
    expect_error([&] { parse_bzimage(make_bzimage(p)); }, {"kernel_alignment"});
}

TEST(BzImageLoad, LoadsKernelZeroPageCmdlineAndCpuState) {
    Guest g(64 * kMiB);
    const auto img = make_bzimage();
    const BootSetup s = load_bzimage(g.mem, g.ram, images_for(img, "console=ttyS0 root=/dev/vda"));
    EXPECT_EQ(s.format, "bzImage");
    EXPECT_EQ(s.kernel_addr, 0x100000u);
    EXPECT_EQ(s.kernel_size, 64u * 1024);

    // Payload at 1 MiB, byte for byte.
    auto k = g.mem.memory().span(0x100000, s.kernel_size);
    ASSERT_TRUE(k);
    for (std::size_t i = 0; i < s.kernel_size; ++i) ASSERT_EQ((*k)[i], test::payload_byte(i)) << i;

    const boot_params bp = read_zero_page(g.mem);
    EXPECT_EQ(bp.hdr.type_of_loader, 0xff);
    EXPECT_TRUE(bp.hdr.loadflags & CAN_USE_HEAP);
    EXPECT_TRUE(bp.hdr.loadflags & LOADED_HIGH);
    EXPECT_EQ(bp.hdr.heap_end_ptr, 0xfe00);
    EXPECT_EQ(bp.hdr.version, 0x020f);
    EXPECT_EQ(std::memcmp(&bp.hdr.header, "HdrS", 4), 0);
    EXPECT_EQ(bp.hdr.cmd_line_ptr, x86::kCmdlineAddr);
    EXPECT_EQ(bp.hdr.ramdisk_image, 0u);
    EXPECT_EQ(bp.hdr.ramdisk_size, 0u);
    EXPECT_EQ(bp.sentinel, 0);

    const std::string want = "console=ttyS0 root=/dev/vda";
    std::vector<char> got(want.size() + 1, 'x');
    ASSERT_TRUE(g.mem.memory().read(x86::kCmdlineAddr, got.data(), got.size()));
    EXPECT_EQ(std::string(got.data()), want);
    EXPECT_EQ(got.back(), '\0');

    const auto e820 = x86::e820_map(g.ram);
    ASSERT_EQ(bp.e820_entries, e820.size());
    for (std::size_t i = 0; i < e820.size(); ++i) {
        EXPECT_EQ(bp.e820_table[i].addr, e820[i].addr) << i;
        EXPECT_EQ(bp.e820_table[i].size, e820[i].size) << i;
        EXPECT_EQ(bp.e820_table[i].type, static_cast<std::uint32_t>(e820[i].type)) << i;
    }

    EXPECT_EQ(s.cpu.rip, 0x100200u);
    EXPECT_EQ(s.cpu.rsi, x86::kBootParamsAddr);
    EXPECT_EQ(s.cpu.rsp, x86::kBootStackTop);
    EXPECT_TRUE(s.cpu.efer & x86::kEferLma);
    EXPECT_TRUE(s.cpu.efer & x86::kEferLme);
    EXPECT_TRUE(s.cpu.cr0 & x86::kCr0Pg);
    EXPECT_TRUE(s.cpu.cr4 & x86::kCr4Pae);
    EXPECT_EQ(s.cpu.cr3, x86::kPml4Addr);
    EXPECT_EQ(s.cpu.cs.l, 1);
    EXPECT_EQ(s.cpu.cs.selector, x86::kBootCs64);

    // Page tables and GDT are there: PML4[0] -> PDPT; PD entry for 1 MiB's 2 MiB page.
    EXPECT_EQ(g.mem.memory().read_obj<std::uint64_t>(x86::kPml4Addr), x86::kPdptAddr | 3);
    EXPECT_EQ(g.mem.memory().read_obj<std::uint64_t>(x86::kPdAddr), 0x83u);
    EXPECT_NE(g.mem.memory().read_obj<std::uint64_t>(x86::kGdtAddr + 8), 0u);
}

TEST(BzImageLoad, PlacesInitrdHighAndAligned) {
    Guest g(64 * kMiB);
    const auto img = make_bzimage();
    const auto rd = pattern(300 * 1000 + 7, 5);
    const BootSetup s = load_bzimage(g.mem, g.ram, images_for(img, "", InitrdImage::from_bytes("rd.img", rd)));
    const boot_params bp = read_zero_page(g.mem);
    EXPECT_EQ(bp.hdr.ramdisk_image, s.initrd_addr);
    EXPECT_EQ(bp.hdr.ramdisk_size, rd.size());
    EXPECT_EQ(bp.ext_ramdisk_image, 0u);
    EXPECT_EQ(bp.ext_ramdisk_size, 0u);
    EXPECT_EQ(s.initrd_addr % 4096, 0u);
    EXPECT_LE(s.initrd_addr + rd.size(), g.ram.low_size);
    EXPECT_GT(s.initrd_addr + rd.size() + 4096, g.ram.low_size);  // as high as it goes
    EXPECT_GE(s.initrd_addr, 0x100000u + 256 * 1024);              // above init_size
    std::vector<std::uint8_t> got(rd.size());
    ASSERT_TRUE(g.mem.memory().read(s.initrd_addr, got.data(), got.size()));
    EXPECT_EQ(got, rd);
}

TEST(BzImageLoad, InitrdRespectsInitrdAddrMax) {
    Guest g(64 * kMiB);
    BzParams p;
    p.initrd_addr_max = 16 * kMiB - 1;
    const auto rd = pattern(8192, 1);
    const BootSetup s = load_bzimage(g.mem, g.ram, images_for(make_bzimage(p), "", InitrdImage::from_bytes("rd", rd)));
    EXPECT_EQ(s.initrd_addr, 16 * kMiB - 8192);
}

TEST(BzImageLoad, RelocatableKernelGoesToPrefAddressWhenItFits) {
    Guest g(64 * kMiB);
    BzParams p;
    p.pref_address = 16 * kMiB;
    const BootSetup s = load_bzimage(g.mem, g.ram, images_for(make_bzimage(p)));
    EXPECT_EQ(s.kernel_addr, 16 * kMiB);
    EXPECT_EQ(s.cpu.rip, 16 * kMiB + 0x200);
    EXPECT_EQ(read_zero_page(g.mem).hdr.code32_start, 16 * kMiB);

    Guest small(16 * kMiB);  // pref_address + init_size does not fit: fall back to 1 MiB
    EXPECT_EQ(load_bzimage(small.mem, small.ram, images_for(make_bzimage(p))).kernel_addr, 0x100000u);
}

TEST(BzImageLoad, RejectsOldProtocol) {
    Guest g(16 * kMiB);
    BzParams p;
    p.version = 0x020a;
    expect_error([&] { load_bzimage(g.mem, g.ram, images_for(make_bzimage(p))); },
                 {"/synthetic/bzImage", "2.10", "too old", "2.12"});
}

TEST(BzImageLoad, RejectsMissingXlfKernel64) {
    Guest g(16 * kMiB);
    BzParams p;
    p.xloadflags = 0;
    expect_error([&] { load_bzimage(g.mem, g.ram, images_for(make_bzimage(p))); },
                 {"/synthetic/bzImage", "XLF_KERNEL_64"});
}

TEST(BzImageLoad, ParseErrorsNameTheFile) {
    Guest g(16 * kMiB);
    auto img = make_bzimage();
    img.resize(0x100);
    expect_error([&] { load_bzimage(g.mem, g.ram, images_for(img)); }, {"/synthetic/bzImage", "truncated"});
}

TEST(BzImageLoad, RejectsKernelLargerThanRam) {
    Guest g(4 * kMiB);
    BzParams p;
    p.payload = 4 * kMiB;
    p.init_size = 4 * kMiB;
    expect_error([&] { load_bzimage(g.mem, g.ram, images_for(make_bzimage(p))); },
                 {"/synthetic/bzImage", "larger than guest RAM"});
}

TEST(BzImageLoad, RejectsInitSizeBeyondRam) {
    Guest g(4 * kMiB);
    BzParams p;
    p.init_size = 8 * kMiB;  // the payload fits, its decompression room does not
    expect_error([&] { load_bzimage(g.mem, g.ram, images_for(make_bzimage(p))); }, {"larger than guest RAM"});
}

TEST(BzImageLoad, RejectsInitrdLargerThanRam) {
    Guest g(8 * kMiB);
    const auto rd = pattern(8 * kMiB, 0);
    expect_error([&] { load_bzimage(g.mem, g.ram, images_for(make_bzimage(), "", InitrdImage::from_bytes("big.img", rd))); },
                 {"initrd big.img", "too big"});
}

TEST(BzImageLoad, RejectsInitrdAboveInitrdAddrMax) {
    Guest g(64 * kMiB);
    BzParams p;
    p.initrd_addr_max = 2 * kMiB - 1;  // below the kernel's init_size end (1 MiB + 1 MiB)
    p.init_size = 1 * kMiB;
    const auto rd = pattern(64 * 1024, 0);
    expect_error([&] { load_bzimage(g.mem, g.ram, images_for(make_bzimage(p), "", InitrdImage::from_bytes("rd", rd))); },
                 {"initrd rd", "initrd_addr_max"});
}

TEST(BzImageLoad, RejectsCmdlineLongerThanCmdlineSize) {
    Guest g(16 * kMiB);
    BzParams p;
    p.cmdline_size = 10;
    EXPECT_NO_THROW(load_bzimage(g.mem, g.ram, images_for(make_bzimage(p), std::string(10, 'a'))));
    expect_error([&] { load_bzimage(g.mem, g.ram, images_for(make_bzimage(p), std::string(11, 'a'))); },
                 {"/synthetic/bzImage", "command line is 11 bytes", "cmdline_size 10"});
}

TEST(BzImageLoad, RejectsCmdlineWithNul) {
    Guest g(16 * kMiB);
    expect_error([&] { load_bzimage(g.mem, g.ram, images_for(make_bzimage(), std::string("a\0b", 3))); }, {"NUL"});
}

}  // namespace
}  // namespace vmm::boot
