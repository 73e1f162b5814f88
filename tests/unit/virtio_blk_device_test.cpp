// VirtioBlk (devicemodel/virtio-blk/virtio_blk.h) driven through tests/support/virtqueue_driver.h
// on a temporary backing file, with both I/O engines (io_uring when available, thread pool):
// every request type, read-only disks, capacity checks, hostile chains, interrupts and reset.
#include "devicemodel/virtio-blk/virtio_blk.h"
#include "common/error.h"
#include "devicemodel/uring/restricted_ring.h"

#include "tests/support/fakes.h"
#include "tests/support/virtqueue_driver.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <linux/virtio_blk.h>

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <functional>
#include <mutex>
#include <set>
#include <thread>
#include <numeric>
#include <tuple>

namespace vmm::virtio_blk {
namespace {

using Drv = test::VirtqueueDriver;
using virtio::feature_bit;

constexpr std::uint64_t kDiskSectors = 2048;  // 1 MiB
constexpr std::uint64_t kHdr = 0x8000, kStatus = 0x8800, kData = 0x10000;  // data: up to 512 KiB

std::uint8_t pattern_byte(std::uint64_t file_offset) { return static_cast<std::uint8_t>(file_offset * 7 + file_offset / 512); }

struct TempDisk {
    std::string path;
    TempDisk() {
        char tmpl[] = "/tmp/vmm-blk-XXXXXX";
        int fd = ::mkstemp(tmpl);
        if (fd < 0) throw std::runtime_error("mkstemp");
        std::vector<std::uint8_t> bytes(kDiskSectors * 512);
        for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = pattern_byte(i);
        if (::write(fd, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) throw std::runtime_error("write");
        ::close(fd);
        path = tmpl;
    }
    ~TempDisk() { ::unlink(path.c_str()); }
    std::vector<std::uint8_t> read(std::uint64_t off, std::size_t len) const {
        std::vector<std::uint8_t> out(len);
        std::ifstream f(path, std::ios::binary);
        f.seekg(static_cast<std::streamoff>(off));
        f.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(len));
        return out;
    }
    std::uint64_t size() const {
        struct stat st {};
        ::stat(path.c_str(), &st);
        return static_cast<std::uint64_t>(st.st_size);
    }
};

// Parameters: the io_uring engine (else the thread pool); adaptive polling on (the default,
// 32 µs) or off (poll_max 0). Every behaviour below must hold either way.
// The engines: the pool alone, io_uring alone, and the default split (reads on a ring, the rest
// on the pool).
enum class Engine { Threads, IoUring, Split };

// An interrupt that holds its caller inside notify_queue() until released.
struct HeldInterrupt : test::FakeVirtioInterrupt {
    void notify_queue(std::uint16_t queue) override {
        entered = true;
        while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        FakeVirtioInterrupt::notify_queue(queue);
    }
    std::atomic<bool> entered{false}, release{false};
};

class VirtioBlkDeviceTest : public ::testing::TestWithParam<std::tuple<Engine, bool>> {
protected:
    Engine engine() const { return std::get<0>(GetParam()); }
    bool io_uring() const { return engine() == Engine::IoUring; }
    bool polling() const { return std::get<1>(GetParam()); }

    void SetUp() override { open_device(false); }

    void open_device(bool read_only, std::uint64_t features = 0, const std::string& path = {}) {
        blk.reset();
        VirtioBlkOptions opts;
        opts.name = "blktest";
        opts.serial = "serial-0123456789abcdef";  // longer than 20 bytes: truncated
        opts.queue_size = 64;
        opts.use_io_uring = io_uring();
        opts.reads_on_io_uring = engine() == Engine::Split;
        opts.io_threads = 2;
        if (!polling()) opts.poll_max = std::chrono::nanoseconds{0};
        opts.on_thread_start = on_thread_start;
        blk = std::make_unique<VirtioBlk>(DiskImage::open({path.empty() ? disk.path : path, std::nullopt, read_only}), opts);
        irq = std::make_shared<test::FakeVirtioInterrupt>();
        drv = std::make_unique<Drv>(fake.memory(), 0x1000, 64);
        if (!features) features = feature_bit(virtio::kFeatureVersion1) | feature_bit(virtio::kFeatureIndirectDesc);
        blk->activate(fake.memory(), features, {drv->config()}, irq);
    }

    const GuestMemory& mem() const { return fake.memory(); }

    void write_header(std::uint32_t type, std::uint64_t sector, std::uint64_t at = kHdr) const {
        virtio_blk_outhdr hdr{type, 0, sector};
        mem().write(at, &hdr, sizeof hdr);
    }

    // Publishes `bufs`, kicks, and waits for the device to return the chain.
    virtio::VirtqUsedElem run(const std::vector<Drv::Buf>& bufs, bool indirect = false) {
        mem().write_obj<std::uint8_t>(kStatus, 0xee);
        const std::uint16_t before = drv->used_idx();
        if (indirect)
            drv->add_indirect_chain(bufs, 0x7000);
        else
            drv->add_chain(bufs);
        blk->queue_notify(0);
        EXPECT_TRUE(wait_used(static_cast<std::uint16_t>(before + 1)));
        auto got = drv->reclaim();
        EXPECT_EQ(got.size(), 1u);
        return got.empty() ? virtio::VirtqUsedElem{0xffff, 0xffff} : got[0];
    }
    bool wait_used(std::uint16_t idx) {
        return irq->wait_for([&] { return static_cast<std::int16_t>(drv->used_idx() - idx) >= 0 && blk->in_flight() == 0; });
    }
    std::uint8_t status() const { return *mem().read_obj<std::uint8_t>(kStatus); }

    // A standard 3-part request: header, data (direction by type), status.
    virtio::VirtqUsedElem request(std::uint32_t type, std::uint64_t sector, std::uint32_t len, bool indirect = false) {
        write_header(type, sector);
        std::vector<Drv::Buf> bufs{Drv::rd(kHdr, 16)};
        if (len) bufs.push_back(type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID ? Drv::wr(kData, len) : Drv::rd(kData, len));
        bufs.push_back(Drv::wr(kStatus, 1));
        return run(bufs, indirect);
    }

    // A new activation with a HeldInterrupt and `requests` 4 KiB reads, kicked; returns once the
    // device is inside notify_queue() for them (nullptr if it never got there).
    std::shared_ptr<HeldInterrupt> reads_with_held_interrupt(int requests) {
        blk->reset();
        auto held = std::make_shared<HeldInterrupt>();
        drv = std::make_unique<Drv>(fake.memory(), 0x1000, 64);
        blk->activate(fake.memory(), feature_bit(virtio::kFeatureVersion1) | feature_bit(virtio::kFeatureIndirectDesc),
                      {drv->config()}, held);
        for (int i = 0; i < requests; ++i) {
            write_header(VIRTIO_BLK_T_IN, 10 + static_cast<std::uint64_t>(i) * 8, 0x9000 + i * 16);
            drv->add_chain({Drv::rd(0x9000 + i * 16, 16), Drv::wr(kData + i * 4096, 4096), Drv::wr(0x9800 + i, 1)});
        }
        blk->queue_notify(0);
        if (!held->wait_for([&] { return held->entered.load(); })) return nullptr;
        return held;
    }

