#include "run/state_dir.h"

#include "common/error.h"
#include "tests/support/test_paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace vmm::run {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class StateDirTest : public ::testing::Test {
protected:
    void TearDown() override { fs::remove_all(root_); }
    std::string root_ = test::make_temp_dir("statedir");
};

TEST_F(StateDirTest, CreatesPrivateDirectoryWithPidAndConsAndRemovesThem) {
    std::string path;
    {
        StateDir d(root_, "kvm", "dom1");
        path = d.path();
        EXPECT_EQ(path, root_ + "/kvm/dom1");
        struct stat st{};
        ASSERT_EQ(::stat(path.c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 0777, 0700u);
        d.write_pid(4242);
        EXPECT_EQ(read_pid_file(path), 4242);
        EXPECT_FALSE(fs::exists(path + "/pid.tmp"));
        d.link_console("/dev/pts/77");
        EXPECT_EQ(fs::read_symlink(path + "/cons"), "/dev/pts/77");
    }
    EXPECT_FALSE(fs::exists(path)) << "the anchor removes what it created";
}

TEST_F(StateDirTest, SecondOwnerIsRefusedWithThePid) {
    StateDir first(root_, "kvm", "dom1");
    first.write_pid(1234);
    try {
        StateDir second(root_, "kvm", "dom1");
        FAIL() << "a second anchor must not take a live domain's directory";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("already running"));
        EXPECT_THAT(e.what(), HasSubstr("1234"));
    }
    EXPECT_EQ(read_pid_file(first.path()), 1234) << "the refused anchor must not clobber the pid file";
}

TEST_F(StateDirTest, StaleDirectoryIsCleanedButForeignFilesSurvive) {
    const std::string dir = root_ + "/kvm/dom2";
    fs::create_directories(dir);
    std::ofstream(dir + "/pid") << "999999\n";
    fs::create_symlink("/dev/pts/1", dir + "/cons");
    std::ofstream(dir + "/pillar-notes") << "not ours";
    {
        StateDir d(root_, "kvm", "dom2");
        EXPECT_FALSE(fs::exists(dir + "/pid"));
        EXPECT_FALSE(fs::is_symlink(dir + "/cons"));
        d.write_pid(5);
    }
    EXPECT_TRUE(fs::exists(dir + "/pillar-notes")) << "never delete what the anchor did not create";
    EXPECT_FALSE(fs::exists(dir + "/pid"));
}

TEST_F(StateDirTest, RejectsNamesThatAreNotOneComponent) {
    EXPECT_THROW(StateDir(root_, "kvm", "../etc"), Error);
    EXPECT_THROW(StateDir(root_, "kvm", ".."), Error);
    EXPECT_THROW(StateDir(root_, "kvm", ""), Error);
}

}  // namespace
}  // namespace vmm::run
