// hypervisor/proc_stats.h on /proc trees the test makes: a process's children, and the one
// that is pid 1 of a pid namespace of its own (an anchor under its keeper).
#include "hypervisor/proc_stats.h"
#include "tests/support/test_paths.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace vmm::hv {
namespace {

namespace fs = std::filesystem;

class ProcStatsTest : public ::testing::Test {
protected:
    void TearDown() override { fs::remove_all(root_); }
    void process(int pid, const std::string& nspid, const std::string& children) {
        const std::string dir = root_ + "/" + std::to_string(pid);
        fs::create_directories(dir + "/task/" + std::to_string(pid));
        std::ofstream(dir + "/status") << "Name:\tvmm-anchor\nTgid:\t" << pid << "\nNSpid:\t" << nspid << "\nPPid:\t1\n";
        std::ofstream(dir + "/task/" + std::to_string(pid) + "/children") << children;
    }
    std::string root_ = test::make_temp_dir("procstats");
};

TEST_F(ProcStatsTest, TheChildThatIsPidOneOfItsOwnNamespace) {
    process(100, "100", "101 ");
    process(101, "101\t1", "");
    EXPECT_EQ(read_process_children(100, root_), (std::vector<int>{101}));
    EXPECT_EQ(pid_namespace_child(100, root_), 101);
    EXPECT_EQ(pid_namespace_child(101, root_), std::nullopt) << "no children";
}

TEST_F(ProcStatsTest, AnOrdinaryChildOrSeveralAreNoPidNamespace) {
    process(200, "200", "201 ");
    process(201, "201", "");  // the host's namespace
    EXPECT_EQ(pid_namespace_child(200, root_), std::nullopt);
    process(300, "300", "301 302 ");
    process(301, "301\t1", "");
    process(302, "302\t1", "");
    EXPECT_EQ(pid_namespace_child(300, root_), std::nullopt) << "a keeper has one child";
    process(400, "400", "401 ");
    process(401, "401\t7", "");  // in a namespace, but not its init
    EXPECT_EQ(pid_namespace_child(400, root_), std::nullopt);
    EXPECT_EQ(pid_namespace_child(999, root_), std::nullopt) << "gone";
    EXPECT_TRUE(read_process_children(999, root_).empty());
}

}  // namespace
}  // namespace vmm::hv