    TempDisk disk;
    test::FakeGuestMemory fake{{{0, 0x100000}}};
    std::function<void()> on_thread_start;  // for open_device
    std::unique_ptr<VirtioBlk> blk;
    std::shared_ptr<test::FakeVirtioInterrupt> irq;
    std::unique_ptr<Drv> drv;
};

// The start hook (the anchor's jail gate) runs first on every thread the device makes: the
// dispatcher and each engine thread, under their names; while it holds them, a kicked request
// is not served, and the device serves it once they are let go.
TEST_P(VirtioBlkDeviceTest, EveryDeviceThreadRunsTheStartHookFirst) {
    std::mutex mu;
    std::condition_variable cv;
    bool released = false;
    std::multiset<std::string> names;
    on_thread_start = [&] {
        char name[16] = {};
        ::pthread_getname_np(::pthread_self(), name, sizeof name);
        std::unique_lock lock(mu);
        names.insert(name);
        cv.notify_all();
        cv.wait(lock, [&] { return released; });
    };
    open_device(false);
    const std::string engine_name = blk->io_engine_name();
    const std::multiset<std::string> want =
        engine_name == "io_uring"                 ? std::multiset<std::string>{"blktest-q", "blktest-io"}
        : engine_name == "io_uring reads, threads" ? std::multiset<std::string>{"blktest-q", "blktest-rd", "blktest-io0", "blktest-io1"}
                                                   : std::multiset<std::string>{"blktest-q", "blktest-io0", "blktest-io1"};
    {
        std::unique_lock lock(mu);
        ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return names.size() == want.size(); }));
        EXPECT_EQ(names, want);
    }
    // Held at the hook: a kicked read is not served.
    write_header(VIRTIO_BLK_T_IN, 0);
    drv->add_chain({Drv::rd(kHdr, 16), Drv::wr(kData, 512), Drv::wr(kStatus, 1)});
    blk->queue_notify(0);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(drv->used_idx(), 0);
    {
        std::lock_guard lock(mu);
        released = true;
    }
    cv.notify_all();
    EXPECT_TRUE(wait_used(1));
    EXPECT_EQ(names.size(), want.size()) << "once per thread";
    blk.reset();  // joins every thread (before the hook's state goes)
}

// A device destroyed while its threads are still held at the hook: the destructor waits for
// the hook to let them go (whoever blocks them must release them first) and then joins them.
TEST_P(VirtioBlkDeviceTest, ThreadsHeldAtTheStartHookJoinOnceReleased) {
    std::atomic<bool> release{false};
    std::atomic<int> entered{0};
    on_thread_start = [&] {
        ++entered;
        while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    };
    open_device(false);
    std::thread releaser([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
        release = true;
    });
    blk.reset();
    releaser.join();
    EXPECT_GE(entered.load(), 2);
}

TEST_P(VirtioBlkDeviceTest, ConfigSpaceAndFeatures) {
    if (engine() == Engine::Threads) {
        EXPECT_STREQ(blk->io_engine_name(), "threads");
    }
#if __has_include(<liburing.h>)
    if (engine() != Engine::Threads) {
        // Where this kernel makes restricted rings, the engine runs on one (no silent fallback).
        struct io_uring probe {};
        const int files[] = {::open(disk.path.c_str(), O_RDONLY | O_CLOEXEC)};
        const std::uint8_t ops[] = {IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_READ, IORING_OP_WRITE, IORING_OP_FSYNC,
                                    IORING_OP_NOP};
        if (uring::setup_restricted_ring(probe, 4, files, ops) == 0) {
            io_uring_queue_exit(&probe);
            EXPECT_STREQ(blk->io_engine_name(), io_uring() ? "io_uring" : "io_uring reads, threads");
        }
        ::close(files[0]);
    }
#endif
    virtio_blk_config cfg{};
    blk->read_config(0, {reinterpret_cast<std::uint8_t*>(&cfg), sizeof cfg});
    EXPECT_EQ(cfg.capacity, kDiskSectors);
    EXPECT_EQ(cfg.blk_size, 512u);
    EXPECT_EQ(cfg.seg_max, 62u);
    EXPECT_GT(cfg.max_discard_seg, 0u);
    std::uint8_t past[8];
    std::memset(past, 0xff, sizeof past);
    blk->read_config(sizeof cfg - 4, past);
    EXPECT_EQ(past[4], 0) << "bytes past the config space read as zero";
    blk->read_config(4096, past);
    EXPECT_EQ(past[0], 0);
    const std::uint64_t f = blk->device_features();
    for (unsigned bit : std::initializer_list<unsigned>{VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_DISCARD,
                         VIRTIO_BLK_F_WRITE_ZEROES, virtio::kFeatureVersion1, virtio::kFeatureEventIdx, virtio::kFeatureIndirectDesc})
        EXPECT_TRUE(f & feature_bit(bit)) << bit;
    EXPECT_FALSE(f & feature_bit(VIRTIO_BLK_F_RO));
    EXPECT_EQ(blk->device_type(), virtio::DeviceType::Block);
    EXPECT_EQ(blk->num_queues(), 1);
}

TEST_P(VirtioBlkDeviceTest, ReadReturnsFileContents) {
    auto used = request(VIRTIO_BLK_T_IN, 3, 2048);
    EXPECT_EQ(status(), VIRTIO_BLK_S_OK);
    EXPECT_EQ(used.len, 2049u) << "data + status";
    std::vector<std::uint8_t> got(2048);
    mem().read(kData, got.data(), got.size());
    EXPECT_EQ(got, disk.read(3 * 512, 2048));
    EXPECT_EQ(irq->queue_notifies, 1);
}

// The queue's kick eventfd (what the anchor points KVM's ioeventfd at): a signal on it is a
// kick, served by the dispatcher with no queue_notify call, many times over, and only while the
// device is activated (a signal after a reset serves nothing and breaks nothing).
TEST_P(VirtioBlkDeviceTest, ASignalOnTheKickEventfdIsAKick) {
    const int kick = blk->queue_kick_fd(0);
    ASSERT_GE(kick, 0);
    EXPECT_EQ(blk->queue_kick_fd(1), -1);
    for (std::uint64_t sector : {5u, 9u, 1u}) {
        write_header(VIRTIO_BLK_T_IN, sector);
        mem().write_obj<std::uint8_t>(kStatus, 0xee);
        const std::uint16_t before = drv->used_idx();
        drv->add_chain({Drv::rd(kHdr, 16), Drv::wr(kData, 512), Drv::wr(kStatus, 1)});
        const std::uint64_t one = 1;
        ASSERT_EQ(::write(kick, &one, sizeof one), 8);  // as KVM does for the guest's notify write
        ASSERT_TRUE(wait_used(static_cast<std::uint16_t>(before + 1))) << "sector " << sector;
        ASSERT_EQ(drv->reclaim().size(), 1u);
        EXPECT_EQ(status(), VIRTIO_BLK_S_OK);
        std::vector<std::uint8_t> got(512);
        mem().read(kData, got.data(), got.size());
        EXPECT_EQ(got, disk.read(sector * 512, 512));
    }
    blk->reset();
    drv->add_chain({Drv::rd(kHdr, 16), Drv::wr(kData, 512), Drv::wr(kStatus, 1)});
    const std::uint64_t one = 1;
    ASSERT_EQ(::write(kick, &one, sizeof one), 8);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(blk->in_flight(), 0u);
    EXPECT_EQ(drv->used_idx(), 3u) << "a reset device served a kick";
}

// A request counts as in flight until the driver has been told: while its interrupt is being
// delivered (here held inside notify_queue) its used entry is out but in_flight() is not 0; a
// test (or a reset) that waits for in_flight() == 0 finds the interrupt sent. For a lone
// request (the dispatcher's inline path) and for a burst (an engine's batch, flushed once).
TEST_P(VirtioBlkDeviceTest, ARequestIsInFlightUntilItsInterruptIsOut) {
    for (const int requests : {1, 8}) {
        const auto held = reads_with_held_interrupt(requests);
        ASSERT_TRUE(held) << requests;
        EXPECT_GE(drv->used_idx(), 1) << requests << ": the used entry goes out first";
        EXPECT_GT(blk->in_flight(), 0u) << requests << ": in flight until the interrupt is out";
        held->release = true;
        ASSERT_TRUE(held->wait_for([&] { return drv->used_idx() == requests && blk->in_flight() == 0; })) << requests;
        EXPECT_GE(held->queue_notifies.load(), 1) << requests;
        drv->reclaim();
    }
}

