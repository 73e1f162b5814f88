// common/mapping.h, Mapping::guest_ram: guest RAM is private anonymous memory that a fork
// leaves out; with RamPages::Transparent it is 2 MiB-aligned, advised MADV_HUGEPAGE, and (where
// the kernel's THP is not "never") touched memory comes in 2 MiB pages. Read back from the
// kernel's own account of the mapping (/proc/self/smaps), not from what the code asked for.
#include "common/mapping.h"
#include "tests/support/proc_status.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>

namespace vmm {
namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

// The smaps entry of the mapping that starts at addr (start 0: none).
test::SmapsMapping smaps_of(const void* addr) {
    for (const test::SmapsMapping& m : test::proc_smaps("self"))
        if (m.start == reinterpret_cast<std::uintptr_t>(addr)) return m;
    return {};
}

TEST(GuestRamTest, SmallPagesArePrivateAndLeftOutOfAFork) {
    Mapping ram = Mapping::guest_ram(8 * kMiB, Mapping::RamPages::Small);
    const test::SmapsMapping e = smaps_of(ram.data());
    ASSERT_NE(e.start, 0u) << "no mapping starts at the RAM";
    EXPECT_EQ(e.perms, "rw-p");
    EXPECT_TRUE(e.has_flag("dc")) << "VmFlags:" << e.vm_flags;  // MADV_DONTFORK
    EXPECT_FALSE(e.has_flag("hg")) << "VmFlags:" << e.vm_flags;
    EXPECT_EQ(ram.size(), 8 * kMiB);
    // Where the kernel has THP at all, small pages are asked for explicitly (MADV_NOHUGEPAGE),
    // so a host whose THP setting is "always" does not give this RAM 2 MiB pages.
    if (!test::thp_setting().empty()) {
        EXPECT_TRUE(e.has_flag("nh")) << "VmFlags:" << e.vm_flags;
        for (std::size_t off = 0; off < 8 * kMiB; off += 4096) ram.data()[off] = 1;
        EXPECT_EQ(smaps_of(ram.data()).anon_huge_kib, 0u);
    }

    // The child of a fork has no such mapping: its first touch faults.
    std::memset(ram.data(), 0x5a, 4096);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        ::signal(SIGSEGV, SIG_DFL);  // the fault kills the child, even where a sanitizer catches faults
        volatile std::uint8_t* p = ram.data();
        ::_exit(*p == 0x5a ? 1 : 2);  // SIGSEGV before this, if the mapping is left out
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) << "status " << status;
}

TEST(GuestRamTest, TransparentHugePagesAreAlignedAdvisedAndUsed) {
    int refused = -1;
    Mapping ram = Mapping::guest_ram(8 * kMiB + 4096, Mapping::RamPages::Transparent, &refused);
    if (refused != 0) GTEST_SKIP() << "this kernel refuses MADV_HUGEPAGE (" << std::strerror(refused) << "): no THP to test";
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(ram.data()) % (2 * kMiB), 0u);
    EXPECT_EQ(ram.size(), 8 * kMiB + 4096);
    test::SmapsMapping e = smaps_of(ram.data());
    ASSERT_NE(e.start, 0u) << "no mapping starts at the RAM";
    EXPECT_EQ(e.perms, "rw-p");
    EXPECT_TRUE(e.has_flag("hg")) << "VmFlags:" << e.vm_flags;  // MADV_HUGEPAGE
    EXPECT_TRUE(e.has_flag("dc")) << "VmFlags:" << e.vm_flags;

    const std::string mode = test::thp_setting();
    if (test::thp_off(mode))
        GTEST_SKIP() << "transparent huge pages are off on this host (" << (mode.empty() ? "no sysfs knob" : mode)
                     << "): the advice is set but no 2 MiB page can back it";
    // One write per 2 MiB: the fault of each allocates a whole huge page (unless memory is too
    // fragmented for one right now, which a freshly booted test machine is not).
    for (std::size_t off = 0; off < 8 * kMiB; off += 2 * kMiB) ram.data()[off] = 1;
    e = smaps_of(ram.data());
    EXPECT_GE(e.anon_huge_kib, 2048u) << "no 2 MiB page backs the touched RAM (THP: " << mode << ")";
}

}  // namespace
}  // namespace vmm
