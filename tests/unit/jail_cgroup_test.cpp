// cgroup v2 placement against a fake cgroupfs tree (plain directories and files): the files
// written, the controllers enabled, the checks; and the limits' arithmetic.
#include "jail/cgroup.h"

#include "common/error.h"
#include "tests/support/test_paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace vmm::jail {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string slurp(const std::string& path) {
    std::ifstream f(path);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
}

class CgroupTest : public ::testing::Test {
protected:
    void SetUp() override {
        fs::create_directories(root_ + "/vmmd/domains");
        std::ofstream(root_ + "/vmmd/domains/cgroup.controllers") << "cpuset cpu io memory pids\n";
    }
    void TearDown() override { fs::remove_all(root_); }
    // A process of the fake /proc (proc): its cgroup and its children.
    void process(int pid, const std::string& cgroup, const std::string& children) {
        const std::string dir = proc + "/" + std::to_string(pid);
        fs::create_directories(dir + "/task/" + std::to_string(pid));
        std::ofstream(dir + "/cgroup") << "0::" << cgroup << "\n";
        std::ofstream(dir + "/task/" + std::to_string(pid) + "/children") << children;
    }
    std::string root_ = test::make_temp_dir("jailcg");
    std::string proc = root_ + "/proc";
};

TEST_F(CgroupTest, PlacesThePidWithCpuAndMemoryLimits) {
    CgroupLimits limits;
    limits.cpus = 1.5;
    limits.memory_max = 300u << 20;
    const std::string path = place_in_cgroup(root_, "vmmd/domains", "web", 4242, limits);
    EXPECT_EQ(path, root_ + "/vmmd/domains/web");
    EXPECT_EQ(slurp(root_ + "/vmmd/domains/cgroup.subtree_control"), "+cpu +memory");
    EXPECT_EQ(slurp(path + "/cpu.max"), "150000 100000");
    EXPECT_EQ(slurp(path + "/memory.max"), std::to_string(300u << 20));
    EXPECT_EQ(slurp(path + "/cgroup.procs"), "4242");
    // cgroupfs removes a cgroup's interface files with it; a plain directory needs them gone.
    EXPECT_THROW(remove_cgroup(path), std::system_error);
    for (const char* f : {"cpu.max", "memory.max", "cgroup.procs"}) fs::remove(path + "/" + f);
    remove_cgroup(path);
    EXPECT_FALSE(fs::exists(path));
    EXPECT_NO_THROW(remove_cgroup(path)) << "already gone is fine";
}

// A keeper placed after it forked (vmm-anchor --jail-pid-ns): its child follows it; a child in
// the cgroup already and one that is gone are left alone. A fake /proc and cgroup tree.
TEST_F(CgroupTest, ChildrenFollowTheirParentIntoItsCgroup) {
    process(100, "/vmmd/domains/web", "101 102 103 ");
    process(101, "/vmmd", "");                // forked before its parent was moved
    process(102, "/vmmd/domains/web", "");    // forked after: there already
    fs::create_directories(root_ + "/vmmd/domains/web");  // 103 is gone
    EXPECT_EQ(move_children_along(100, root_, proc), 1);
    EXPECT_EQ(slurp(root_ + "/vmmd/domains/web/cgroup.procs"), "101");
    EXPECT_EQ(move_children_along(102, root_, proc), 0) << "no children";
    EXPECT_EQ(move_children_along(999, root_, proc), 0) << "a process that is gone";
    // A cgroup that cannot take it is an error naming the file.
    process(200, "/vmmd/domains/missing", "101 ");
    try {
        move_children_along(200, root_, proc);
        FAIL() << "no error";
    } catch (const std::system_error& e) {
        EXPECT_THAT(e.what(), HasSubstr("/vmmd/domains/missing/cgroup.procs"));
    }
}

