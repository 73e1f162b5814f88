// Parses and loads a real distribution bzImage named by $VMM_TEST_BZIMAGE (e.g. Debian's
// /boot/vmlinuz-6.1.0-*-cloud-amd64). Skipped with the reason when it is not set or missing.
#include "boot/bzimage.h"
#include "boot/kernel_loader.h"
#include "tests/support/fakes.h"
#include "tests/support/test_paths.h"
#include "x86/memory_layout.h"

#include <gtest/gtest.h>

#include <asm/bootparam.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace vmm::boot {
namespace {

constexpr std::uint64_t kMiB = 1024 * 1024;


TEST(RealBzImage, ParsesAndLoads) {
    const std::string path = test::real_bzimage_path();
    if (path.empty())
        GTEST_SKIP() << "no real bzImage: run scripts/fetch-test-kernel (or set VMM_TEST_BZIMAGE)";

    const auto ram = x86::ram_layout(256 * kMiB);
    test::FakeGuestMemory mem({{0, ram.low_size}});
    const auto image = read_whole_file(path, "kernel", ram.total());
    const BzImageInfo info = parse_bzimage(image);
    EXPECT_GE(info.protocol, 0x020c);
    EXPECT_TRUE(info.relocatable);
    EXPECT_TRUE(info.xloadflags & XLF_KERNEL_64);
    EXPECT_TRUE(info.supports_64bit_entry());
    EXPECT_TRUE(info.loadflags & LOADED_HIGH);
    EXPECT_GE(info.setup_sects, 4);
    EXPECT_GT(info.kernel_size, 1 * kMiB);
    EXPECT_GE(info.init_size, info.kernel_size);
    EXPECT_GE(info.cmdline_size, 255u);
    EXPECT_GE(info.kernel_alignment, 0x200000u);
    EXPECT_GE(info.pref_address, kMiB);
    EXPECT_GT(info.header_end, 0x250u);
    EXPECT_EQ(detect_format(image), "bzImage");

    std::vector<std::uint8_t> rd(3 * kMiB + 123);
    for (std::size_t i = 0; i < rd.size(); ++i) rd[i] = static_cast<std::uint8_t>(i);
    BootImages im;
    im.kernel_name = path;
    im.kernel = image;
    im.cmdline = "console=ttyS0 earlyprintk=serial panic=-1";
    im.initrd = InitrdImage::from_bytes("initrd.img", rd);
    const BootSetup s = load_bzimage(mem, ram, im);
    EXPECT_EQ(s.kernel_size, info.kernel_size);
    EXPECT_EQ(s.cpu.rip, s.kernel_addr + 0x200);
    EXPECT_EQ(s.kernel_addr % info.kernel_alignment, 0u);
    EXPECT_GE(s.initrd_addr, s.kernel_addr + info.init_size);
    EXPECT_LE(s.initrd_addr + s.initrd_size, ram.low_size);

    const auto bp = mem.memory().read_obj<boot_params>(x86::kBootParamsAddr);
    ASSERT_TRUE(bp);
    EXPECT_EQ(bp->hdr.version, info.protocol);
    EXPECT_EQ(bp->hdr.ramdisk_image, s.initrd_addr);
    EXPECT_EQ(bp->hdr.ramdisk_size, rd.size());
    EXPECT_EQ(bp->hdr.type_of_loader, 0xff);
    // The payload's first bytes are startup_32 of the compressed kernel, copied as-is.
    std::uint64_t first = 0;
    std::memcpy(&first, image.data() + info.kernel_offset, sizeof first);
    EXPECT_EQ(mem.memory().read_obj<std::uint64_t>(s.kernel_addr), first);
    // The anchor's path (KernelFile: headers read, payload pread into guest RAM) puts the very
    // same bytes there.
    test::FakeGuestMemory direct({{0, ram.low_size}});
    const KernelFile file = KernelFile::open(path, ram.total());
    EXPECT_LT(file.head.size(), image.size());
    BootImages fim = file.images(path);
    fim.cmdline = im.cmdline;
    const BootSetup fs = load_bzimage(direct, ram, fim);
    EXPECT_EQ(fs.kernel_addr, s.kernel_addr);
    EXPECT_EQ(fs.kernel_size, s.kernel_size);
    std::vector<std::uint8_t> got(info.kernel_size);
    ASSERT_TRUE(direct.memory().read(fs.kernel_addr, got.data(), got.size()));
    EXPECT_TRUE(std::equal(got.begin(), got.end(), image.begin() + static_cast<std::ptrdiff_t>(info.kernel_offset)))
        << "the payload read from the file differs from the file's bytes";
    std::printf("protocol %u.%u, setup_sects %u, payload %zu bytes, init_size %u, pref_address 0x%llx, loaded at "
                "0x%llx, initrd at 0x%llx\n",
                info.protocol >> 8, info.protocol & 0xff, info.setup_sects, info.kernel_size, info.init_size,
                static_cast<unsigned long long>(info.pref_address), static_cast<unsigned long long>(s.kernel_addr),
                static_cast<unsigned long long>(s.initrd_addr));
}

}  // namespace
}  // namespace vmm::boot