// A reset waits for an interrupt that is going out: a lone request's, which the serving thread
// sends without the device mutex (settle_asking), and those of a batch. Until reset() returns
// the device may still signal the driver; after it, never.
TEST_P(VirtioBlkDeviceTest, AResetWaitsForAnInterruptGoingOut) {
    for (const int requests : {1, 8}) {
        const auto held = reads_with_held_interrupt(requests);
        ASSERT_TRUE(held) << requests;
        std::atomic<bool> reset_returned{false};
        std::thread resetter([&] {
            blk->reset();
            reset_returned = true;
        });
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        EXPECT_FALSE(reset_returned) << requests << ": reset returned while an interrupt was still going out";
        held->release = true;
        resetter.join();
        const int notifies = held->queue_notifies.load();
        EXPECT_GE(notifies, 1) << requests;
        EXPECT_EQ(blk->in_flight(), 0u) << requests;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        EXPECT_EQ(held->queue_notifies.load(), notifies) << requests << ": an interrupt after reset() returned";
    }
}

// A burst of requests handed to the engine together completes inside the engine's completion
// batches: the driver gets an interrupt per batch, not one per request (the pool's workers
// batch up to CompletionBatch::kMaxBatchOps reads/writes each: with 2 workers and 8 requests,
// at most 2). Every request is still completed with the right data and status.
TEST_P(VirtioBlkDeviceTest, ABurstOfCompletionsCostsAnInterruptPerBatch) {
    constexpr int kRequests = 8;
    for (int i = 0; i < kRequests; ++i) {
        write_header(VIRTIO_BLK_T_IN, 10 + static_cast<std::uint64_t>(i) * 8, 0x9000 + i * 16);
        mem().write_obj<std::uint8_t>(0x9800 + i, 0xee);
    }
    const std::uint16_t before = drv->used_idx();
    // Published at once: a dispatcher that happens to be awake (it may be, right after
    // activation) cannot take the burst in two parts, each with its own batches.
    std::vector<std::uint16_t> heads;
    for (int i = 0; i < kRequests; ++i)
        heads.push_back(drv->write_chain({Drv::rd(0x9000 + i * 16, 16), Drv::wr(kData + i * 4096, 4096), Drv::wr(0x9800 + i, 1)}));
    drv->publish_all(heads);
    blk->queue_notify(0);
    ASSERT_TRUE(wait_used(static_cast<std::uint16_t>(before + kRequests)));
    EXPECT_EQ(drv->reclaim().size(), static_cast<std::size_t>(kRequests));
    for (int i = 0; i < kRequests; ++i) {
        EXPECT_EQ(*mem().read_obj<std::uint8_t>(0x9800 + i), VIRTIO_BLK_S_OK) << i;
        std::vector<std::uint8_t> got(4096);
        mem().read(kData + i * 4096, got.data(), got.size());
        EXPECT_EQ(got, disk.read((10 + static_cast<std::uint64_t>(i) * 8) * 512, 4096)) << i;
    }
    EXPECT_GE(irq->queue_notifies, 1);
    if (engine() == Engine::Threads)  // a ring's batches are what one reap finds: not a fixed number
        EXPECT_LE(irq->queue_notifies, 2) << "one interrupt per worker's batch";
    else
        EXPECT_LE(irq->queue_notifies, kRequests);
}

// What a CompletionBatch hands a device: each flush's results, as (tag, value) pairs.
using Flushes = std::vector<std::vector<std::pair<std::uint64_t, int>>>;
void record_flush(void* arg, std::span<const CompletionBatch::Result> results) {
    auto& f = static_cast<Flushes*>(arg)->emplace_back();
    for (const auto& r : results) f.emplace_back(r.tag, r.value);
}

TEST(CompletionBatchTest, DefersOnlyInsideABatchAndFlushesOncePerDeviceAtItsEnd) {
    Flushes flushed, other;
    EXPECT_FALSE(CompletionBatch::defer(record_flush, &flushed, {1, 0})) << "no batch open: the caller completes it";
    {
        CompletionBatch batch;
        EXPECT_TRUE(CompletionBatch::defer(record_flush, &flushed, {1, 0}));
        EXPECT_TRUE(CompletionBatch::defer(record_flush, &flushed, {2, -5}));
        EXPECT_TRUE(CompletionBatch::defer(record_flush, &other, {7, 0}));
        {
            CompletionBatch inner;  // a nested batch flushes its own at its end
            EXPECT_TRUE(CompletionBatch::defer(record_flush, &other, {8, 0}));
        }
        EXPECT_EQ(other, (Flushes{{{8, 0}}}));
        EXPECT_TRUE(CompletionBatch::defer(record_flush, &flushed, {3, 0}));
        EXPECT_TRUE(flushed.empty()) << "nothing runs before the batch closes";
        std::thread t([&] { EXPECT_FALSE(CompletionBatch::defer(record_flush, &flushed, {9, 0})) << "batches are per thread"; });
        t.join();
    }
    EXPECT_EQ(flushed, (Flushes{{{1, 0}, {2, -5}, {3, 0}}})) << "once per (flush, device), its results in order";
    EXPECT_EQ(other, (Flushes{{{8, 0}}, {{7, 0}}}));
    EXPECT_FALSE(CompletionBatch::defer(record_flush, &flushed, {4, 0})) << "closed";
}

TEST(CompletionBatchTest, ALongRunFlushesEveryMaxResultsAndTheRestAtTheEnd) {
    Flushes flushed;
    const unsigned n = CompletionBatch::kMaxResults * 2 + 5;
    {
        CompletionBatch batch;
        for (unsigned i = 0; i < n; ++i) ASSERT_TRUE(CompletionBatch::defer(record_flush, &flushed, {i, static_cast<int>(i)}));
        EXPECT_EQ(flushed.size(), 2u) << "two full runs went while the batch went on";
    }
    ASSERT_EQ(flushed.size(), 3u);
    EXPECT_EQ(flushed[0].size(), CompletionBatch::kMaxResults);
    EXPECT_EQ(flushed[2].size(), 5u);
    std::uint64_t next = 0;
    for (const auto& f : flushed)
        for (const auto& [tag, value] : f) {
            EXPECT_EQ(tag, next) << "every result once, in order";
            EXPECT_EQ(value, static_cast<int>(next));
            ++next;
        }
    EXPECT_EQ(next, n);
}

TEST(CompletionBatchTest, AFifthDeviceInOneBatchCompletesItsOwn) {
    Flushes f[5];
    {
        CompletionBatch batch;
        for (int i = 0; i < 4; ++i) EXPECT_TRUE(CompletionBatch::defer(record_flush, &f[i], {1, 0}));
        EXPECT_FALSE(CompletionBatch::defer(record_flush, &f[4], {1, 0})) << "no room: the caller completes it now";
        EXPECT_TRUE(CompletionBatch::defer(record_flush, &f[0], {2, 0})) << "a device the batch holds still fits";
    }
    for (int i = 0; i < 4; ++i) EXPECT_EQ(f[i].size(), 1u);
    EXPECT_EQ(f[0][0].size(), 2u);
    EXPECT_TRUE(f[4].empty());
}

