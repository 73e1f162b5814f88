// FrameWriter (devicemodel/uring/frame_writer.h) on a SOCK_SEQPACKET socketpair, with frames in
// two buffers (SENDMSG), in one (SEND) and both in one run: a run of frames
// goes out whole and in order; a full socket stops the run at the first frame it cannot take
// (nothing behind it is written, nothing is written twice); a frame the kernel refuses is that
// frame's error and the frames behind it still go out.
#include "devicemodel/uring/frame_writer.h"

#include "common/fd.h"
#include "devicemodel/virtio-net/net_backend.h"

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <unistd.h>

#include <sys/socket.h>
#include <sys/uio.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

namespace vmm::uring {
namespace {

// Which frames come in one buffer (header and payload together, as Linux's virtio-net hands
// them over: SEND) and which in two (SENDMSG): every run is tried with each.
enum class Buffers { Two, One, Mixed };

class FrameWriterTest : public ::testing::TestWithParam<Buffers> {
protected:
    void SetUp() override {
        int sv[2];
        ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        ours_ = Fd(sv[0]);
        peer_ = Fd(sv[1]);
        writer_ = FrameWriter::create(ours_.get(), FrameWriter::Kind::Sendmsg, FrameWriter::Backpressure::Possible, 16);
        if (!writer_) GTEST_SKIP() << "io_uring is not available here (the backends write frame by frame)";
    }
    bool one_buffer(std::size_t i) const { return GetParam() == Buffers::One || (GetParam() == Buffers::Mixed && i % 2 == 0); }
    // Frame i: a 12-byte header and a payload naming i, in two iovecs or (one_buffer) in one.
    void make_frames(std::size_t n, std::size_t payload = 64) {
        headers_.assign(n, std::string(12, 'h'));
        payloads_.clear();
        for (std::size_t i = 0; i < n; ++i) {
            std::string p = "frame-" + std::to_string(i) + "-";
            p.resize(payload, '.');
            payloads_.push_back(p);
        }
        iovs_.assign(n, {});
        for (std::size_t i = 0; i < n; ++i) {
            if (one_buffer(i)) {
                headers_[i] += payloads_[i];
                iovs_[i] = {{headers_[i].data(), headers_[i].size()}};
            } else {
                iovs_[i] = {{headers_[i].data(), headers_[i].size()}, {payloads_[i].data(), payloads_[i].size()}};
            }
        }
        frames_.clear();
        for (std::size_t i = 0; i < n; ++i) frames_.emplace_back(iovs_[i]);
        results_.assign(n, 12345);
    }
    // Every message waiting on the peer, as payload strings.
    std::vector<std::string> received() {
        std::vector<std::string> got;
        std::vector<char> buf(1 << 20);
        for (;;) {
            const ssize_t n = ::recv(peer_.get(), buf.data(), buf.size(), MSG_DONTWAIT);
            if (n < 0) break;
            got.emplace_back(buf.data() + 12, static_cast<std::size_t>(n) - 12);
        }
        return got;
    }

    Fd ours_, peer_;
    std::unique_ptr<FrameWriter> writer_;
    std::vector<std::string> headers_, payloads_;
    std::vector<std::vector<iovec>> iovs_;
    std::vector<std::span<const iovec>> frames_;
    std::vector<ssize_t> results_;
};

INSTANTIATE_TEST_SUITE_P(Buffers, FrameWriterTest, ::testing::Values(Buffers::Two, Buffers::One, Buffers::Mixed),
                         [](const ::testing::TestParamInfo<Buffers>& p) {
                             return p.param == Buffers::Two ? "TwoBuffersAFrame" : p.param == Buffers::One ? "OneBufferAFrame" : "Mixed";
                         });

TEST_P(FrameWriterTest, ARunLongerThanTheRingGoesOutWholeAndInOrder) {
    make_frames(40);  // the ring holds 16: three submissions
    const auto n = writer_->write(frames_, results_);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 40u);
    for (std::size_t i = 0; i < 40; ++i) EXPECT_EQ(results_[i], 12 + 64) << i;
    EXPECT_EQ(received(), payloads_);
}

TEST_P(FrameWriterTest, UnlinkedARunLongerThanTheRingGoesOutWholeAndInOrderToo) {
    writer_ = FrameWriter::create(ours_.get(), FrameWriter::Kind::Sendmsg, FrameWriter::Backpressure::None, 16);
    ASSERT_TRUE(writer_);
    EXPECT_FALSE(writer_->linked());
    make_frames(40);
    const auto n = writer_->write(frames_, results_);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 40u);
    for (std::size_t i = 0; i < 40; ++i) EXPECT_EQ(results_[i], 12 + 64) << i;
    EXPECT_EQ(received(), payloads_);
    EXPECT_FALSE(writer_->linked()) << "nothing was refused: still unlinked";
}

