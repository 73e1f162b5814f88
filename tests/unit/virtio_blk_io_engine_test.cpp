// The virtio-blk I/O engines on their own (devicemodel/virtio-blk/io_engine.h): where an op's
// completion runs. The io_uring engine is entered by the submitting thread, so a read the page
// cache answers completes there, before submit() returns (no hand-off); what the ring runs in
// the background (a flush) completes on the engine's own thread.
#include "devicemodel/virtio-blk/io_engine.h"

#include "common/fd.h"
#include "tests/support/test_paths.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <future>
#include <string>
#include <tuple>
#include <vector>

namespace vmm::virtio_blk {
namespace {

int tid() { return static_cast<int>(::syscall(SYS_gettid)); }

std::string thread_name() {
    char name[16] = {};
    ::prctl(PR_GET_NAME, name);
    return name;
}

class UringEngineTest : public ::testing::Test {
protected:
    void SetUp() override {
        path_ = dir_ + "/disk";
        disk_ = Fd(::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
        ASSERT_TRUE(disk_) << std::strerror(errno);
        std::vector<char> bytes(kBlocks * kBlock);
        for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i / kBlock + 1);
        ASSERT_EQ(::pwrite(disk_.get(), bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
        engine_ = make_uring_engine(disk_.get(), 16, "eng-io");
        if (!engine_) GTEST_SKIP() << "io_uring is not available here (the engine falls back to the thread pool)";
    }
    void TearDown() override {
        engine_.reset();
        std::filesystem::remove_all(dir_);
    }

    static constexpr std::size_t kBlock = 4096, kBlocks = 8;
    std::string dir_ = test::make_temp_dir("uring-engine");
    std::string path_;
    Fd disk_;
    std::unique_ptr<IoEngine> engine_;
};

TEST_F(UringEngineTest, ReadsTheCacheAnswersCompleteOnTheSubmittingThreadBeforeSubmitReturns) {
    std::array<std::array<char, kBlock>, kBlocks> bufs{};
    std::array<int, kBlocks> result{}, done_tid{};
    result.fill(1);
    std::vector<IoOp> ops;
    std::array<std::function<void(int)>, kBlocks> on_done;
    for (std::size_t i = 0; i < kBlocks; ++i) {
        IoOp op;
        op.kind = IoOp::Kind::Read;
        op.offset = (kBlocks - 1 - i) * kBlock;  // backwards, for good measure
        op.iov.push_back({bufs[i].data(), kBlock});
        on_done[i] = [&, i](int r) {
            result[i] = r;
            done_tid[i] = tid();
        };
        op.done = IoCompletion::of(on_done[i]);
        ops.push_back(std::move(op));
    }
    const std::size_t capacity = ops.capacity();
    engine_->submit(ops);
    // The engine took every op and left the caller's vector for its next batch.
    EXPECT_TRUE(ops.empty());
    EXPECT_EQ(ops.capacity(), capacity);
    // The file was just written: every block is in the page cache, io_uring_enter completes
    // each read inline. Nothing waited: done already ran, here.
    for (std::size_t i = 0; i < kBlocks; ++i) {
        EXPECT_EQ(result[i], 0) << "read " << i;
        EXPECT_EQ(done_tid[i], tid()) << "read " << i << " completed on another thread";
        EXPECT_EQ(bufs[i][0], static_cast<char>(kBlocks - i)) << "read " << i;
        EXPECT_EQ(bufs[i][kBlock - 1], static_cast<char>(kBlocks - i)) << "read " << i;
    }

    // A second batch runs in the slots the first one's ops left: each op has its own offset,
    // buffer and callback, and no callback of the first batch runs again.
    std::array<std::array<char, kBlock>, kBlocks> again{};
    std::array<int, kBlocks> calls{};
    std::array<std::function<void(int)>, kBlocks> on_again;
    for (std::size_t i = 0; i < kBlocks; ++i) {
        IoOp op;
        op.kind = IoOp::Kind::Read;
        op.offset = i * kBlock;
        op.iov.push_back({again[i].data(), kBlock});
        on_again[i] = [&, i](int r) {
            EXPECT_EQ(r, 0) << "read " << i;
            ++calls[i];
        };
        op.done = IoCompletion::of(on_again[i]);
        ops.push_back(std::move(op));
    }
    result.fill(1);
    engine_->submit(ops);
    for (std::size_t i = 0; i < kBlocks; ++i) {
        EXPECT_EQ(calls[i], 1) << "read " << i;
        EXPECT_EQ(result[i], 1) << "the first batch's callback " << i << " ran again";
        EXPECT_EQ(again[i][0], static_cast<char>(i + 1)) << "read " << i;
        EXPECT_EQ(again[i][kBlock - 1], static_cast<char>(i + 1)) << "read " << i;
    }
}

TEST_F(UringEngineTest, AFlushCompletesOnTheEngineThreadAndAShortReadIsFinished) {
    std::promise<std::tuple<int, std::string, bool>> flushed;
    std::atomic<bool> submit_returned{false};
    IoOp flush;
    flush.kind = IoOp::Kind::Flush;
    std::function<void(int)> on_flush = [&](int r) { flushed.set_value({r, thread_name(), submit_returned.load()}); };
    flush.done = IoCompletion::of(on_flush);
    std::vector<IoOp> ops;
    ops.push_back(std::move(flush));
    const std::string submitter = thread_name();
    engine_->submit(ops);
    submit_returned = true;
    EXPECT_TRUE(ops.empty());
    auto f = flushed.get_future();
    ASSERT_EQ(f.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    const auto [r, name, after_submit] = f.get();
    EXPECT_EQ(r, 0);
    // io_uring runs fsync in its workers: what completes after submit() has reaped is reaped by
    // the engine thread. A worker can be done before submit() reaps (an fsync with nothing to
    // write, on tmpfs say): then submit() itself completes it, on the submitter's thread, and
    // never after it returned.
    if (name != "eng-io") {
        EXPECT_EQ(name, submitter);
        EXPECT_FALSE(after_submit) << "completed on the submitter's thread after submit() returned";
    }

    // A read past the end of the file: the ring returns 0 bytes, the engine says EIO (the
    // host file shrank under the guest), and the engine still serves the next op.
    std::array<char, kBlock> buf{};
    int past = 1, next = 1;
    std::vector<IoOp> more(2);
    more[0].kind = more[1].kind = IoOp::Kind::Read;
    more[0].offset = kBlocks * kBlock;
    more[0].iov.push_back({buf.data(), kBlock});
    std::function<void(int)> on_past = [&](int res) { past = res; }, on_next = [&](int res) { next = res; };
    more[0].done = IoCompletion::of(on_past);
    more[1].offset = 0;
    more[1].iov.push_back({buf.data(), kBlock});
    more[1].done = IoCompletion::of(on_next);
    engine_->submit(more);
    EXPECT_TRUE(more.empty());
    EXPECT_EQ(past, -EIO);
    EXPECT_EQ(next, 0);
    EXPECT_EQ(buf[0], 1);
}

// run_io_sync (the serving thread's own reads and writes): a one-buffer op in one system call,
// an op in several buffers, a transfer the end of the file cuts short, a failing descriptor.
class RunIoSyncTest : public ::testing::Test {
protected:
    void SetUp() override {
        disk_ = Fd(::open((dir_ + "/disk").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
        ASSERT_TRUE(disk_) << std::strerror(errno);
        std::vector<char> bytes(kSize);
        for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7 + 1);
        ASSERT_EQ(::pwrite(disk_.get(), bytes.data(), bytes.size(), 0), static_cast<ssize_t>(bytes.size()));
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    static char expected(std::size_t at) { return static_cast<char>(at * 7 + 1); }

    static constexpr std::size_t kSize = 16384;
    std::string dir_ = test::make_temp_dir("run-io-sync");
    Fd disk_;
};

TEST_F(RunIoSyncTest, AOneBufferReadMovesItAllAndLeavesTheOpDone) {
    std::array<char, 4096> buf{};
    IoOp op;
    op.kind = IoOp::Kind::Read;
    op.offset = 4096 + 512;
    op.iov.push_back({buf.data(), buf.size()});
    EXPECT_EQ(run_io_sync(disk_.get(), op), 0);
    EXPECT_TRUE(op.iov.empty());
    EXPECT_EQ(op.offset, 4096u + 512 + 4096);
    for (std::size_t i : {std::size_t{0}, std::size_t{1}, buf.size() - 1}) EXPECT_EQ(buf[i], expected(4096 + 512 + i)) << i;
}

TEST_F(RunIoSyncTest, AWriteInThreeBuffersLandsInOrder) {
    std::array<char, 512> a{}, b{}, c{};
    a.fill('a');
    b.fill('b');
    c.fill('c');
    IoOp op;
    op.kind = IoOp::Kind::Write;
    op.offset = 1024;
    op.iov.push_back({a.data(), a.size()});
    op.iov.push_back({b.data(), 100});
    op.iov.push_back({c.data(), c.size()});
    EXPECT_EQ(run_io_sync(disk_.get(), op), 0);
    EXPECT_TRUE(op.iov.empty());
    std::array<char, 1124> back{};
    ASSERT_EQ(::pread(disk_.get(), back.data(), back.size(), 1024), static_cast<ssize_t>(back.size()));
    EXPECT_EQ(back[0], 'a');
    EXPECT_EQ(back[511], 'a');
    EXPECT_EQ(back[512], 'b');
    EXPECT_EQ(back[611], 'b');
    EXPECT_EQ(back[612], 'c');
    EXPECT_EQ(back[1123], 'c');
}

TEST_F(RunIoSyncTest, AReadTheEndOfTheFileCutsShortIsAnIoErrorAfterTheBytesThereAre) {
    // One buffer over the end: the first call returns the 512 bytes before it, the next none
    // (the host file shrank under the guest): EIO, with what was read in place.
    std::array<char, 4096> buf{};
    buf.fill('x');
    IoOp op;
    op.kind = IoOp::Kind::Read;
    op.offset = kSize - 512;
    op.iov.push_back({buf.data(), buf.size()});
    EXPECT_EQ(run_io_sync(disk_.get(), op), -EIO);
    EXPECT_EQ(op.offset, kSize);
    EXPECT_EQ(buf[0], expected(kSize - 512));
    EXPECT_EQ(buf[511], expected(kSize - 1));
    EXPECT_EQ(buf[512], 'x');
    ASSERT_EQ(op.iov.size(), 1u);
    EXPECT_EQ(op.iov[0].iov_base, buf.data() + 512);
    EXPECT_EQ(op.iov[0].iov_len, buf.size() - 512);
}

TEST_F(RunIoSyncTest, AFailingDescriptorIsItsErrno) {
    std::array<char, 512> buf{};
    IoOp op;
    op.kind = IoOp::Kind::Write;
    op.iov.push_back({buf.data(), buf.size()});
    const Fd read_only(::open((dir_ + "/disk").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(read_only);
    EXPECT_EQ(run_io_sync(read_only.get(), op), -EBADF);
    EXPECT_EQ(op.offset, 0u);
}

}  // namespace
}  // namespace vmm::virtio_blk