TEST_P(VirtioBlkDeviceTest, WriteChangesTheFile) {
    std::vector<std::uint8_t> data(4096);
    std::iota(data.begin(), data.end(), 1);
    mem().write(kData, data.data(), data.size());
    auto used = request(VIRTIO_BLK_T_OUT, 100, 4096);
    EXPECT_EQ(status(), VIRTIO_BLK_S_OK);
    EXPECT_EQ(used.len, 1u);
    EXPECT_EQ(disk.read(100 * 512, 4096), data);
    EXPECT_EQ(disk.read(99 * 512, 1)[0], pattern_byte(99 * 512 + 0)) << "neighbours untouched";
    EXPECT_EQ(disk.read(108 * 512, 1)[0], pattern_byte(108 * 512));
}

TEST_P(VirtioBlkDeviceTest, ScatteredAndIndirectBuffers) {
    // Header split over two descriptors, data over three, status alone; then the same through an
    // indirect table.
    for (bool indirect : {false, true}) {
        SCOPED_TRACE(indirect);
        write_header(VIRTIO_BLK_T_IN, 10);
        auto used = run({Drv::rd(kHdr, 7), Drv::rd(kHdr + 7, 9), Drv::wr(kData, 100), Drv::wr(kData + 0x1000, 412),
                         Drv::wr(kData + 0x2000, 512), Drv::wr(kStatus, 1)},
                        indirect);
        EXPECT_EQ(status(), VIRTIO_BLK_S_OK);
        EXPECT_EQ(used.len, 1025u);
        std::vector<std::uint8_t> got(1024);
        mem().read(kData, got.data(), 100);
        mem().read(kData + 0x1000, got.data() + 100, 412);
        mem().read(kData + 0x2000, got.data() + 512, 512);
        EXPECT_EQ(got, disk.read(10 * 512, 1024));
    }
}

TEST_P(VirtioBlkDeviceTest, FlushAndGetId) {
    request(VIRTIO_BLK_T_FLUSH, 0, 0);
    EXPECT_EQ(status(), VIRTIO_BLK_S_OK);
    auto used = request(VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES);
    EXPECT_EQ(status(), VIRTIO_BLK_S_OK);
    EXPECT_EQ(used.len, VIRTIO_BLK_ID_BYTES + 1u);
    char id[VIRTIO_BLK_ID_BYTES];
    mem().read(kData, id, sizeof id);
    EXPECT_EQ(std::string(id, sizeof id), std::string("serial-0123456789abc"));

    // The ID across two buffers, and into one shorter than the ID: as much as fits, nothing past it.
    write_header(VIRTIO_BLK_T_GET_ID, 0);
    used = run({Drv::rd(kHdr, 16), Drv::wr(kData + 0x100, 12), Drv::wr(kData + 0x200, 8), Drv::wr(kStatus, 1)});
    EXPECT_EQ(status(), VIRTIO_BLK_S_OK);
    EXPECT_EQ(used.len, VIRTIO_BLK_ID_BYTES + 1u);
    mem().read(kData + 0x100, id, 12);
    mem().read(kData + 0x200, id + 12, 8);
    EXPECT_EQ(std::string(id, sizeof id), std::string("serial-0123456789abc"));
    const std::uint8_t guard[4] = {0xee, 0xee, 0xee, 0xee};
    mem().write(kData + 0x300, guard, sizeof guard);
    write_header(VIRTIO_BLK_T_GET_ID, 0);
    used = run({Drv::rd(kHdr, 16), Drv::wr(kData + 0x2fc, 4), Drv::wr(kStatus, 1)});
    EXPECT_EQ(status(), VIRTIO_BLK_S_OK);
    EXPECT_EQ(used.len, 5u);
    mem().read(kData + 0x2fc, id, 8);
    EXPECT_EQ(std::string(id, 8), std::string("seri\xee\xee\xee\xee"));
}