TEST_P(FrameWriterTest, AFullSocketStopsTheRunAtTheFirstFrameItCannotTake) {
    const int small = 4096;
    ASSERT_EQ(::setsockopt(ours_.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    make_frames(200, 1000);
    const auto n = writer_->write(frames_, results_);
    ASSERT_TRUE(n);
    ASSERT_GT(*n, 0u);
    ASSERT_LT(*n, 200u) << "a 4 KiB send buffer cannot hold 200 KB";
    for (std::size_t i = *n; i < 200; ++i) EXPECT_EQ(results_[i], 12345) << "frame " << i << " has no result";
    auto got = received();
    ASSERT_EQ(got.size(), *n);
    // The rest, after the peer read: in order, none twice.
    std::size_t at = *n;
    for (int tries = 0; at < 200 && tries < 1000; ++tries) {
        const auto more = writer_->write(std::span(frames_).subspan(at), std::span(results_).subspan(at));
        ASSERT_TRUE(more);
        at += *more;
        for (auto& g : received()) got.push_back(std::move(g));
    }
    ASSERT_EQ(at, 200u);
    EXPECT_EQ(got, payloads_);
}

TEST_P(FrameWriterTest, ARefusedFrameIsItsOwnErrorAndTheFramesBehindItGoOut) {
    make_frames(10);
    // Frame 4 is larger than a socket may ever send in one message: EMSGSIZE.
    std::string huge(8 << 20, 'x');
    iovs_[4].back() = {huge.data(), huge.size()};
    frames_[4] = iovs_[4];
    const auto n = writer_->write(frames_, results_);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 10u);
    EXPECT_EQ(results_[4], -EMSGSIZE);
    std::vector<std::string> want = payloads_;
    want.erase(want.begin() + 4);
    for (std::size_t i = 0; i < 10; ++i) {
        if (i == 4) continue;
        EXPECT_EQ(results_[i], 12 + 64) << i;
    }
    EXPECT_EQ(received(), want);
}

TEST_P(FrameWriterTest, AClosedPeerIsAnErrorNotASignal) {
    peer_ = Fd();
    make_frames(3);
    const auto n = writer_->write(frames_, results_);  // SIGPIPE would end the test binary here
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 3u);
    for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(results_[i], -EPIPE) << i;
}

