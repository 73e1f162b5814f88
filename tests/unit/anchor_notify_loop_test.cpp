// NotifyLoop: eventfd signals reach their callback on the notify thread, coalesced, and stop()
// joins cleanly with watches still armed.
#include "anchor/notify_loop.h"

#include "common/fd.h"

#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace vmm::anchor {
namespace {

void signal(const Fd& fd) {
    const std::uint64_t one = 1;
    ASSERT_EQ(::write(fd.get(), &one, sizeof one), 8);
}

template <typename Pred>
bool eventually(Pred pred) {
    for (int i = 0; i < 5000 && !pred(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return pred();
}

TEST(NotifyLoopTest, EachEventfdCallsItsOwnCallbackOnTheNotifyThread) {
    NotifyLoop loop;
    Fd a = make_eventfd(), b = make_eventfd();
    std::atomic<int> a_calls{0}, b_calls{0};
    std::atomic<bool> wrong_thread{false};
    const auto main_id = std::this_thread::get_id();
    loop.watch(a.get(), [&] {
        if (std::this_thread::get_id() == main_id) wrong_thread = true;
        ++a_calls;
    });
    loop.watch(b.get(), [&] { ++b_calls; });
    loop.start();
    signal(a);
    ASSERT_TRUE(eventually([&] { return a_calls.load() == 1; }));
    EXPECT_EQ(b_calls.load(), 0);
    signal(b);
    signal(a);
    ASSERT_TRUE(eventually([&] { return a_calls.load() == 2 && b_calls.load() == 1; }));
    EXPECT_FALSE(wrong_thread.load());
    loop.stop();
    signal(a);  // after stop: nothing runs, nothing crashes
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(a_calls.load(), 2);
}

TEST(NotifyLoopTest, SignalsBeforeTheCallbackRunsAreCoalescedNotLost) {
    NotifyLoop loop;
    Fd a = make_eventfd();
    std::atomic<int> calls{0};
    loop.watch(a.get(), [&] { ++calls; });
    for (int i = 0; i < 5; ++i) signal(a);  // before start: one pending counter of 5
    loop.start();
    ASSERT_TRUE(eventually([&] { return calls.load() >= 1; }));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(calls.load(), 1);
}

}  // namespace
}  // namespace vmm::anchor
