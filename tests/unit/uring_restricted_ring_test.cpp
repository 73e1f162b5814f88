// A restricted ring (devicemodel/uring/restricted_ring.h), as virtio-blk's io_uring engine makes
// it: it reads, writes and fsyncs its registered files by index, and refuses everything else
// (other opcodes, a raw fd, other flags), since seccomp does not see what a ring does.
#include "devicemodel/uring/restricted_ring.h"

#include "common/fd.h"
#include "tests/support/test_paths.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

namespace vmm::uring {
namespace {

#if __has_include(<liburing.h>)

class RestrictedRingTest : public ::testing::Test {
protected:
    void SetUp() override {
        path_ = dir_ + "/disk";
        disk_ = Fd(::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
        ASSERT_TRUE(disk_) << std::strerror(errno);
        ASSERT_EQ(::pwrite(disk_.get(), "0123456789abcdef", 16, 0), 16);
        other_ = Fd(::open("/etc/hostname", O_RDONLY | O_CLOEXEC));
        const int files[] = {disk_.get()};
        const std::uint8_t ops[] = {IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC, IORING_OP_NOP};
        const int r = setup_restricted_ring(ring_, 8, files, ops);
        if (r == -ENOSYS || r == -EPERM || r == -EINVAL)
            GTEST_SKIP() << "this kernel cannot make a restricted io_uring: " << std::strerror(-r);
        ASSERT_EQ(r, 0) << std::strerror(-r);
        ready_ = true;
    }
    void TearDown() override {
        if (ready_) close_restricted_ring(ring_);
        std::filesystem::remove_all(dir_);
    }
    // Submits the one SQE `prep` fills, returns its completion's res.
    template <typename Prep>
    int run(Prep prep) {
        io_uring_sqe* s = io_uring_get_sqe(&ring_);
        EXPECT_NE(s, nullptr);
        prep(s);
        EXPECT_EQ(io_uring_submit(&ring_), 1);
        io_uring_cqe* cqe = nullptr;
        EXPECT_EQ(io_uring_wait_cqe(&ring_, &cqe), 0);
        const int res = cqe->res;
        io_uring_cqe_seen(&ring_, cqe);
        return res;
    }

    std::string dir_ = test::make_temp_dir("restricted-ring");
    std::string path_;
    Fd disk_, other_;
    io_uring ring_{};
    bool ready_ = false;
};

TEST_F(RestrictedRingTest, ReadsWritesAndSyncsTheRegisteredFileByIndex) {
    char buf[8] = {};
    iovec v{buf, sizeof buf};
    EXPECT_EQ(run([&](io_uring_sqe* s) {
                  io_uring_prep_readv(s, 0, &v, 1, 4);
                  io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE);
              }),
              8);
    EXPECT_EQ(std::string(buf, 8), "456789ab");
    char out[4] = {'W', 'X', 'Y', 'Z'};
    iovec w{out, sizeof out};
    EXPECT_EQ(run([&](io_uring_sqe* s) {
                  io_uring_prep_writev(s, 0, &w, 1, 0);
                  io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE);
              }),
              4);
    EXPECT_EQ(run([&](io_uring_sqe* s) {
                  io_uring_prep_fsync(s, 0, IORING_FSYNC_DATASYNC);
                  io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE);
              }),
              0);
    char back[4] = {};
    ASSERT_EQ(::pread(disk_.get(), back, 4, 0), 4);
    EXPECT_EQ(std::string(back, 4), "WXYZ");
}

TEST_F(RestrictedRingTest, RefusesRawFdsOtherOpcodesAndRegistering) {
    char buf[8] = {};
    iovec v{buf, sizeof buf};
    // A file descriptor by number (not a registered index): another file of the process.
    ASSERT_TRUE(other_);
    EXPECT_EQ(run([&](io_uring_sqe* s) { io_uring_prep_readv(s, other_.get(), &v, 1, 0); }), -EACCES);
    // Opening a file through the ring.
    EXPECT_EQ(run([&](io_uring_sqe* s) {
                  io_uring_prep_openat(s, AT_FDCWD, "/etc/hostname", O_RDONLY, 0);
                  io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE);
              }),
              -EACCES);
    // Other I/O opcodes on the registered file itself (READ: not in this ring's list).
    EXPECT_EQ(run([&](io_uring_sqe* s) {
                  io_uring_prep_fallocate(s, 0, 0, 0, 4096);
                  io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE);
              }),
              -EACCES);
    EXPECT_EQ(run([&](io_uring_sqe* s) {
                  io_uring_prep_read(s, 0, buf, sizeof buf, 0);
                  io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE);
              }),
              -EACCES);
    // A flag beside IOSQE_FIXED_FILE and IOSQE_IO_LINK: handing the op to the kernel's workers.
    EXPECT_EQ(run([&](io_uring_sqe* s) {
                  io_uring_prep_readv(s, 0, &v, 1, 0);
                  io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE | IOSQE_ASYNC);
              }),
              -EACCES);
    // No more files can be registered.
    const int more[] = {other_.get()};
    EXPECT_LT(io_uring_register_files_update(&ring_, 0, more, 1), 0);
    // Still serving what is allowed: a NOP (the engine wakes its thread with one), a read.
    EXPECT_EQ(run([&](io_uring_sqe* s) {
                  io_uring_prep_nop(s);
                  io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE);
              }),
              0);
    EXPECT_EQ(run([&](io_uring_sqe* s) {
                  io_uring_prep_readv(s, 0, &v, 1, 0);
                  io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE);
              }),
              8);
}

#else

TEST(RestrictedRingTest, NeedsLiburing) { GTEST_SKIP() << "built without liburing (liburing-dev)"; }

#endif

}  // namespace
}  // namespace vmm::uring