// An fd said never to be full that refuses one frame for now and takes the next. A one-page
// pipe holding 4000 bytes does that: a 200-byte write does not fit the rest of the page and
// there is no second page (EAGAIN), a 50-byte write is merged into the page. Unlinked, the
// refused frame must not be sent later, behind the frame that went: it is dropped (its result
// -EAGAIN) and the writer links its submissions from then on, so the next such pair stops at
// its first frame and writes nothing.
TEST(FrameWriterUnlinkedTest, AFrameRefusedWhileALaterOneWentIsDroppedAndTheWriterLinksFromThenOn) {
    int p[2];
    ASSERT_EQ(::pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    Fd rd(p[0]), wr(p[1]);
    if (::fcntl(wr.get(), F_SETPIPE_SZ, 4096) != 4096) GTEST_SKIP() << "cannot make a one-page pipe here";
    const std::string fill(4000, 'f');
    ASSERT_EQ(::write(wr.get(), fill.data(), fill.size()), 4000);
    auto w = FrameWriter::create(wr.get(), FrameWriter::Kind::Writev, FrameWriter::Backpressure::None, 8);
    if (!w) GTEST_SKIP() << "io_uring is not available here";
    EXPECT_FALSE(w->linked());

    std::string big(200, 'B'), small(50, 's');
    iovec vb{big.data(), big.size()}, vs{small.data(), small.size()};
    std::vector<std::span<const iovec>> frames{{&vb, 1}, {&vs, 1}};
    std::vector<ssize_t> results(2, 12345);
    const auto n = w->write(frames, results);
    if (!n) GTEST_SKIP() << "this kernel's pipe refuses io_uring writes with RWF_NOWAIT: " << w->why_spent();
    EXPECT_EQ(*n, 2u);
    EXPECT_EQ(results[0], -EAGAIN) << "the frame that did not fit is dropped";
    EXPECT_EQ(results[1], 50);
    EXPECT_TRUE(w->linked());

    std::string big2(200, 'C'), small2(40, 't');
    iovec vb2{big2.data(), big2.size()}, vs2{small2.data(), small2.size()};
    std::vector<std::span<const iovec>> frames2{{&vb2, 1}, {&vs2, 1}};
    results.assign(2, 12345);
    const auto n2 = w->write(frames2, results);
    ASSERT_TRUE(n2);
    EXPECT_EQ(*n2, 0u) << "linked: the refused frame stops the one behind it (which would have fit)";
    EXPECT_EQ(results[0], 12345);
    EXPECT_EQ(results[1], 12345);

    std::string got(8192, '\0');
    const ssize_t r = ::read(rd.get(), got.data(), got.size());
    ASSERT_GE(r, 0);
    got.resize(static_cast<std::size_t>(r));
    EXPECT_EQ(got, fill + small) << "the pipe holds the fill and the small frame, nothing else";
}

// On a file-like fd a frame in one buffer goes as a WRITE, one in several as a WRITEV (the ring
// allows both): a run mixing them arrives whole and in order, each frame's result its length.
TEST(FrameWriterFileTest, OneBufferAndManyBufferFramesGoOutWholeAndInOrder) {
    int p[2];
    ASSERT_EQ(::pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
    Fd rd(p[0]), wr(p[1]);
    auto w = FrameWriter::create(wr.get(), FrameWriter::Kind::Writev, FrameWriter::Backpressure::None, 8);
    if (!w) GTEST_SKIP() << "io_uring is not available here";
    std::string a = "one-buffer|", b1 = "two-", b2 = "buffers|", c = "one-again|";
    iovec va{a.data(), a.size()}, vb[2] = {{b1.data(), b1.size()}, {b2.data(), b2.size()}}, vc{c.data(), c.size()};
    std::vector<std::span<const iovec>> frames{{&va, 1}, {vb, 2}, {&vc, 1}};
    std::vector<ssize_t> results(3, 12345);
    const auto n = w->write(frames, results);
    if (!n) GTEST_SKIP() << "this kernel's pipe refuses io_uring writes with RWF_NOWAIT: " << w->why_spent();
    EXPECT_EQ(*n, 3u);
    EXPECT_EQ(results[0], static_cast<ssize_t>(a.size()));
    EXPECT_EQ(results[1], static_cast<ssize_t>(b1.size() + b2.size()));
    EXPECT_EQ(results[2], static_cast<ssize_t>(c.size()));
    std::string got(256, '\0');
    const ssize_t r = ::read(rd.get(), got.data(), got.size());
    ASSERT_GE(r, 0);
    got.resize(static_cast<std::size_t>(r));
    EXPECT_EQ(got, a + b1 + b2 + c);
}

// A pty refuses RWF_NOWAIT (EOPNOTSUPP), as a tap does on Linux 6.1: the writer says so and
// writes nothing; a backend then writes frame by frame, every frame, in order.
struct PtyPair {
    Fd master, slave;
    PtyPair() {
        int m = -1, s = -1;
        if (::openpty(&m, &s, nullptr, nullptr, nullptr) == 0) {
            master = Fd(m);
            slave = Fd(s);
            termios t{};
            ::tcgetattr(s, &t);
            ::cfmakeraw(&t);
            ::tcsetattr(s, TCSANOW, &t);
            ::fcntl(m, F_SETFL, ::fcntl(m, F_GETFL) | O_NONBLOCK);
        }
    }
    std::string read_slave() {
        std::string got;
        char buf[4096];
        for (;;) {
            pollfd p{slave.get(), POLLIN, 0};
            if (::poll(&p, 1, 200) != 1) break;
            const ssize_t n = ::read(slave.get(), buf, sizeof buf);
            if (n <= 0) break;
            got.append(buf, static_cast<std::size_t>(n));
        }
        return got;
    }
};

TEST(FrameWriterFallbackTest, AnFdThatRefusesNowaitIsReportedAndNothingIsWritten) {
    PtyPair pty;
    ASSERT_TRUE(pty.master) << "openpty";
    auto w = FrameWriter::create(pty.master.get(), FrameWriter::Kind::Writev, FrameWriter::Backpressure::Possible, 8);
    if (!w) GTEST_SKIP() << "io_uring is not available here";
    std::string a = "first-", b = "second";
    iovec va{a.data(), a.size()}, vb{b.data(), b.size()};
    std::vector<std::span<const iovec>> frames{{&va, 1}, {&vb, 1}};
    std::vector<ssize_t> results(2, 12345);
    const auto n = w->write(frames, results);
    if (n) GTEST_SKIP() << "this kernel's pty takes RWF_NOWAIT: nothing to fall back from";
    EXPECT_STREQ(w->why_spent(), "the fd refuses RWF_NOWAIT");
    EXPECT_EQ(pty.read_slave(), "") << "nothing was written";
    EXPECT_FALSE(w->write(frames, results)) << "a spent writer stays spent";
}

class PtyBackend : public virtio_net::NetBackend {
public:
    explicit PtyBackend(int fd) : fd_(fd) { write_batches_with_io_uring(fd, false); }
    std::string description() const override { return "pty"; }
    int fd() const override { return fd_; }
    ssize_t read(std::span<const iovec>) override { return -EAGAIN; }
    ssize_t write(std::span<const iovec> iov) override {
        const ssize_t n = ::writev(fd_, iov.data(), static_cast<int>(iov.size()));
        return n < 0 ? -errno : n;
    }

private:
    int fd_;
};

TEST(FrameWriterFallbackTest, ABackendFallsBackToOneWritePerFrameAndLosesNothing) {
    PtyPair pty;
    ASSERT_TRUE(pty.master) << "openpty";
    PtyBackend backend(pty.master.get());
    if (!backend.writes_in_batches()) GTEST_SKIP() << "io_uring is not available here";
    std::vector<std::string> payloads;
    std::vector<iovec> iovs;
    for (int i = 0; i < 5; ++i) payloads.push_back("<" + std::to_string(i) + ">");
    for (auto& p : payloads) iovs.push_back({p.data(), p.size()});
    std::vector<std::span<const iovec>> frames;
    for (auto& v : iovs) frames.emplace_back(&v, 1);
    std::vector<ssize_t> results(5, 12345);
    EXPECT_EQ(backend.write_batch(frames, results), 5u);
    if (backend.writes_in_batches()) GTEST_SKIP() << "this kernel's pty takes RWF_NOWAIT: nothing to fall back from";
    EXPECT_STREQ(backend.why_not_in_batches(), "the fd refuses RWF_NOWAIT");
    for (std::size_t i = 0; i < 5; ++i) EXPECT_EQ(results[i], 3) << i;
    EXPECT_EQ(pty.read_slave(), "<0><1><2><3><4>");
    // and again, straight to write() this time
    EXPECT_EQ(backend.write_batch(frames, results), 5u);
    EXPECT_EQ(pty.read_slave(), "<0><1><2><3><4>");
}

}  // namespace
}  // namespace vmm::uring
