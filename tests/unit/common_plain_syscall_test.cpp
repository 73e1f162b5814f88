// common/plain_syscall.h: the devices' read/write calls through syscall(2). Each moves the same
// bytes as glibc's wrapper would, at the offset asked: beyond 4 GiB too (the vector calls pass
// the offset as two halves), and a failure is -1 with errno, as the wrappers report it.
#include "common/fd.h"
#include "common/plain_syscall.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>

namespace vmm {
namespace {

class PlainSyscallTest : public ::testing::Test {
protected:
    void SetUp() override {
        char path[] = "/tmp/vmm-plain-syscall-XXXXXX";
        file_ = Fd(::mkstemp(path));
        ASSERT_TRUE(file_) << "mkstemp";
        ::unlink(path);
    }
    // What glibc's own pread sees at `off`.
    std::string at(off_t off, std::size_t len) {
        std::string s(len, '\0');
        EXPECT_EQ(::pread(file_.get(), s.data(), len, off), static_cast<ssize_t>(len));
        return s;
    }
    Fd file_;
};

// Past 4 GiB and at an odd offset, so a lost high half or a truncated offset lands elsewhere.
constexpr off_t kFar = (off_t{5} << 32) + 12345;

TEST_F(PlainSyscallTest, PreadAndPwriteMoveTheBytesAtTheOffset) {
    ASSERT_EQ(sys::pwrite(file_.get(), "far away", 8, kFar), 8);
    EXPECT_EQ(at(kFar, 8), "far away");
    char back[8] = {};
    ASSERT_EQ(sys::pread(file_.get(), back, sizeof back, kFar), 8);
    EXPECT_EQ(std::string(back, 8), "far away");
    EXPECT_EQ(at(kFar & 0xffffffff, 8), std::string(8, '\0'));  // the low half alone: nothing there
}

TEST_F(PlainSyscallTest, TheVectorCallsTakeA64BitOffset) {
    char a[] = "vec", b[] = "tor";
    iovec out[2] = {{a, 3}, {b, 3}};
    ASSERT_EQ(sys::pwritev(file_.get(), out, 2, kFar), 6);
    EXPECT_EQ(at(kFar, 6), "vector");
    char x[2] = {}, y[4] = {};
    iovec in[2] = {{x, 2}, {y, 4}};
    ASSERT_EQ(sys::preadv(file_.get(), in, 2, kFar), 6);
    EXPECT_EQ(std::string(x, 2) + std::string(y, 4), "vector");
    char z[6] = {};
    iovec one{z, 6};
    ASSERT_EQ(sys::preadv2(file_.get(), &one, 1, kFar, 0), 6);
    EXPECT_EQ(std::string(z, 6), "vector");
    // Its flags reach the kernel: an unknown one is refused.
    errno = 0;
    EXPECT_EQ(sys::preadv2(file_.get(), &one, 1, kFar, 0x40000000), -1);
    EXPECT_EQ(errno, EOPNOTSUPP);
}

TEST_F(PlainSyscallTest, ReadWriteAndTheirVectorsOnAStream) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    Fd left(sv[0]), right(sv[1]);
    ASSERT_EQ(sys::write(left.get(), "one", 3), 3);
    char a[] = "tw", b[] = "o!";
    iovec out[2] = {{a, 2}, {b, 2}};
    ASSERT_EQ(sys::writev(left.get(), out, 2), 4);
    char got[8] = {};
    ASSERT_EQ(sys::read(right.get(), got, sizeof got), 3);  // one message per read
    EXPECT_EQ(std::string(got, 3), "one");
    char p[1] = {}, q[7] = {};
    iovec in[2] = {{p, 1}, {q, 7}};
    ASSERT_EQ(sys::readv(right.get(), in, 2), 4);
    EXPECT_EQ(std::string(p, 1) + std::string(q, 3), "two!");
}

TEST_F(PlainSyscallTest, AFailureIsMinusOneWithErrno) {
    char c;
    errno = 0;
    EXPECT_EQ(sys::read(-1, &c, 1), -1);
    EXPECT_EQ(errno, EBADF);
    errno = 0;
    EXPECT_EQ(sys::pread(file_.get(), &c, 1, -1), -1);
    EXPECT_EQ(errno, EINVAL);
    Fd ro(::open("/proc/self/status", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(ro);
    errno = 0;
    EXPECT_EQ(sys::write(ro.get(), "x", 1), -1);
    EXPECT_EQ(errno, EBADF);
}

}  // namespace
}  // namespace vmm
