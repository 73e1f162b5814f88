// check_manifest_paths (manifest/path_policy.h) on a real directory tree: files under an
// allowed directory pass; a sibling directory, a ".." escape and a symlink leading out are
// refused with the field named; an empty list allows all; a relative allow-dir is an error.
#include "manifest/path_policy.h"
#include "tests/support/test_paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace vmm {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

DiskSpec disk(const std::string& path) {
    DiskSpec d;
    d.path = path;
    return d;
}

ConsoleSpec socket_console(const std::string& path) {
    ConsoleSpec c;
    c.kind = "socket";
    c.path = path;
    return c;
}

class PathPolicyTest : public ::testing::Test {
protected:
    void SetUp() override {
        root_ = test::make_temp_dir("path-policy");
        fs::create_directories(root_ + "/images/sub");
        fs::create_directories(root_ + "/imagesX");
        fs::create_directories(root_ + "/secret");
        for (const char* f : {"/images/k.bin", "/images/sub/disk.img", "/imagesX/k.bin", "/secret/disk.img"})
            std::ofstream(root_ + f) << "x";
        fs::create_symlink(root_ + "/secret/disk.img", root_ + "/images/link.img");
        m_.kernel = root_ + "/images/k.bin";
    }
    void TearDown() override { fs::remove_all(root_); }
    std::string refused_field(const DomainManifest& m) {
        try {
            check_manifest_paths(m, {root_ + "/images"});
        } catch (const ManifestError& e) {
            EXPECT_THAT(e.what(), HasSubstr("outside the allowed directories"));
            return e.field;
        }
        return "";
    }

    std::string root_;
    DomainManifest m_;
};

TEST_F(PathPolicyTest, FilesUnderAnAllowedDirectoryPass) {
    m_.disks.push_back(disk(root_ + "/images/sub/disk.img"));
    EXPECT_EQ(refused_field(m_), "");
    EXPECT_NO_THROW(check_manifest_paths(m_, {root_ + "/secret", root_ + "/images/"}));
}

TEST_F(PathPolicyTest, EscapesAreRefusedNamingTheField) {
    DomainManifest sibling = m_;
    sibling.kernel = root_ + "/imagesX/k.bin";  // a prefix of the name is not the directory
    EXPECT_EQ(refused_field(sibling), "kernel");
    DomainManifest dotdot = m_;
    dotdot.disks.push_back(disk(root_ + "/images/../secret/disk.img"));
    EXPECT_EQ(refused_field(dotdot), "disks[0].path");
    DomainManifest link = m_;
    link.disks.push_back(disk(root_ + "/images/sub/disk.img"));
    link.disks.push_back(disk(root_ + "/images/link.img"));
    EXPECT_EQ(refused_field(link), "disks[1].path");
    DomainManifest sock = m_;
    sock.consoles.push_back(socket_console(root_ + "/secret/c.sock"));
    EXPECT_EQ(refused_field(sock), "consoles[0].path");
    DomainManifest initrd = m_;
    initrd.initrd = "/etc/shadow";
    EXPECT_EQ(refused_field(initrd), "initrd");
}

TEST_F(PathPolicyTest, EmptyListAllowsAllAndARelativeDirIsAnError) {
    m_.kernel = "/etc/hostname";
    EXPECT_NO_THROW(check_manifest_paths(m_, {}));
    try {
        check_manifest_paths(m_, {"images"});
        FAIL();
    } catch (const ManifestError& e) {
        EXPECT_EQ(e.field, "--allow-dir");
    }
}

}  // namespace
}  // namespace vmm
