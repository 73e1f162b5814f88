// load_kernel: reads the files, picks the format by header, reports unusable inputs clearly.
#include "boot/bzimage.h"
#include "boot/flat_binary.h"
#include "boot/kernel_loader.h"
#include "boot/multiboot.h"
#include "common/error.h"
#include "tests/fixtures/boot/synthetic_images.h"
#include "tests/support/fakes.h"
#include "x86/memory_layout.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace vmm::boot {
namespace {

using ::testing::HasSubstr;

constexpr std::uint64_t kMiB = 1024 * 1024;

class LoadKernel : public ::testing::Test {
protected:
    LoadKernel() : ram(x86::ram_layout(16 * kMiB)), mem({{0, ram.low_size}}) {
        dir = std::filesystem::path(::testing::TempDir()) /
              ("boot_detect_" + std::to_string(::getpid()) + "_" +
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::create_directories(dir);
    }
    ~LoadKernel() override { std::filesystem::remove_all(dir); }

    std::string write(const std::string& name, const std::vector<std::uint8_t>& bytes) {
        const auto path = (dir / name).string();
        std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                                    static_cast<std::streamsize>(bytes.size()));
        return path;
    }

    x86::RamLayout ram;
    test::FakeGuestMemory mem;
    std::filesystem::path dir;
};

TEST(DetectFormat, ByHeader) {
    EXPECT_EQ(detect_format(test::make_bzimage()), "bzImage");
    EXPECT_EQ(detect_format(test::make_multiboot_elf()), "multiboot");
    EXPECT_EQ(detect_format(test::make_multiboot_aout()), "multiboot");
    EXPECT_EQ(detect_format(std::vector<std::uint8_t>(4096, 0x90)), "");
    EXPECT_EQ(detect_format({}), "");
    auto no_flag = test::make_bzimage();
    no_flag[0x1fe] = 0;
    EXPECT_EQ(detect_format(no_flag), "");
}

TEST_F(LoadKernel, PicksBzImage) {
    KernelSpec spec{write("bzImage", test::make_bzimage()), write("initrd", {1, 2, 3, 4, 5}), "console=ttyS0", {}};
    const BootSetup s = load_kernel(mem, ram, spec);
    EXPECT_EQ(s.format, "bzImage");
    EXPECT_EQ(s.cpu.rip, 0x100200u);
    EXPECT_EQ(s.initrd_size, 5u);
    EXPECT_EQ(mem.memory().read_obj<std::uint8_t>(s.initrd_addr + 4), 5);
}

TEST_F(LoadKernel, ExplicitFlatWinsOverAMultibootHeader) {
    KernelSpec spec{write("mb.elf", test::make_multiboot_elf()), "", "", FlatSpec{0x100000, 0x100000, EntryMode::Long64}};
    const BootSetup s = load_kernel(mem, ram, spec);
    EXPECT_EQ(s.format, "flat");
    EXPECT_EQ(s.cpu.rip, 0x100000u);
    EXPECT_NE(s.cpu.rax, 0x2badb002u);
}

TEST_F(LoadKernel, MultibootDetectedWithoutFlat) {
    KernelSpec spec{write("mb.elf", test::make_multiboot_elf()), "", "", {}};
    const BootSetup s = load_kernel(mem, ram, spec);
    EXPECT_EQ(s.format, "multiboot");
    EXPECT_EQ(s.cpu.rax, 0x2badb002u);
}

TEST_F(LoadKernel, PicksFlatForRawBinaryWhenGiven) {
    KernelSpec spec{write("raw.bin", {0xf4, 0xf4}), "", "", FlatSpec{0x100000, 0x100000, EntryMode::Protected32}};
    const BootSetup s = load_kernel(mem, ram, spec);
    EXPECT_EQ(s.format, "flat");
    EXPECT_EQ(s.cpu.rip, 0x100000u);
}

TEST_F(LoadKernel, UnknownFormatWithoutFlatIsAClearError) {
    const auto path = write("raw.bin", std::vector<std::uint8_t>(1024, 0x90));
    try {
        load_kernel(mem, ram, {path, "", "", {}});
        ADD_FAILURE() << "no exception";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr(path));
        EXPECT_THAT(e.what(), HasSubstr("not a bzImage or multiboot image"));
        EXPECT_THAT(e.what(), HasSubstr("\"flat\""));
    }
}

TEST_F(LoadKernel, BadMultibootChecksumIsReported) {
    test::ElfParams p;
    p.bad_checksum = true;
    const auto path = write("mb.elf", test::make_multiboot_elf(p));
    try {
        load_kernel(mem, ram, {path, "", "", {}});
        ADD_FAILURE() << "no exception";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr(path));
        EXPECT_THAT(e.what(), HasSubstr("bad checksum"));
    }
}

