// VirtioBlk's adaptive polling (VirtioBlkOptions::poll_max), driven by hand through
// tests/support/virtqueue_driver.h. The driver kicks only when the device's suppression state
// asks for it (VIRTQ_USED_F_NO_NOTIFY, or avail_event with EVENT_IDX: the suite runs both).
// Determinism: the driver acts from VirtioBlkOptions::poll_hook, on the dispatcher thread at a
// known step of its poll loop (PollStep), never by racing it with sleeps:
//  - a request published at a Check step is served by that poll, with no kick;
//  - a request published at BeforeReenable (kicks still off, the window over) is found by the
//    re-check after kicks are re-enabled, not lost;
//  - poll_max 0: no poll steps, kicks always on, as before polling existed;
//  - a broken ring or a reset while polling ends polling cleanly.
#include "devicemodel/virtio-blk/virtio_blk.h"

#include "tests/support/fakes.h"
#include "tests/support/virtqueue_driver.h"

#include <gtest/gtest.h>

#include <linux/virtio_blk.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <vector>

namespace vmm::virtio_blk {
namespace {

using namespace std::chrono_literals;
using Drv = test::VirtqueueDriver;
using virtio::feature_bit;

constexpr std::uint64_t kDiskBytes = 1 << 20;
constexpr std::uint64_t kHdr = 0x8000, kStatus = 0x8800, kData = 0x10000;
constexpr std::uint32_t kLen = 512;

std::uint8_t pattern_byte(std::uint64_t off) { return static_cast<std::uint8_t>(off * 13 + off / 512); }

struct TempDisk {
    std::string path;
    TempDisk() {
        char tmpl[] = "/tmp/vmm-blk-poll-XXXXXX";
        const int fd = ::mkstemp(tmpl);
        if (fd < 0) throw std::runtime_error("mkstemp");
        std::vector<std::uint8_t> bytes(kDiskBytes);
        for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = pattern_byte(i);
        const bool ok = ::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size());
        ::close(fd);
        path = tmpl;
        if (!ok) throw std::runtime_error("write");
    }
    ~TempDisk() { ::unlink(path.c_str()); }
};

// Parameter: VIRTIO_F_EVENT_IDX negotiated.
class VirtioBlkPollTest : public ::testing::TestWithParam<bool> {
protected:
    ~VirtioBlkPollTest() override { blk.reset(); }  // joins the dispatcher before the hook's state goes

    bool event_idx() const { return GetParam(); }

    void open(std::chrono::nanoseconds poll_max, std::uint64_t ring = 0x1000) {
        VirtioBlkOptions opts;
        opts.name = "blkpoll";
        opts.queue_size = 64;
        opts.io_threads = 2;
        opts.poll_max = poll_max;
        opts.poll_adaptive = false;  // a fixed window: the steps below do not depend on timing
        opts.poll_hook = [this](PollStep step) { on_step(step); };
        drv = std::make_unique<Drv>(fake.memory(), ring, 64);  // before the hook can look at it
        blk = std::make_unique<VirtioBlk>(DiskImage::open({disk.path, std::nullopt, false}), opts);
        // The new dispatcher goes to sleep once before any activation; count from the activation.
        ASSERT_TRUE(wait_sleeps(1));
        sleeps = 0;
        enabled_at_sleep.clear();
        activate_ring();
    }
    // A new ring at `ring` (the dispatcher must be asleep or the device reset: the hook reads drv).
    void activate(std::uint64_t ring) {
        drv = std::make_unique<Drv>(fake.memory(), ring, 64);
        activate_ring();
    }
    void activate_ring() {
        std::uint64_t f = feature_bit(virtio::kFeatureVersion1);
        if (event_idx()) f |= feature_bit(virtio::kFeatureEventIdx);
        blk->activate(fake.memory(), f, {drv->config()}, irq);
    }

    const GuestMemory& mem() const { return fake.memory(); }

