// common/mapping.h, Mapping::guest_ram: guest RAM is private anonymous memory that a fork
// leaves out; with RamPages::Transparent it is 2 MiB-aligned, advised MADV_HUGEPAGE, and (where
// the kernel's THP is not "never") touched memory comes in 2 MiB pages. Read back from the
// kernel's own account of the mapping (/proc/self/smaps), not from what the code asked for.
#include "common/mapping.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

namespace vmm {
namespace {

constexpr std::size_t kMiB = std::size_t{1} << 20;

struct SmapsEntry {
    std::string perms, vm_flags;
    std::size_t anon_huge_kib = 0;
    bool found = false;
};

// The smaps entry of the mapping that starts at addr.
SmapsEntry smaps_of(const void* addr) {
    std::ifstream f("/proc/self/smaps");
    SmapsEntry e;
    std::string line;
    const auto want = reinterpret_cast<std::uintptr_t>(addr);
    bool in = false;
    while (std::getline(f, line)) {
        std::istringstream ls(line);
        std::string first;
        ls >> first;
        if (const auto dash = first.find('-'); dash != std::string::npos && first.back() != ':') {
            if (in) break;
            in = std::stoull(first.substr(0, dash), nullptr, 16) == want;
            if (in) {
                e.found = true;
                ls >> e.perms;
            }
        } else if (in && first == "AnonHugePages:") {
            ls >> e.anon_huge_kib;
        } else if (in && first == "VmFlags:") {
            e.vm_flags = line.substr(line.find(':') + 1) + " ";
        }
    }
    return e;
}

bool has_flag(const SmapsEntry& e, const char* flag) { return e.vm_flags.find(std::string(" ") + flag + " ") != std::string::npos; }

std::string thp_mode() {
    std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
    std::string s;
    std::getline(f, s);
    return s;
}

TEST(GuestRamTest, SmallPagesArePrivateAndLeftOutOfAFork) {
    Mapping ram = Mapping::guest_ram(8 * kMiB, Mapping::RamPages::Small);
    const SmapsEntry e = smaps_of(ram.data());
    ASSERT_TRUE(e.found);
    EXPECT_EQ(e.perms, "rw-p");
    EXPECT_TRUE(has_flag(e, "dc")) << "VmFlags:" << e.vm_flags;  // MADV_DONTFORK
    EXPECT_FALSE(has_flag(e, "hg")) << "VmFlags:" << e.vm_flags;
    EXPECT_EQ(ram.size(), 8 * kMiB);
    // Where the kernel has THP at all, small pages are asked for explicitly (MADV_NOHUGEPAGE),
    // so a host whose THP setting is "always" does not give this RAM 2 MiB pages.
    if (!thp_mode().empty()) {
        EXPECT_TRUE(has_flag(e, "nh")) << "VmFlags:" << e.vm_flags;
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
    SmapsEntry e = smaps_of(ram.data());
    ASSERT_TRUE(e.found);
    EXPECT_EQ(e.perms, "rw-p");
    EXPECT_TRUE(has_flag(e, "hg")) << "VmFlags:" << e.vm_flags;  // MADV_HUGEPAGE
    EXPECT_TRUE(has_flag(e, "dc")) << "VmFlags:" << e.vm_flags;

    const std::string mode = thp_mode();
    if (mode.find("[never]") != std::string::npos || mode.empty())
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
