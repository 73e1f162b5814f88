// NotifyLoop: eventfd signals reach their callback on the notify thread, coalesced, and stop()
// joins cleanly with watches still armed.
#include "anchor/notify_loop.h"

#include "common/fd.h"

#include <pthread.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
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

// The start hook (the anchor's jail gate) runs first on the notify thread: nothing is served
// while it holds the thread; stop() joins once it has let go.
// stop() lets what is already queued run (a socket console's last output and its close, at the
// domain's end) and ends the watches, instead of dropping the queue.
TEST(NotifyLoopTest, StopRunsWhatIsQueuedThenEnds) {
    NotifyLoop loop;
    Fd a = make_eventfd();
    std::atomic<int> calls{0};
    loop.watch(a.get(), [&] { ++calls; });
    std::atomic<bool> gate{false};
    std::atomic<int> ran{0};
    loop.start();
    loop.post([&] {
        while (!gate.load()) std::this_thread::yield();  // holds the loop while more is queued
    });
    for (int i = 0; i < 100; ++i) loop.post([&] { ++ran; });
    std::thread opener([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        gate = true;
    });
    loop.stop();
    opener.join();
    EXPECT_EQ(ran.load(), 100) << "handlers queued before stop() were dropped";
    signal(a);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(calls.load(), 0) << "a watch fired after stop()";
}

TEST(NotifyLoopTest, TheStartHookRunsFirstOnTheNotifyThread) {
    NotifyLoop loop;
    Fd a = make_eventfd();
    std::atomic<int> calls{0};
    std::atomic<bool> release{false}, in_hook{false};
    std::string hook_thread;
    loop.watch(a.get(), [&] { ++calls; });
    loop.start([&] {
        char name[16] = {};
        ::pthread_getname_np(::pthread_self(), name, sizeof name);
        hook_thread = name;
        in_hook = true;
        while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    });
    ASSERT_TRUE(eventually([&] { return in_hook.load(); }));
    signal(a);
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    EXPECT_EQ(calls.load(), 0) << "served before the hook returned";
    release = true;
    ASSERT_TRUE(eventually([&] { return calls.load() == 1; }));
    EXPECT_EQ(hook_thread, "notify");
    loop.stop();
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