    // Publishes a 512-byte read of `sector` into slot `slot`, kicks only if the driver must (as
    // Linux's virtqueue_kick_prepare decides); returns whether it kicked.
    bool submit(unsigned slot, std::uint64_t sector) {
        const virtio_blk_outhdr hdr{VIRTIO_BLK_T_IN, 0, sector};
        mem().write(kHdr + 16 * slot, &hdr, sizeof hdr);
        mem().write_obj<std::uint8_t>(kStatus + slot, 0xee);
        drv->add_chain({Drv::rd(kHdr + 16 * slot, 16), Drv::wr(kData + kLen * slot, kLen), Drv::wr(kStatus + slot, 1)});
        const bool kick = drv->needs_kick(event_idx());
        if (kick) {
            ++kicks;
            blk->queue_notify(0);
        }
        return kick;
    }
    // Whether the device currently asks for kicks, from the driver's point of view: the next
    // buffer published would be kicked.
    bool kicks_enabled() const {
        if (event_idx()) return drv->avail_event() == avail_idx();
        return (drv->used_flags() & virtio::kUsedFNoNotify) == 0;
    }
    std::uint16_t avail_idx() const { return *mem().read_obj<std::uint16_t>(drv->avail_addr() + 2); }

    bool wait_used(std::uint16_t n) {
        return irq->wait_for([&] { return static_cast<std::int16_t>(drv->used_idx() - n) >= 0 && blk->in_flight() == 0; });
    }
    bool wait_sleeps(int n) {
        return irq->wait_for([&] { return sleeps.load() >= n; });
    }
    void expect_read(unsigned slot, std::uint64_t sector) const {
        EXPECT_EQ(*mem().read_obj<std::uint8_t>(kStatus + slot), VIRTIO_BLK_S_OK) << "slot " << slot;
        std::vector<std::uint8_t> got(kLen);
        mem().read(kData + kLen * slot, got.data(), got.size());
        for (std::uint32_t i = 0; i < kLen; ++i)
            if (got[i] != pattern_byte(sector * 512 + i)) {
                ADD_FAILURE() << "slot " << slot << " byte " << i;
                return;
            }
    }

    // The dispatcher thread's view; the test thread only touches the driver when the device is
    // asleep or busy with a request it knows of.
    void on_step(PollStep step) {
        switch (step) {
            case PollStep::Check:
                ++checks;
                if (const int h = hostile_on_check.exchange(0); h == 1) {
                    drv->publish(64);  // head index == queue size
                } else if (h == 2) {
                    drv->set_avail_idx(static_cast<std::uint16_t>(avail_idx() + 200));  // too far ahead
                }
                if (add_on_check > 0) {
                    --add_on_check;
                    suppressed_on_check.push_back(!kicks_enabled());
                    kicked_from_hook.push_back(submit(next_slot, next_slot));
                    ++next_slot;
                }
                break;
            case PollStep::BeforeReenable:
                ++before_reenable;
                if (add_before_reenable > 0) {
                    --add_before_reenable;
                    suppressed_before_reenable = !kicks_enabled();
                    kicked_from_hook.push_back(submit(next_slot, next_slot));
                    ++next_slot;
                }
                break;
            case PollStep::Sleep:
                enabled_at_sleep.push_back(kicks_enabled());
                if (add_on_sleep > 0) {
                    --add_on_sleep;
                    kicked_from_hook.push_back(submit(next_slot, next_slot));
                    ++next_slot;
                }
                ++sleeps;  // last: the test thread may look at the vectors once it sees this
                break;
        }
    }

    TempDisk disk;
    test::FakeGuestMemory fake{{{0, 0x100000}}};
    std::shared_ptr<test::FakeVirtioInterrupt> irq = std::make_shared<test::FakeVirtioInterrupt>();
    std::unique_ptr<Drv> drv;
    std::unique_ptr<VirtioBlk> blk;
    std::atomic<int> kicks{0};

