// AdaptivePoll (devicemodel/virtio/adaptive_poll.h): the poll window grows when a request
// arrives just after it, shrinks when requests come later than the maximum, when the poller was
// preempted or when the kick came from the CPU it polled on, stays when polling finds work;
// max 0 never polls, adaptive=false never changes.
#include "devicemodel/virtio/adaptive_poll.h"

#include <gtest/gtest.h>

namespace vmm::virtio {
namespace {

using namespace std::chrono_literals;
using ns = AdaptivePoll::ns;

TEST(AdaptivePollTest, ZeroMaxIsOffForGood) {
    AdaptivePoll p(0ns);
    EXPECT_EQ(p.window(), 0ns);
    p.woke_after(1us);
    p.woke_after(1s);
    EXPECT_EQ(p.window(), 0ns);
    AdaptivePoll negative(-5ns);
    EXPECT_EQ(negative.window(), 0ns);
}

TEST(AdaptivePollTest, StartsAtMaxAndKeepsTheWindowWhilePollingFindsWork) {
    AdaptivePoll p(32us);
    EXPECT_EQ(p.window(), 32us);
    for (int i = 0; i < 100; ++i) p.found_while_polling(10us);
    EXPECT_EQ(p.window(), 32us);
    p.woke_after(20us);  // within the window (a kick that raced with polling): no change
    EXPECT_EQ(p.window(), 32us);
}

TEST(AdaptivePollTest, ShrinksToZeroWhenTheGuestIsSlowerThanMax) {
    AdaptivePoll p(32us);
    p.woke_after(1ms);
    EXPECT_EQ(p.window(), 16us);
    p.woke_after(1ms);
    p.woke_after(1ms);
    p.woke_after(1ms);
    EXPECT_EQ(p.window(), 2us);
    p.woke_after(1ms);
    EXPECT_EQ(p.window(), 1us);
    p.woke_after(1ms);
    EXPECT_EQ(p.window(), 0ns) << "below the floor polling stops";
    p.woke_after(1ms);
    EXPECT_EQ(p.window(), 0ns);
}

TEST(AdaptivePollTest, GrowsBackWhenRequestsComeJustAfterTheWindow) {
    AdaptivePoll p(32us);
    for (int i = 0; i < 10; ++i) p.woke_after(1s);
    ASSERT_EQ(p.window(), 0ns);
    p.woke_after(10us);  // would have been caught by a longer window
    EXPECT_EQ(p.window(), AdaptivePoll::kGrowStart);
    p.woke_after(10us);
    EXPECT_EQ(p.window(), 8us);
    p.woke_after(10us);
    EXPECT_EQ(p.window(), 16us);
    p.woke_after(20us);
    EXPECT_EQ(p.window(), 32us);
    p.woke_after(30us);
    EXPECT_EQ(p.window(), 32us) << "capped at max";
    p.woke_after(33us);
    EXPECT_EQ(p.window(), 16us) << "later than max: shrink";
}

TEST(AdaptivePollTest, ASmallMaxGrowsStraightToMax) {
    AdaptivePoll p(3us);
    p.woke_after(1s);
    p.woke_after(1s);
    ASSERT_EQ(p.window(), 0ns);
    p.woke_after(2us);
    EXPECT_EQ(p.window(), 3us);
}

TEST(AdaptivePollTest, APreemptedPollerBacksOff) {
    AdaptivePoll p(32us);
    EXPECT_FALSE(p.check_gap(200ns));
    EXPECT_FALSE(p.check_gap(AdaptivePoll::kPreemptedGap));
    EXPECT_EQ(p.window(), 32us);
    EXPECT_TRUE(p.check_gap(3ms)) << "a time slice of another task";
    EXPECT_EQ(p.window(), 16us);
    for (int i = 0; i < 5; ++i) p.check_gap(3ms);
    EXPECT_EQ(p.window(), 0ns);
}

TEST(AdaptivePollTest, AKickFromThePollingCpuShrinksInsteadOfGrowing) {
    AdaptivePoll p(32us);
    p.kicked_from_polling_cpu();
    EXPECT_EQ(p.window(), 16us);
    for (int i = 0; i < 5; ++i) p.kicked_from_polling_cpu();
    EXPECT_EQ(p.window(), 0ns);
    p.kicked_from_polling_cpu();
    EXPECT_EQ(p.window(), 0ns) << "and a driver on that CPU never grows it back";
    p.woke_after(3us);  // a kick from another CPU, soon: grow again
    EXPECT_EQ(p.window(), AdaptivePoll::kGrowStart);
}

TEST(AdaptivePollTest, NonAdaptiveKeepsMax) {
    AdaptivePoll p(32us, false);
    p.woke_after(1s);
    EXPECT_TRUE(p.check_gap(1ms));
    p.kicked_from_polling_cpu();
    EXPECT_EQ(p.window(), 32us);
    p.woke_after(10us);
    EXPECT_EQ(p.window(), 32us);
}

}  // namespace
}  // namespace vmm::virtio