TEST_P(VirtioBlkDeviceTest, WriteZeroesAndDiscard) {
    virtio_blk_discard_write_zeroes segs[2] = {{200, 4, 0}, {300, 1, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP}};
    mem().write(kData, segs, sizeof segs);
    request(VIRTIO_BLK_T_WRITE_ZEROES, 0, sizeof segs);
    EXPECT_EQ(status(), VIRTIO_BLK_S_OK);
    EXPECT_EQ(disk.read(200 * 512, 2048), std::vector<std::uint8_t>(2048, 0));
    EXPECT_EQ(disk.read(300 * 512, 512), std::vector<std::uint8_t>(512, 0));
    EXPECT_EQ(disk.read(204 * 512, 1)[0], pattern_byte(204 * 512)) << "only the ranges asked for";
    EXPECT_EQ(disk.size(), kDiskSectors * 512);

    virtio_blk_discard_write_zeroes d{400, 8, 0};
    mem().write(kData, &d, sizeof d);
    request(VIRTIO_BLK_T_DISCARD, 0, sizeof d);
    EXPECT_EQ(status(), VIRTIO_BLK_S_OK);
    EXPECT_EQ(disk.size(), kDiskSectors * 512) << "discard never changes the size";

    d.flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;  // §5.2.6.2: unmap on a discard is UNSUPP
    mem().write(kData, &d, sizeof d);
    request(VIRTIO_BLK_T_DISCARD, 0, sizeof d);
    EXPECT_EQ(status(), VIRTIO_BLK_S_UNSUPP);

    d = {kDiskSectors - 1, 2, 0};  // past the end
    mem().write(kData, &d, sizeof d);
    request(VIRTIO_BLK_T_WRITE_ZEROES, 0, sizeof d);
    EXPECT_EQ(status(), VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(disk.read((kDiskSectors - 1) * 512, 1)[0], pattern_byte((kDiskSectors - 1) * 512));

    request(VIRTIO_BLK_T_DISCARD, 0, 15);  // not a whole segment
    EXPECT_EQ(status(), VIRTIO_BLK_S_IOERR);
}

TEST_P(VirtioBlkDeviceTest, EveryRequestIsCheckedAgainstCapacity) {
    request(VIRTIO_BLK_T_IN, kDiskSectors - 1, 512);
    EXPECT_EQ(status(), VIRTIO_BLK_S_OK) << "last sector";
    auto used = request(VIRTIO_BLK_T_IN, kDiskSectors - 1, 1024);
    EXPECT_EQ(status(), VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(used.len, 1u);
    request(VIRTIO_BLK_T_OUT, kDiskSectors, 512);
    EXPECT_EQ(status(), VIRTIO_BLK_S_IOERR);
    request(VIRTIO_BLK_T_OUT, ~0ull, 512);
    EXPECT_EQ(status(), VIRTIO_BLK_S_IOERR) << "sector + count overflows";
    request(VIRTIO_BLK_T_OUT, ~0ull / 512, 512);
    EXPECT_EQ(status(), VIRTIO_BLK_S_IOERR) << "sector * 512 overflows";
    EXPECT_EQ(disk.size(), kDiskSectors * 512) << "nothing written past the end";
    request(VIRTIO_BLK_T_IN, 0, 100);
    EXPECT_EQ(status(), VIRTIO_BLK_S_IOERR) << "not a multiple of 512";
}

// A full disk on the host (a sparse image on a 128 KiB tmpfs): the writes that do not fit come
// back as IOERR, the ones that fit are on the file, and the device keeps serving reads and
// flushes: the guest sees an I/O error, the anchor lives. Needs root (mount); skips otherwise.
TEST_P(VirtioBlkDeviceTest, AFullHostDiskIsAnIoErrorAndTheDeviceGoesOn) {
    char tmpl[] = "/tmp/vmm-fulldisk-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const std::string dir = tmpl;
    if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=128k") != 0) {
        const int err = errno;
        ::rmdir(dir.c_str());
        GTEST_SKIP() << "cannot mount a small tmpfs (" << std::strerror(err) << "): needs root";
    }
    const std::string image = dir + "/disk.img";
    {
        const int fd = ::open(image.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(::ftruncate(fd, kDiskSectors * 512), 0);  // 1 MiB, sparse: 8x what the tmpfs holds
        ::close(fd);
    }
    open_device(false, 0, image);
    std::vector<std::uint8_t> data(32 * 1024, 0x5a);
    mem().write(kData, data.data(), data.size());
    int ok = 0, ioerr = 0;
    for (std::uint64_t sector = 0; sector < kDiskSectors; sector += 64) {
        request(VIRTIO_BLK_T_OUT, sector, static_cast<std::uint32_t>(data.size()));
        if (status() == VIRTIO_BLK_S_OK) ++ok;
        if (status() == VIRTIO_BLK_S_IOERR) ++ioerr;
    }
    EXPECT_GT(ok, 0) << "some writes fit";
    EXPECT_GT(ioerr, 0) << "the rest fail with IOERR once the host disk is full";
    EXPECT_EQ(ok + ioerr, static_cast<int>(kDiskSectors / 64));
    // The first write landed; reading it back and flushing still work.
    mem().write_obj<std::uint8_t>(kData, 0);
    request(VIRTIO_BLK_T_IN, 0, 512);
    EXPECT_EQ(status(), VIRTIO_BLK_S_OK);
    EXPECT_EQ(*mem().read_obj<std::uint8_t>(kData), 0x5a);
    request(VIRTIO_BLK_T_FLUSH, 0, 0);
    EXPECT_NE(status(), 0xee) << "the flush was answered";
    blk.reset();
    ::umount2(dir.c_str(), MNT_DETACH);
    ::rmdir(dir.c_str());
}

// A lone read (served on the dispatcher under the device lock) that the host cannot serve: the
// file shrank under the device, so the read finds its end. The driver gets IOERR and the status
// byte alone; the device goes on serving.
TEST_P(VirtioBlkDeviceTest, ALoneReadTheHostCannotServeEndsInIoerrAndTheNextOneWorks) {
    ASSERT_EQ(::truncate(disk.path.c_str(), 8 * 512), 0);
    auto used = request(VIRTIO_BLK_T_IN, 16, 512);
    EXPECT_EQ(status(), VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(used.len, 1u) << "the status byte only";
    used = request(VIRTIO_BLK_T_IN, 1, 512);
    EXPECT_EQ(status(), VIRTIO_BLK_S_OK);
    EXPECT_EQ(used.len, 513u);
    std::vector<std::uint8_t> got(512);
    mem().read(kData, got.data(), got.size());
    EXPECT_EQ(got, disk.read(512, 512));
    EXPECT_EQ(blk->in_flight(), 0u);
}

TEST_P(VirtioBlkDeviceTest, UnknownTypeIsUnsupported) {
    request(42, 0, 512);
    EXPECT_EQ(status(), VIRTIO_BLK_S_UNSUPP);
}

TEST_P(VirtioBlkDeviceTest, ReadOnlyDisk) {
    open_device(true);
    const std::uint64_t f = blk->device_features();
    EXPECT_TRUE(f & feature_bit(VIRTIO_BLK_F_RO));
    EXPECT_FALSE(f & feature_bit(VIRTIO_BLK_F_DISCARD));
    std::vector<std::uint8_t> data(512, 0x11);
    mem().write(kData, data.data(), data.size());
    request(VIRTIO_BLK_T_OUT, 0, 512);
    EXPECT_EQ(status(), VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(disk.read(0, 512)[1], pattern_byte(1));
    virtio_blk_discard_write_zeroes d{0, 1, 0};
    mem().write(kData, &d, sizeof d);
    request(VIRTIO_BLK_T_WRITE_ZEROES, 0, sizeof d);
    EXPECT_EQ(status(), VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(disk.read(0, 512)[1], pattern_byte(1));
    request(VIRTIO_BLK_T_IN, 0, 512);
    EXPECT_EQ(status(), VIRTIO_BLK_S_OK) << "reads still work";
    request(VIRTIO_BLK_T_FLUSH, 0, 0);
    EXPECT_EQ(status(), VIRTIO_BLK_S_OK);
}

TEST_P(VirtioBlkDeviceTest, WrongDirectionBuffers) {
    // Header in a device-writable buffer: IOERR in the status byte, nothing read from the disk.
    auto used = run({Drv::wr(kHdr, 16), Drv::wr(kData, 512), Drv::wr(kStatus, 1)});
    EXPECT_EQ(status(), VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(used.len, 1u);
    // Read with its data buffer device-readable: the device must not write into it.
    std::vector<std::uint8_t> guard(512, 0xcd);
    mem().write(kData, guard.data(), guard.size());
    write_header(VIRTIO_BLK_T_IN, 0);
    run({Drv::rd(kHdr, 16), Drv::rd(kData, 512), Drv::wr(kStatus, 1)});
    EXPECT_EQ(status(), VIRTIO_BLK_S_IOERR);
    std::vector<std::uint8_t> after(512);
    mem().read(kData, after.data(), after.size());
    EXPECT_EQ(after, guard);
    // Write with its data device-writable: the file is untouched.
    write_header(VIRTIO_BLK_T_OUT, 0);
    run({Drv::rd(kHdr, 16), Drv::wr(kData, 512), Drv::wr(kStatus, 1)});
    EXPECT_EQ(status(), VIRTIO_BLK_S_IOERR);
    EXPECT_EQ(disk.read(0, 512)[5], pattern_byte(5));
    // Status byte device-readable: no status can be written, the chain comes back with length 0.
    write_header(VIRTIO_BLK_T_IN, 0);
    used = run({Drv::rd(kHdr, 16), Drv::rd(kStatus, 1)});
    EXPECT_EQ(used.len, 0u);
    EXPECT_EQ(status(), 0xee) << "the device-readable status byte is not written";
    EXPECT_EQ(irq->resets_needed, 0) << "one bad request does not break the queue";
}

TEST_P(VirtioBlkDeviceTest, BadChainsComeBackEmptyAndTheQueueGoesOn) {
    write_header(VIRTIO_BLK_T_IN, 0);
    // Data buffer outside RAM.
    auto used = run({Drv::rd(kHdr, 16), Drv::wr(0x200000, 512), Drv::wr(kStatus, 1)});
    EXPECT_EQ(used.len, 0u);
    EXPECT_EQ(status(), 0xee);
    // A loop.
    drv->set_desc(40, kHdr, 16, virtio::kDescFNext, 41);
    drv->set_desc(41, kStatus, 1, virtio::kDescFNext | virtio::kDescFWrite, 40);
    drv->publish(40);
    blk->queue_notify(0);
    ASSERT_TRUE(wait_used(2));
    EXPECT_EQ(drv->used(1).id, 40u);
    EXPECT_EQ(drv->used(1).len, 0u);
    drv->reclaim();
    // Still serving.
    request(VIRTIO_BLK_T_IN, 1, 512);
    EXPECT_EQ(status(), VIRTIO_BLK_S_OK);
    EXPECT_EQ(irq->resets_needed, 0);
}

TEST_P(VirtioBlkDeviceTest, BrokenRingAsksForReset) {
    drv->publish(64);  // head index == queue size
    blk->queue_notify(0);
    ASSERT_TRUE(irq->wait_for([&] { return irq->resets_needed.load() == 1; }));
    EXPECT_EQ(drv->used_idx(), 0);
    // After a reset and a fresh activation the device serves again.
    blk->reset();
    drv = std::make_unique<Drv>(mem(), 0x1000, 64);
    blk->activate(mem(), feature_bit(virtio::kFeatureVersion1), {drv->config()}, irq);
    request(VIRTIO_BLK_T_IN, 1, 512);
    EXPECT_EQ(status(), VIRTIO_BLK_S_OK);
    EXPECT_EQ(irq->resets_needed, 1);
}

TEST_P(VirtioBlkDeviceTest, BadQueueLayoutAsksForResetAtActivation) {
    auto cfg = drv->config();
    cfg.size = 48;  // not a power of two
    blk->reset();
    auto irq2 = std::make_shared<test::FakeVirtioInterrupt>();
    blk->activate(mem(), feature_bit(virtio::kFeatureVersion1), {cfg}, irq2);
    EXPECT_EQ(irq2->resets_needed, 1);
    blk->reset();
    cfg = drv->config();
    cfg.used = 0xffff0;  // used ring past the end of RAM
    blk->activate(mem(), feature_bit(virtio::kFeatureVersion1), {cfg}, irq2);
    EXPECT_EQ(irq2->resets_needed, 2);
}

TEST_P(VirtioBlkDeviceTest, NoInterruptFlagSuppressesNotifications) {
    drv->set_avail_flags(virtio::kAvailFNoInterrupt);
    request(VIRTIO_BLK_T_IN, 0, 512);
    request(VIRTIO_BLK_T_IN, 1, 512);
    EXPECT_EQ(status(), VIRTIO_BLK_S_OK);
    EXPECT_EQ(irq->queue_notifies, 0);
    drv->set_avail_flags(0);
    request(VIRTIO_BLK_T_IN, 2, 512);
    EXPECT_EQ(irq->queue_notifies, 1);
}

TEST_P(VirtioBlkDeviceTest, EventIdxSuppressesNotificationsUntilUsedEvent) {
    open_device(false, feature_bit(virtio::kFeatureVersion1) | feature_bit(virtio::kFeatureEventIdx));
    drv->set_used_event(2);  // interrupt once used idx passes 2
    request(VIRTIO_BLK_T_IN, 0, 512);
    request(VIRTIO_BLK_T_IN, 0, 512);
    EXPECT_EQ(irq->queue_notifies, 0);
    request(VIRTIO_BLK_T_IN, 0, 512);
    EXPECT_EQ(irq->queue_notifies, 1);
    // A polling device publishes avail_event when it stops polling (notifications back on),
    // which may be just after the completion the driver saw.
    for (int i = 0; i < 2000 && drv->avail_event() != 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_EQ(drv->avail_event(), 3) << "the device asks for a kick at the next entry";
}

TEST_P(VirtioBlkDeviceTest, ManyRequestsInFlightCompleteOutOfOrderSafely) {
    // 20 reads of 8 KiB at different sectors, published together.
    constexpr int kN = 20;
    for (int i = 0; i < kN; ++i) {
        write_header(VIRTIO_BLK_T_IN, static_cast<std::uint64_t>(i) * 16, kHdr + 16 * i);
        drv->add_chain({Drv::rd(kHdr + 16 * i, 16), Drv::wr(kData + 0x2000 * i, 0x2000), Drv::wr(kStatus + i, 1)});
    }
    blk->queue_notify(0);
    ASSERT_TRUE(wait_used(kN));
    auto used = drv->reclaim();
    ASSERT_EQ(used.size(), static_cast<std::size_t>(kN));
    for (int i = 0; i < kN; ++i) {
        EXPECT_EQ(*mem().read_obj<std::uint8_t>(kStatus + i), VIRTIO_BLK_S_OK);
        std::vector<std::uint8_t> got(0x2000);
        mem().read(kData + 0x2000 * i, got.data(), got.size());
        EXPECT_EQ(got, disk.read(static_cast<std::uint64_t>(i) * 16 * 512, 0x2000)) << i;
    }
    EXPECT_GE(irq->queue_notifies, 1);
    EXPECT_LE(irq->queue_notifies, kN);
}

// §2.7.13.3: a driver must not make a head available again before the device used it. A
// hostile one that does gets both requests served (the device keeps one status byte and used
// length per head in flight: both report the later one's, in guest memory it gave us), and the
// device goes on serving; nothing is written outside its buffers.
TEST_P(VirtioBlkDeviceTest, AHeadMadeAvailableTwiceWhileInFlightIsServedTwiceSafely) {
    write_header(VIRTIO_BLK_T_IN, 8);
    mem().write_obj<std::uint8_t>(kStatus, 0xee);
    const std::uint8_t guard = 0x5a;
    mem().write_obj(kData + 0x4000, guard);
    const std::uint16_t head = drv->add_chain({Drv::rd(kHdr, 16), Drv::wr(kData, 0x4000), Drv::wr(kStatus, 1)});
    drv->publish(head);  // the same chain again, before any kick
    blk->queue_notify(0);
    ASSERT_TRUE(wait_used(2));
    const auto used = drv->reclaim();
    ASSERT_EQ(used.size(), 2u);
    for (const auto& u : used) {
        EXPECT_EQ(u.id, head);
        EXPECT_EQ(u.len, 0x4000u + 1);
    }
    EXPECT_EQ(status(), VIRTIO_BLK_S_OK);
    std::vector<std::uint8_t> got(0x4000);
    mem().read(kData, got.data(), got.size());
    EXPECT_EQ(got, disk.read(8 * 512, 0x4000));
    EXPECT_EQ(*mem().read_obj<std::uint8_t>(kData + 0x4000), guard);
    request(VIRTIO_BLK_T_IN, 1, 512);
    EXPECT_EQ(status(), VIRTIO_BLK_S_OK);
    EXPECT_EQ(irq->resets_needed, 0);
}

TEST_P(VirtioBlkDeviceTest, ResetWaitsForInFlightRequestsAndTheDeviceCanRestart) {
    constexpr int kN = 20;
    for (int i = 0; i < kN; ++i) {
        write_header(VIRTIO_BLK_T_IN, 0, kHdr + 16 * i);
        drv->add_chain({Drv::rd(kHdr + 16 * i, 16), Drv::wr(kData + 0x2000 * i, 0x2000), Drv::wr(kStatus + i, 1)});
    }
    blk->queue_notify(0);
    blk->reset();
    EXPECT_EQ(blk->in_flight(), 0u) << "reset returned with I/O still touching guest memory";
    // Snapshot the old ring; nothing of the old activation may change it from now on.
    const std::uint16_t old_used = drv->used_idx();
    std::vector<std::uint8_t> old_status(kN);
    mem().read(kStatus, old_status.data(), kN);
    auto old_drv = std::move(drv);
    drv = std::make_unique<Drv>(mem(), 0x4000, 64);  // a new ring elsewhere
    blk->activate(mem(), feature_bit(virtio::kFeatureVersion1), {drv->config()}, irq);
    write_header(VIRTIO_BLK_T_IN, 5, 0x7800);
    mem().write_obj<std::uint8_t>(0x7900, 0xee);
    drv->add_chain({Drv::rd(0x7800, 16), Drv::wr(0x7a00, 512), Drv::wr(0x7900, 1)});
    blk->queue_notify(0);
    ASSERT_TRUE(wait_used(1));
    EXPECT_EQ(*mem().read_obj<std::uint8_t>(0x7900), VIRTIO_BLK_S_OK);
    EXPECT_EQ(old_drv->used_idx(), old_used);
    std::vector<std::uint8_t> now(kN);
    mem().read(kStatus, now.data(), kN);
    EXPECT_EQ(now, old_status);
}

INSTANTIATE_TEST_SUITE_P(EnginesAndPolling, VirtioBlkDeviceTest,
                         ::testing::Combine(::testing::Values(Engine::Threads, Engine::IoUring, Engine::Split),
                                            ::testing::Bool()),
                         [](const auto& info) {
                             const Engine e = std::get<0>(info.param);
                             return std::string(e == Engine::IoUring ? "io_uring" : e == Engine::Split ? "split" : "thread_pool") +
                                    (std::get<1>(info.param) ? "_polling" : "_no_polling");
                         });

// own_thread off (the benchmarks' one-thread mode): no dispatcher thread, so a kick alone
// serves nothing; serve_queue() serves the queue on the caller's thread, and a lone read is
// complete, its used entry out, before it returns. A device with its own dispatcher refuses it.
TEST(VirtioBlkOneThreadTest, WithoutItsOwnThreadTheCallerServesTheQueue) {
    TempDisk disk;
    test::FakeGuestMemory fake{{{0, 0x100000}}};
    std::mutex mu;
    std::set<std::string> names;
    VirtioBlkOptions opts;
    opts.name = "blk1t";
    opts.queue_size = 64;
    opts.own_thread = false;
    opts.on_thread_start = [&] {
        char name[16] = {};
        ::pthread_getname_np(::pthread_self(), name, sizeof name);
        std::lock_guard lock(mu);
        names.insert(name);
    };
    VirtioBlk blk(DiskImage::open({disk.path, std::nullopt, false}), opts);
    auto irq = std::make_shared<test::FakeVirtioInterrupt>();
    Drv drv(fake.memory(), 0x1000, 64);
    blk.activate(fake.memory(), feature_bit(virtio::kFeatureVersion1), {drv.config()}, irq);

    virtio_blk_outhdr hdr{VIRTIO_BLK_T_IN, 0, 3};
    fake.memory().write(kHdr, &hdr, sizeof hdr);
    fake.memory().write_obj<std::uint8_t>(kStatus, 0xee);
    drv.add_chain({Drv::rd(kHdr, 16), Drv::wr(kData, 512), Drv::wr(kStatus, 1)});
    blk.queue_notify(0);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(drv.used_idx(), 0) << "no dispatcher: a kick alone serves nothing";

    blk.serve_queue();
    EXPECT_EQ(drv.used_idx(), 1) << "served on this thread before serve_queue() returned";
    EXPECT_EQ(*fake.memory().read_obj<std::uint8_t>(kStatus), VIRTIO_BLK_S_OK);
    std::vector<std::uint8_t> got(512);
    fake.memory().read(kData, got.data(), got.size());
    EXPECT_EQ(got, disk.read(3 * 512, 512));
    {
        std::lock_guard lock(mu);
        EXPECT_EQ(names.count("blk1t-q"), 0u) << "no dispatcher thread was started";
    }

    VirtioBlkOptions own;
    own.name = "blkown";
    VirtioBlk with_thread(DiskImage::open({disk.path, std::nullopt, false}), own);
    EXPECT_THROW(with_thread.serve_queue(), Error);
}

// Small writes run on the serving thread even when several are in flight (inline_writes), the
// batch's other requests going to the engine; a write slower than inline_write_stall hands the
// rest of its batch to the engine. The engine's threads are held in on_thread_start here, so
// whatever completes before serve_queue() returns was done inline, and whatever was handed to
// the engine is still in flight.
class VirtioBlkInlineWritesTest : public ::testing::Test {
protected:
    static constexpr unsigned kWrites = 4;

    // The default stall threshold (500 µs) is no test's to rely on: under an emulated CPU (the
    // nested VM) a page-cache write can take that long. 10 s: no write here stalls.
    void open(bool inline_writes, std::chrono::nanoseconds stall = std::chrono::seconds(10), bool pool_only = false) {
        VirtioBlkOptions opts;
        if (pool_only) opts.use_io_uring = opts.reads_on_io_uring = false;  // no ring reads: reads on the pool
        opts.name = "blkinl";
        opts.queue_size = 64;
        opts.own_thread = false;
        opts.inline_writes = inline_writes;
        opts.inline_write_stall = stall;
        opts.inline_write_backoff = std::chrono::hours(1);
        opts.on_thread_start = [this] {
            std::unique_lock lock(mu);
            cv.wait(lock, [this] { return released; });
        };
        blk = std::make_unique<VirtioBlk>(DiskImage::open({disk.path, std::nullopt, false}), opts);
        blk->activate(fake.memory(), feature_bit(virtio::kFeatureVersion1), {drv.config()},
                      std::make_shared<test::FakeVirtioInterrupt>());
    }
    void TearDown() override { release(); }  // before blk's engine threads are joined
    void release() {
        {
            std::lock_guard lock(mu);
            released = true;
        }
        cv.notify_all();
    }
    // One-sector requests of `type` (VIRTIO_BLK_T_IN or _OUT) for `sectors`, request i with its
    // own header, data buffer (kData + 512 * i; a write's holds bytes 0x40 + i) and status byte;
    // then a flush. All published before one serve_queue().
    void queue_and_flush(std::uint32_t type, const std::vector<std::uint64_t>& sectors) {
        const GuestMemory& mem = fake.memory();
        const unsigned n = static_cast<unsigned>(sectors.size());
        for (unsigned i = 0; i <= n; ++i) {
            const std::uint64_t hdr = kHdr + 16 * i, status = kStatus + i, data = kData + 512 * i;
            virtio_blk_outhdr h{i < n ? type : VIRTIO_BLK_T_FLUSH + 0u, 0, i < n ? sectors[i] : 0};
            mem.write(hdr, &h, sizeof h);
            mem.write_obj<std::uint8_t>(status, 0xee);
            if (i == n) {
                drv.add_chain({Drv::rd(hdr, 16), Drv::wr(status, 1)});
            } else if (type == VIRTIO_BLK_T_OUT) {
                const std::vector<std::uint8_t> bytes(512, static_cast<std::uint8_t>(0x40 + i));
                mem.write(data, bytes.data(), bytes.size());
                drv.add_chain({Drv::rd(hdr, 16), Drv::rd(data, 512), Drv::wr(status, 1)});
            } else {
                drv.add_chain({Drv::rd(hdr, 16), Drv::wr(data, 512), Drv::wr(status, 1)});
            }
        }
    }
    // kWrites one-sector writes of sector 10 + i (bytes 0x40 + i), then a flush.
    void queue_writes_and_flush() {
        std::vector<std::uint64_t> sectors;
        for (unsigned i = 0; i < kWrites; ++i) sectors.push_back(10 + i);
        queue_and_flush(VIRTIO_BLK_T_OUT, sectors);
    }
    bool written(unsigned i) const { return disk.read((10 + i) * 512, 512) == std::vector<std::uint8_t>(512, static_cast<std::uint8_t>(0x40 + i)); }
    bool wait_used(std::uint16_t idx) {
        for (int i = 0; i < 2000 && drv.used_idx() != idx; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        return drv.used_idx() == idx;
    }

    TempDisk disk;
    test::FakeGuestMemory fake{{{0, 0x100000}}};
    Drv drv{fake.memory(), 0x1000, 64};
    std::mutex mu;
    std::condition_variable cv;
    bool released = false;
    std::unique_ptr<VirtioBlk> blk;
};

TEST_F(VirtioBlkInlineWritesTest, SmallWritesInFlightTogetherRunOnTheServingThreadAndTheFlushOnTheEngine) {
    open(true);
    queue_writes_and_flush();
    blk->serve_queue();
    EXPECT_EQ(drv.used_idx(), kWrites) << "every write completed before serve_queue() returned";
    for (unsigned i = 0; i < kWrites; ++i) {
        EXPECT_TRUE(written(i)) << "write " << i;
        EXPECT_EQ(*fake.memory().read_obj<std::uint8_t>(kStatus + i), VIRTIO_BLK_S_OK);
    }
    EXPECT_EQ(blk->in_flight(), 1u) << "the flush waits on the engine's held threads";
    EXPECT_EQ(blk->inline_write_stalls(), 0u);
    release();
    EXPECT_TRUE(wait_used(kWrites + 1));
    EXPECT_EQ(*fake.memory().read_obj<std::uint8_t>(kStatus + kWrites), VIRTIO_BLK_S_OK);
}

TEST_F(VirtioBlkInlineWritesTest, TurnedOffEveryWriteInABatchGoesToTheEngine) {
    open(false);
    queue_writes_and_flush();
    blk->serve_queue();
    EXPECT_EQ(drv.used_idx(), 0);
    EXPECT_EQ(blk->in_flight(), kWrites + 1);
    release();
    EXPECT_TRUE(wait_used(kWrites + 1));
    for (unsigned i = 0; i < kWrites; ++i) EXPECT_TRUE(written(i)) << "write " << i;
}

// A stall threshold of 0: the first write counts as stalled, so the writes behind it, and
// every write of the backoff (an hour here), go to the engine.
TEST_F(VirtioBlkInlineWritesTest, AWriteSlowerThanTheStallThresholdSendsTheRestToTheEngine) {
    open(true, std::chrono::nanoseconds(0));
    queue_writes_and_flush();
    blk->serve_queue();
    EXPECT_EQ(drv.used_idx(), 1) << "only the first write ran inline";
    EXPECT_TRUE(written(0));
    EXPECT_EQ(blk->inline_write_stalls(), 1u);
    EXPECT_EQ(blk->in_flight(), kWrites) << "the other writes and the flush wait on the engine";
    release();
    EXPECT_TRUE(wait_used(kWrites + 1));
    for (unsigned i = 0; i < kWrites; ++i) EXPECT_TRUE(written(i)) << "write " << i;
    EXPECT_EQ(blk->inline_write_stalls(), 1u) << "backed off: no write ran inline since";
}

// Where no io_uring ring reads (the pool alone), a batch's reads are tried on the serving thread
// with RWF_NOWAIT: those the page cache holds complete before serve_queue() returns, one that
// would wait for the disk goes to the (held) pool and completes, with the right data, from there.
class VirtioBlkCachedReadsTest : public VirtioBlkInlineWritesTest {
protected:
    // One-sector reads of `sectors` (default: 5 and 1800), each into its own buffer; then a flush.
    void queue_reads_and_flush(const std::vector<std::uint64_t>& sectors = {5, 1800}) { queue_and_flush(VIRTIO_BLK_T_IN, sectors); }
    // Skips where the file refuses RWF_NOWAIT (EOPNOTSUPP: the nested VM's 6.1 tmpfs), so the
    // device sends every read to the pool.
    void skip_without_nowait_reads() {
        Fd fd(::open(disk.path.c_str(), O_RDONLY | O_CLOEXEC));
        ASSERT_TRUE(fd.valid());
        char sector[512];
        iovec iov{sector, sizeof sector};
        if (::preadv2(fd.get(), &iov, 1, 0, RWF_NOWAIT) < 0 && errno == EOPNOTSUPP)
            GTEST_SKIP() << "this file system refuses reads without waiting (RWF_NOWAIT): every read goes to the pool";
    }
    // The file out of the page cache (written back, then dropped: a large folio goes only
    // whole), then sector 5 read back in; readahead stops well short of sector 1800. Skips
    // where the file system keeps sector 1800 cached anyway.
    void drop_all_but_sector_5() {
        Fd fd(::open(disk.path.c_str(), O_RDONLY | O_CLOEXEC));
        ASSERT_TRUE(fd.valid());
        ASSERT_EQ(::fdatasync(fd.get()), 0);
        ASSERT_EQ(::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED), 0);
        ASSERT_EQ(::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_RANDOM), 0);  // no readahead (this host's is 8 MiB)
        char sector[512];
        ASSERT_EQ(::pread(fd.get(), sector, sizeof sector, 5 * 512), 512);
        void* map = ::mmap(nullptr, kDiskSectors * 512, PROT_READ, MAP_SHARED, fd.get(), 0);
        ASSERT_NE(map, MAP_FAILED);
        unsigned char resident[kDiskSectors * 512 / 4096] = {};
        const int r = ::mincore(map, kDiskSectors * 512, resident);
        ::munmap(map, kDiskSectors * 512);
        ASSERT_EQ(r, 0);
        if (resident[1800 * 512 / 4096] & 1) GTEST_SKIP() << "this file system kept the page cached: no read here waits for a disk";
        ASSERT_TRUE(resident[5 * 512 / 4096] & 1);
    }
    // A read refused without waiting (RWF_NOWAIT) has started the kernel's read of its pages
    // first; when that completes before the read looks again (the serving thread preempted in
    // between: seen about once in 80 runs with two at once under ASan), the read succeeds on the
    // serving thread, correctly, and nothing here waited for the disk: this run cannot tell the
    // pool path apart. Sector 1800's read (into buffer `buffer`) completed, with the right data,
    // while the pool's threads are held: skip, saying so.
    void skip_if_the_kernel_read_sector_1800(unsigned buffer) {
        if (drv.used_idx() >= 2 && read_back(buffer, 1800))
            GTEST_SKIP() << "sector 1800 came into the page cache during the read refused without waiting: it completed on "
                            "the serving thread, nothing waited for the disk in this run";
    }
    bool read_back(unsigned i, std::uint64_t sector) const {
        std::vector<std::uint8_t> got(512);
        fake.memory().read(kData + 512 * i, got.data(), got.size());
        return got == disk.read(sector * 512, 512) && *fake.memory().read_obj<std::uint8_t>(kStatus + i) == VIRTIO_BLK_S_OK;
    }
};

TEST_F(VirtioBlkCachedReadsTest, ReadsThePageCacheHoldsCompleteOnTheServingThread) {
    skip_without_nowait_reads();
    if (IsSkipped()) return;
    (void)disk.read(0, kDiskSectors * 512);  // all of it in the page cache
    open(true, std::chrono::seconds(10), true);
    queue_reads_and_flush();
    blk->serve_queue();
    EXPECT_EQ(drv.used_idx(), 2) << "both reads completed before serve_queue() returned";
    EXPECT_TRUE(read_back(0, 5));
    EXPECT_TRUE(read_back(1, 1800));
    EXPECT_EQ(blk->in_flight(), 1u) << "the flush waits on the engine's held threads";
    release();
    EXPECT_TRUE(wait_used(3));
}

TEST_F(VirtioBlkCachedReadsTest, AReadThatWouldWaitForTheDiskGoesToThePool) {
    skip_without_nowait_reads();
    if (IsSkipped()) return;
    drop_all_but_sector_5();
    if (IsSkipped() || HasFatalFailure()) return;
    open(true, std::chrono::seconds(10), true);
    queue_reads_and_flush();
    blk->serve_queue();
    skip_if_the_kernel_read_sector_1800(1);
    if (IsSkipped()) return;
    EXPECT_EQ(drv.used_idx(), 1) << "only the cached read completed before serve_queue() returned";
    EXPECT_TRUE(read_back(0, 5));
    EXPECT_EQ(blk->in_flight(), 2u) << "the uncached read and the flush wait on the engine's held threads";
    // The uncached read alone with a flush (dropped again: the refused read started readahead):
    // still not read on this thread, since the flush is in flight too (only a lone read is).
    drop_all_but_sector_5();
    if (IsSkipped() || HasFatalFailure()) return;
    queue_reads_and_flush({1800});
    blk->serve_queue();
    skip_if_the_kernel_read_sector_1800(0);
    if (IsSkipped()) return;
    EXPECT_EQ(drv.used_idx(), 1);
    EXPECT_EQ(blk->in_flight(), 4u);
    release();
    EXPECT_TRUE(wait_used(5));
    EXPECT_TRUE(read_back(0, 1800));  // the second batch's read, into buffer 0
}

}  // namespace
}  // namespace vmm::virtio_blk