    // Hook state: the counters are read by the test thread; the vectors only after a Sleep.
    std::atomic<int> checks{0}, before_reenable{0}, sleeps{0};
    std::atomic<int> add_on_check{0}, add_before_reenable{0}, add_on_sleep{0};
    std::atomic<int> hostile_on_check{0};  // 1: publish a bad head, 2: move avail idx too far
    unsigned next_slot = 1;
    std::vector<bool> suppressed_on_check, kicked_from_hook, enabled_at_sleep;
    bool suppressed_before_reenable = false;
};

TEST_P(VirtioBlkPollTest, RequestsAddedWhileThePollRunsAreServedWithoutAKick) {
    open(20ms);
    ASSERT_TRUE(wait_sleeps(1)) << "the activation's first poll window ends";
    EXPECT_TRUE(enabled_at_sleep.back());
    add_on_check = 3;
    EXPECT_TRUE(submit(0, 0)) << "the dispatcher sleeps with kicks enabled";
    ASSERT_TRUE(wait_used(4));
    ASSERT_TRUE(wait_sleeps(2)) << "back to sleep after the window";
    EXPECT_EQ(kicks, 1) << "only the first request was kicked";
    ASSERT_EQ(suppressed_on_check.size(), 3u);
    for (std::size_t i = 0; i < 3; ++i) {
        EXPECT_TRUE(suppressed_on_check[i]) << "kicks are off while polling, request " << i;
        EXPECT_FALSE(kicked_from_hook[i]) << i;
    }
    EXPECT_TRUE(enabled_at_sleep.back()) << "kicks are on again before the dispatcher sleeps";
    const PollStats st = blk->poll_stats();
    EXPECT_EQ(st.found_polling, 3u);
    EXPECT_EQ(st.found_at_reenable, 0u);
    for (unsigned s = 0; s < 4; ++s) expect_read(s, s);
    // With the window over, the next request needs (and gets) a kick again.
    EXPECT_TRUE(submit(9, 9));
    ASSERT_TRUE(wait_used(5));
    expect_read(9, 9);
    EXPECT_EQ(kicks, 2);
}

TEST_P(VirtioBlkPollTest, ARequestAddedAtTheReenableBoundaryIsNotLost) {
    open(2ms);
    ASSERT_TRUE(wait_sleeps(1));
    // Published when the window is over but kicks are still off: the driver does not kick,
    // so only the re-check after re-enabling can find it.
    add_before_reenable = 1;
    EXPECT_TRUE(submit(0, 0));
    ASSERT_TRUE(wait_used(2)) << "the request published at the boundary was lost";
    ASSERT_TRUE(wait_sleeps(2));
    EXPECT_TRUE(suppressed_before_reenable);
    ASSERT_EQ(kicked_from_hook.size(), 1u);
    EXPECT_FALSE(kicked_from_hook[0]);
    EXPECT_EQ(kicks, 1);
    EXPECT_EQ(blk->poll_stats().found_at_reenable, 1u);
    expect_read(0, 0);
    expect_read(1, 1);
    // Published right after re-enabling (the dispatcher about to sleep): the driver sees kicks
    // on and kicks.
    add_on_sleep = 1;
    EXPECT_TRUE(submit(5, 5));
    ASSERT_TRUE(wait_used(4));
    ASSERT_TRUE(wait_sleeps(4));
    ASSERT_EQ(kicked_from_hook.size(), 2u);
    EXPECT_TRUE(kicked_from_hook[1]);
    expect_read(5, 5);
    expect_read(2, 2);  // the hook's
    EXPECT_EQ(kicks, 3);
}

TEST_P(VirtioBlkPollTest, PollMaxZeroIsOff) {
    open(0ns);
    ASSERT_TRUE(wait_sleeps(1));
    for (unsigned i = 0; i < 5; ++i) {
        EXPECT_TRUE(submit(i, i)) << "every request is kicked";
        ASSERT_TRUE(wait_used(static_cast<std::uint16_t>(i + 1)));
        ASSERT_TRUE(wait_sleeps(static_cast<int>(i + 2)));
        expect_read(i, i);
    }
    EXPECT_EQ(kicks, 5);
    EXPECT_EQ(checks, 0);
    EXPECT_EQ(before_reenable, 0);
    for (bool on : enabled_at_sleep) EXPECT_TRUE(on);
    EXPECT_EQ(drv->used_flags(), 0);
    if (event_idx()) {
        EXPECT_EQ(drv->avail_event(), 5) << "avail_event tracks every pop, as before";
    }
    const PollStats st = blk->poll_stats();
    EXPECT_EQ(st.found_polling, 0u);
    EXPECT_EQ(st.found_at_reenable, 0u);
    EXPECT_EQ(st.window, 0ns);
}

TEST_P(VirtioBlkPollTest, HostileRingsWhilePollingAreHandledAsOtherwise) {
    open(20ms);
    ASSERT_TRUE(wait_sleeps(1));
    // A chain with a buffer outside RAM, kicked; while the device polls after it, a good request
    // arrives. The bad chain comes back empty and the good one is served by the poll.
    const virtio_blk_outhdr hdr{VIRTIO_BLK_T_IN, 0, 0};
    mem().write(kHdr, &hdr, sizeof hdr);
    drv->add_chain({Drv::rd(kHdr, 16), Drv::wr(0x200000, kLen), Drv::wr(kStatus, 1)});
    add_on_check = 1;
    ASSERT_TRUE(drv->needs_kick(event_idx()));
    blk->queue_notify(0);
    ASSERT_TRUE(wait_used(2));
    ASSERT_TRUE(wait_sleeps(2));
    EXPECT_EQ(drv->used(0).len, 0u) << "the bad chain comes back empty";
    expect_read(1, 1);
    EXPECT_EQ(irq->resets_needed, 0);
    EXPECT_EQ(blk->poll_stats().found_polling, 1u);
    // A broken ring (head index == queue size) published while polling: NEEDS_RESET, polling
    // ends, nothing more is served.
    hostile_on_check = 1;
    EXPECT_TRUE(submit(5, 5));
    ASSERT_TRUE(irq->wait_for([&] { return irq->resets_needed.load() == 1; }));
    ASSERT_TRUE(wait_sleeps(3)) << "polling ends on a broken queue";
    EXPECT_EQ(drv->used_idx(), 3) << "request 5 served, the bad head not";
    expect_read(5, 5);
    // The avail idx jumping too far ahead while polling breaks the queue the same way. The new
    // activation polls right away (kicked by the activation itself).
    blk->reset();
    hostile_on_check = 2;
    activate(0x4000);
    ASSERT_TRUE(irq->wait_for([&] { return irq->resets_needed.load() == 2; }));
    ASSERT_TRUE(wait_sleeps(4));
    EXPECT_EQ(drv->used_idx(), 0);
    // After a reset the device serves again.
    blk->reset();
    activate(0x1000);
    submit(0, 0);
    ASSERT_TRUE(wait_used(1));
    expect_read(0, 0);
    EXPECT_EQ(irq->resets_needed, 2);
}

TEST_P(VirtioBlkPollTest, ResetWhilePollingEndsThePollAndLeavesTheOldRingAlone) {
    open(10s);  // a window far longer than the test: only the reset can end it
    ASSERT_TRUE(irq->wait_for([&] { return checks.load() > 0; })) << "the activation starts a poll";
    EXPECT_FALSE(submit(0, 0)) << "the device polls with kicks off";
    ASSERT_TRUE(wait_used(1));
    const int checks_before = checks.load();
    ASSERT_TRUE(irq->wait_for([&] { return checks.load() > checks_before; })) << "still polling";
    blk->reset();
    ASSERT_TRUE(wait_sleeps(1)) << "the reset ended the poll";
    // The old ring is the driver's now: snapshot it; nothing may change it from here on.
    std::vector<std::uint8_t> old_ring(drv->end() - drv->desc_addr());
    mem().read(drv->desc_addr(), old_ring.data(), old_ring.size());
    auto old_drv = std::move(drv);
    activate(0x4000);
    submit(1, 1);  // kicked or polled: either way served
    ASSERT_TRUE(wait_used(1));
    expect_read(1, 1);
    std::vector<std::uint8_t> now(old_ring.size());
    mem().read(old_drv->desc_addr(), now.data(), now.size());
    EXPECT_EQ(now, old_ring);
    // Shutdown while polling (the new activation polls for 10 s) ends the poll too.
    const auto t0 = std::chrono::steady_clock::now();
    blk.reset();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

INSTANTIATE_TEST_SUITE_P(Suppression, VirtioBlkPollTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "event_idx" : "no_notify_flag"; });

}  // namespace
}  // namespace vmm::virtio_blk