// Under systemd the keeper is moved by PID 1 after it answered: the children follow once the
// keeper is there, and not before; a keeper that never gets there is an error in time.
TEST_F(CgroupTest, ChildrenFollowOnceTheParentIsInTheScope) {
    const std::string scope = "/machine.slice/vmm-web.scope";
    fs::create_directories(root_ + scope);
    process(100, "/system.slice/vmmd.service", "101 ");
    process(101, "/system.slice/vmmd.service", "");
    std::thread systemd([&] {  // PID 1's start job, a little later
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
        std::ofstream(proc + "/100/cgroup.new") << "0::" << scope << "\n";
        fs::rename(proc + "/100/cgroup.new", proc + "/100/cgroup");  // never seen half-written
    });
    EXPECT_EQ(move_children_along_once_in(100, scope, root_, std::chrono::seconds(5), proc), 1);
    systemd.join();
    EXPECT_EQ(slurp(root_ + scope + "/cgroup.procs"), "101");
    process(200, "/system.slice/vmmd.service", "201 ");
    try {
        move_children_along_once_in(200, scope, root_, std::chrono::milliseconds(20), proc);
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("still in /system.slice/vmmd.service"));
    }
}

TEST_F(CgroupTest, NoLimitsWriteMax) {
    const std::string path = place_in_cgroup(root_, "vmmd/domains", "free", 7, {});
    EXPECT_EQ(slurp(path + "/cpu.max"), "max 100000");
    EXPECT_EQ(slurp(path + "/memory.max"), "max");
}

TEST_F(CgroupTest, MissingControllerIsNamed) {
    std::ofstream(root_ + "/vmmd/domains/cgroup.controllers") << "cpu pids\n";
    try {
        place_in_cgroup(root_, "vmmd/domains", "web", 1, {});
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("\"memory\" is not available"));
    }
    EXPECT_FALSE(fs::exists(root_ + "/vmmd/domains/web"));
}

TEST_F(CgroupTest, DomainNamesCannotEscapeTheParent) {
    for (const char* bad : {"", ".", "..", "../x", "a/b"})
        EXPECT_THROW(place_in_cgroup(root_, "vmmd/domains", bad, 1, {}), Error) << bad;
}

TEST_F(CgroupTest, ReadsTheV2EntryOfProcPidCgroup) {
    fs::create_directories(root_ + "/proc/99");
    std::ofstream(root_ + "/proc/99/cgroup") << "1:name=systemd:/old\n0::/system.slice/vmmd.service\n";
    EXPECT_EQ(cgroup_of(99, root_ + "/proc"), "/system.slice/vmmd.service");
    std::ofstream(root_ + "/proc/99/cgroup") << "1:name=systemd:/old\n";
    EXPECT_THROW(cgroup_of(99, root_ + "/proc"), Error);
    EXPECT_FALSE(cgroup_of(::getpid()).empty()) << "this process has a v2 entry on a v2 or hybrid host";
}

TEST(CgroupLimitsTest, CpuMaxAndMemoryOverhead) {
    EXPECT_EQ(cpu_max_value({std::nullopt, 0.25, 100000}), "25000 100000");
    EXPECT_EQ(cpu_max_value({std::nullopt, 0.001, 100000}), "1000 100000") << "the kernel's 1 ms minimum";
    EXPECT_THROW(cpu_max_value({std::nullopt, 0.0, 100000}), Error);
    EXPECT_THROW(cpu_max_value({std::nullopt, -1.0, 100000}), Error);
    constexpr std::uint64_t kMiB = 1 << 20;
    // 1 GiB, 2 vCPUs: RAM + 64 MiB + 2 * 8 MiB + 2% of RAM
    EXPECT_EQ(anchor_memory_limit(1024, 2), 1024 * kMiB + 64 * kMiB + 16 * kMiB + 1024 * kMiB / 50);
    EXPECT_GT(anchor_memory_limit(16, 1), 16 * kMiB);
}

}  // namespace
}  // namespace vmm::jail