// Images larger than the head the loader reads for headers (kKernelHeadBytes): the rest goes
// from the file straight into guest RAM, and guest RAM ends up holding exactly what loading
// the same bytes from memory gives, in every format.
TEST_F(LoadKernel, LargeImagesLoadFromTheFileAsFromMemory) {
    test::BzParams bz;
    bz.payload = 1024 * 1024;
    bz.init_size = 2 * 1024 * 1024;
    test::AoutParams aout;
    aout.file_size = 300 * 1024;
    std::vector<std::uint8_t> flat(200 * 1024 + 5);
    for (std::size_t i = 0; i < flat.size(); ++i) flat[i] = static_cast<std::uint8_t>(i * 7 + (i >> 12));
    struct Case {
        const char* name;
        std::vector<std::uint8_t> bytes;
        std::optional<FlatSpec> flat;
        std::uint64_t at, len;  // a guest range that holds the image's bytes
    };
    const std::vector<Case> cases = {
        {"bzImage", test::make_bzimage(bz), std::nullopt, 0x100000, bz.payload},
        {"aout", test::make_multiboot_aout(aout), std::nullopt, aout.load_addr, aout.file_size},
        {"flat", flat, FlatSpec{0x100000, 0x100000, EntryMode::Protected32}, 0x100000, flat.size()},
    };
    for (const auto& c : cases) {
        ASSERT_GT(c.bytes.size(), kKernelHeadBytes) << c.name;
        test::FakeGuestMemory from_file({{0, ram.low_size}}), from_bytes({{0, ram.low_size}});
        const BootSetup a = load_kernel(from_file, ram, {write(c.name, c.bytes), "", "", c.flat});
        BootImages im;
        im.kernel_name = c.name;
        im.kernel = c.bytes;
        const BootSetup b = c.flat ? load_flat(from_bytes, ram, im, *c.flat)
                            : std::string(c.name) == "bzImage" ? load_bzimage(from_bytes, ram, im)
                                                               : load_multiboot(from_bytes, ram, im);
        EXPECT_EQ(a.format, b.format) << c.name;
        EXPECT_EQ(a.kernel_size, b.kernel_size) << c.name;
        std::vector<std::uint8_t> got(c.len), want(c.len);
        ASSERT_TRUE(from_file.memory().read(c.at, got.data(), got.size()));
        ASSERT_TRUE(from_bytes.memory().read(c.at, want.data(), want.size()));
        EXPECT_TRUE(got == want) << c.name << ": guest RAM differs";
        // and it is the file's: its last byte where it belongs
        const std::uint64_t last_off = std::string(c.name) == "bzImage" ? c.bytes.size() - 1 - (bz.setup_sects + 1) * 512
                                                                        : c.bytes.size() - 1;
        EXPECT_EQ(got[last_off], c.bytes.back()) << c.name;
    }
}

// A kernel file that shrinks after it was opened (replaced in place while the domain starts):
// an error naming it, not a guest with a truncated kernel.
TEST_F(LoadKernel, AKernelThatShrinksWhileLoadingIsAnError) {
    std::vector<std::uint8_t> big(256 * 1024, 0x90);
    const auto path = write("shrinks.bin", big);
    const KernelFile k = KernelFile::open(path, ram.total());
    std::filesystem::resize_file(path, 100 * 1024);
    BootImages im = k.images(path);
    try {
        load_flat(mem, ram, im, FlatSpec{0x100000, 0x100000, EntryMode::Protected32});
        ADD_FAILURE() << "no exception";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr(path));
        EXPECT_THAT(e.what(), HasSubstr("shrank while being read"));
    }
}

TEST_F(LoadKernel, MissingKernelNamesThePath) {
    const auto path = (dir / "does-not-exist").string();
    try {
        load_kernel(mem, ram, {path, "", "", {}});
        ADD_FAILURE() << "no exception";
    } catch (const std::system_error& e) {
        EXPECT_THAT(e.what(), HasSubstr(path));
        EXPECT_EQ(e.code().value(), ENOENT);
    }
}

TEST_F(LoadKernel, MissingInitrdNamesThePath) {
    const auto path = (dir / "no-initrd").string();
    try {
        load_kernel(mem, ram, {write("bzImage", test::make_bzimage()), path, "", {}});
        ADD_FAILURE() << "no exception";
    } catch (const std::system_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("initrd"));
        EXPECT_THAT(e.what(), HasSubstr(path));
    }
}

TEST_F(LoadKernel, KernelFileLargerThanRam) {
    const auto path = write("huge", std::vector<std::uint8_t>(17 * kMiB, 0));
    try {
        load_kernel(mem, ram, {path, "", "", {}});
        ADD_FAILURE() << "no exception";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr(path));
        EXPECT_THAT(e.what(), HasSubstr("larger than guest RAM"));
    }
}

TEST_F(LoadKernel, DirectoryIsNotAKernel) {
    EXPECT_THROW(load_kernel(mem, ram, {dir.string(), "", "", {}}), Error);
}

}  // namespace
}  // namespace vmm::boot
