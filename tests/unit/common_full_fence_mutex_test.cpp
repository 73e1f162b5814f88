// common/full_fence_mutex.h: a mutex (threads contending for it each get it alone, sleepers are
// woken, std::condition_variable_any waits with it) whose unlock() is a full barrier: a store
// made before it is visible to another thread before a load made after it is performed. The
// last is the store-buffering litmus test (the reordering x86 allows without a barrier, and
// which VirtioBlk's settle_asking relies on the unlock to forbid).
#include "common/full_fence_mutex.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace vmm {
namespace {

TEST(FullFenceMutexTest, ContendingThreadsEachHoldItAlone) {
    FullFenceMutex mu;
    std::uint64_t counter = 0;  // plain: only the mutex keeps the increments apart
    int inside = 0;
    bool overlapped = false;
    constexpr int kThreads = 4, kRounds = 50000;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < kRounds; ++i) {
                std::lock_guard lock(mu);
                if (++inside != 1) overlapped = true;
                ++counter;
                if (i % 1000 == 0) std::this_thread::yield();  // held while descheduled: others sleep on it
                --inside;
            }
        });
    for (auto& t : threads) t.join();
    EXPECT_FALSE(overlapped);
    EXPECT_EQ(counter, std::uint64_t{kThreads} * kRounds);
}

TEST(FullFenceMutexTest, TryLockFailsWhileItIsHeld) {
    FullFenceMutex mu;
    ASSERT_TRUE(mu.try_lock());
    std::thread other([&] { EXPECT_FALSE(mu.try_lock()); });
    other.join();
    mu.unlock();
    std::thread again([&] {
        EXPECT_TRUE(mu.try_lock());
        mu.unlock();
    });
    again.join();
}

TEST(FullFenceMutexTest, ASleeperIsWokenByTheUnlock) {
    FullFenceMutex mu;
    mu.lock();
    std::atomic<bool> got{false};
    std::thread sleeper([&] {
        mu.lock();  // blocks: marked contended, sleeps on the futex
        got = true;
        mu.unlock();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    EXPECT_FALSE(got);
    mu.unlock();
    sleeper.join();
    EXPECT_TRUE(got);
}

TEST(FullFenceMutexTest, ConditionVariableAnyWaitsWithIt) {
    FullFenceMutex mu;
    std::condition_variable_any cv;
    bool ready = false;
    std::thread waiter([&] {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return ready; });
        EXPECT_TRUE(ready);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    {
        std::lock_guard lock(mu);
        ready = true;
    }
    cv.notify_all();
    waiter.join();
}

// Store buffering: one thread stores x under the lock, unlocks, loads y; the other stores y
// with a barrier and loads x. Both loads finding 0 means a store still sat in a store buffer while its
// thread's later load went ahead: forbidden when unlock() is a full barrier (an unlock that is
// only a release store, which x86 compiles to a plain mov, shows it in a fraction of the rounds).
TEST(FullFenceMutexTest, AStoreBeforeTheUnlockIsSeenBeforeALoadAfterIt) {
    if (std::thread::hardware_concurrency() < 2) GTEST_SKIP() << "needs two CPUs to race the threads";
    FullFenceMutex mu;
    std::atomic<int> x{0}, y{0};
    std::atomic<int> round{0}, arrived{0};
    constexpr int kRounds = 200000;
    std::vector<int> r1(kRounds), r2(kRounds);
    std::thread other([&] {
        for (int i = 0; i < kRounds; ++i) {
            while (round.load(std::memory_order_acquire) != i) {
            }
            y.exchange(1, std::memory_order_seq_cst);  // a store and a full barrier (a fence ThreadSanitizer drops)
            r2[i] = x.load(std::memory_order_relaxed);
            arrived.fetch_add(1, std::memory_order_acq_rel);
        }
    });
    int both_zero = 0;
    for (int i = 0; i < kRounds; ++i) {
        x.store(0, std::memory_order_relaxed);
        y.store(0, std::memory_order_relaxed);
        round.store(i, std::memory_order_release);  // go
        mu.lock();
        x.store(1, std::memory_order_relaxed);
        mu.unlock();
        r1[i] = y.load(std::memory_order_relaxed);
        while (arrived.load(std::memory_order_acquire) != i + 1) {
        }
        if (r1[i] == 0 && r2[i] == 0) ++both_zero;
    }
    other.join();
    EXPECT_EQ(both_zero, 0) << "of " << kRounds << " rounds";
}

}  // namespace
}  // namespace vmm
