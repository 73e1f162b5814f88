// common/thread_stack.h: threads made after set_default_thread_stack get that stack size, and
// their stack mapping is too small to hold a 2 MiB transparent huge page. Runs in a forked child:
// the default is process-wide and would change every later test's threads.
#include "common/thread_stack.h"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <thread>

namespace vmm {
namespace {

std::size_t stack_size_of_a_new_thread() {
    std::size_t size = 0;
    std::thread t([&] {
        pthread_attr_t attr;
        if (::pthread_getattr_np(::pthread_self(), &attr) != 0) return;
        ::pthread_attr_getstacksize(&attr, &size);
        ::pthread_attr_destroy(&attr);
    });
    t.join();
    return size;
}

TEST(ThreadStackTest, NewThreadsGetTheDefaultSetForTheProcess) {
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        const std::size_t before = stack_size_of_a_new_thread();
        set_default_thread_stack(kThreadStackBytes);
        const std::size_t after = stack_size_of_a_new_thread();
        // 0: ok; else which check failed.
        ::_exit(before == kThreadStackBytes ? 1 : after != kThreadStackBytes ? 2 : 0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "1: the default was 1 MiB already; 2: the new default did not apply";
    EXPECT_LT(kThreadStackBytes, std::size_t{2} << 20) << "a stack mapping that can hold a 2 MiB huge page";
}

TEST(ThreadStackTest, ASizeBelowTheMinimumIsAnError) {
    EXPECT_THROW(set_default_thread_stack(1), std::system_error);
}

}  // namespace
}  // namespace vmm
