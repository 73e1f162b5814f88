#include "jail/capabilities.h"

#include "common/error.h"
#include "common/small_file.h"

#include <dirent.h>
#include <linux/capability.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <set>
#include <string>
#include <ctime>

namespace vmm::jail {

namespace {

// What every thread applies; written before the broadcast, read in the signal handler.
struct DropPlan {
    CapMask keep = 0;
    bool drop_bounding = false;
    int last_cap = CAP_LAST_CAP;
    __user_cap_data_struct data[2]{};
};
DropPlan g_plan;
// Which threads have run the handler (their tids, in answer order), and the first failure.
constexpr int kMaxAnswers = 4096;
std::atomic<pid_t> g_answers[kMaxAnswers];
std::atomic<int> g_answer_count{0};
std::atomic<int> g_error{0};
std::atomic<pid_t> g_error_tid{0};

// Drops what is outside `keep` from the calling thread's bounding set; 0, or the errno (and
// the capability that failed in *failed). Raw syscalls only (it also runs in the signal handler).
// The callers hold CAP_SETPCAP, with which dropping a capability that is already out of the
// set succeeds too: one prctl per capability, no PR_CAPBSET_READ first.
int drop_bounding_on_this_thread(CapMask keep, int last_cap, int* failed = nullptr) {
    for (int cap = 0; cap <= last_cap; ++cap) {
        if (keep & cap_bit(cap)) continue;
        if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
            if (failed) *failed = cap;
            return errno;
        }
    }
    return 0;
}

// Runs on each thread (directly, or in the signal handler): raw syscalls only.
int drop_on_this_thread() {
    if (g_plan.drop_bounding)
        if (const int err = drop_bounding_on_this_thread(g_plan.keep, g_plan.last_cap); err != 0) return err;
    // Ambient capabilities would survive execve: none.
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return errno;
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    if (::syscall(SYS_capset, &header, g_plan.data) != 0) return errno;
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno;
    return 0;
}

void on_drop_signal(int) {
    const int saved = errno;
    const auto tid = static_cast<pid_t>(::syscall(SYS_gettid));
    if (const int err = drop_on_this_thread(); err != 0) {
        int none = 0;
        if (g_error.compare_exchange_strong(none, err)) g_error_tid.store(tid);
    }
    if (const int i = g_answer_count.fetch_add(1); i < kMaxAnswers) g_answers[i].store(tid);
    // The broadcasting thread sleeps on the count (a futex word): wake it now rather than let
    // it find the answer at its next poll.
    ::syscall(SYS_futex, reinterpret_cast<int*>(&g_answer_count), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
    errno = saved;
}

// Sleeps until the answer count is no longer `seen`, at most `timeout` (or a signal).
void wait_for_answers_after(int seen, std::chrono::microseconds timeout) {
    static_assert(sizeof(std::atomic<int>) == sizeof(int) && std::atomic<int>::is_always_lock_free);
    const auto s = std::chrono::duration_cast<std::chrono::seconds>(timeout);
    timespec ts{static_cast<time_t>(s.count()), static_cast<long>((timeout - s).count() * 1000)};
    ::syscall(SYS_futex, reinterpret_cast<int*>(&g_answer_count), FUTEX_WAIT_PRIVATE, seen, &ts, nullptr, 0);
}

std::set<pid_t> answered() {
    std::set<pid_t> tids;
    const int n = std::min(g_answer_count.load(), kMaxAnswers);
    for (int i = 0; i < n; ++i)
        if (const pid_t tid = g_answers[i].load(); tid != 0) tids.insert(tid);
    return tids;
}

std::set<pid_t> thread_ids() {
    std::set<pid_t> tids;
    DIR* d = ::opendir("/proc/self/task");
    if (d == nullptr) throw_errno("opendir /proc/self/task");
    while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        tids.insert(static_cast<pid_t>(std::stoi(e->d_name)));
    }
    ::closedir(d);
    return tids;
}

bool thread_alive(pid_t tid) { return ::access(("/proc/self/task/" + std::to_string(tid)).c_str(), F_OK) == 0; }

CapMask mask_of(const __user_cap_data_struct (&d)[2], __u32 __user_cap_data_struct::*field) {
    return CapMask{d[0].*field} | (CapMask{d[1].*field} << 32);
}

bool nothing_to_drop(CapMask keep, const CapabilityState& now) {
    if ((now.effective | now.permitted | now.inheritable) & ~keep) return false;
    if (::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) return false;
    const int last = last_capability();
    for (int cap = 0; cap <= last; ++cap) {
        if (keep & cap_bit(cap)) continue;
        if (::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1) return false;
        if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) == 1) return false;
    }
    return true;
}

}  // namespace

int last_capability() {
    const auto v = read_small_number("/proc/sys/kernel/cap_last_cap");
    return v && *v <= 63 ? static_cast<int>(*v) : CAP_LAST_CAP;
}

CapMask anchor_kept_capabilities(bool has_tap_nics, bool has_vfio) {
    CapMask keep = 0;
    // TUNSETIFF on a tap the anchor does not own.
    if (has_tap_nics) keep |= cap_bit(CAP_NET_ADMIN);
    // VFIO_IOMMU_MAP_DMA pins guest RAM: locked memory beyond RLIMIT_MEMLOCK.
    if (has_vfio) keep |= cap_bit(CAP_IPC_LOCK);
    return keep;
}

CapabilityState current_capabilities() {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    if (::syscall(SYS_capget, &header, data) != 0) throw_errno("capget");
    return {mask_of(data, &__user_cap_data_struct::effective), mask_of(data, &__user_cap_data_struct::permitted),
            mask_of(data, &__user_cap_data_struct::inheritable)};
}

bool in_bounding_set(int cap) { return ::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1; }

namespace {
// What the process's bounding set is known to lie within: everything until drop_bounding_set
// (single-threaded) narrows it.
std::atomic<CapMask> g_bounding_within{~CapMask{0}};
}  // namespace

void drop_bounding_set(CapMask keep) {
    if ((current_capabilities().effective & cap_bit(CAP_SETPCAP)) == 0) return;
    int cap = -1;
    if (const int err = drop_bounding_on_this_thread(keep, last_capability(), &cap); err != 0)
        throw_errno("PR_CAPBSET_DROP " + std::to_string(cap), err);
    g_bounding_within.store(keep);
}

namespace {
// Whether the calling thread's bounding set still holds a capability outside `keep`. Known
// without asking the kernel once drop_bounding_set narrowed it to within `keep`: nothing
// raises a bounding set again.
bool bounding_set_exceeds(CapMask keep, int last) {
    if ((g_bounding_within.load() & ~keep) == 0) return false;
    for (int cap = 0; cap <= last; ++cap)
        if (!(keep & cap_bit(cap)) && ::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1) return true;
    return false;
}
}  // namespace

void drop_capabilities(CapMask keep) {
    const CapabilityState now = current_capabilities();
    // Nothing left to drop on this thread: then on none. Every thread got its capabilities from
    // the thread that made it, and only this function lowers them after threads exist — a
    // process whose privileges were lowered while it was single-threaded (the jail,
    // jail/mount_jail.h, which has no /proc to list threads in) has nothing to broadcast.
    if (nothing_to_drop(keep, now)) return;
    const CapMask kept = now.permitted & keep;
    g_plan = DropPlan{};
    g_plan.keep = keep;
    g_plan.last_cap = last_capability();
    // Threads inherit their creator's bounding set: when this thread's holds nothing more
    // (drop_bounding_set ran before the threads were made), neither does any other's, and no
    // thread walks it again.
    g_plan.drop_bounding = (now.effective & cap_bit(CAP_SETPCAP)) != 0 && bounding_set_exceeds(keep, g_plan.last_cap);
    for (int i = 0; i < 2; ++i) {
        const auto word = static_cast<__u32>(kept >> (32 * i));
        g_plan.data[i].effective = word;
        g_plan.data[i].permitted = word;
        g_plan.data[i].inheritable = 0;
    }

    // Every other thread first, then this one (the bounding set and capabilities are per
    // thread). All of them are signalled at once and answer in parallel: one round trip for
    // the process rather than one per thread (start-up time, issue #8).
    const int sig = SIGRTMIN + 4;
    struct sigaction sa {}, old {};
    sa.sa_handler = on_drop_signal;
    sa.sa_flags = SA_RESTART;  // blocking calls in the other threads carry on
    sigemptyset(&sa.sa_mask);
    g_answer_count.store(0);
    for (auto& a : g_answers) a.store(0, std::memory_order_relaxed);
    g_error.store(0);
    g_error_tid.store(0);
    if (::sigaction(sig, &sa, &old) != 0) throw_errno("sigaction (capability drop)");
    const pid_t self = static_cast<pid_t>(::syscall(SYS_gettid));
    std::set<pid_t> done{self};
    std::string failure;
    // A thread created while this runs copies its creator's credentials: list again until a
    // round finds nobody new.
    for (int round = 0; round < 8 && failure.empty(); ++round) {
        std::set<pid_t> signalled;
        for (pid_t tid : thread_ids()) {
            if (!done.insert(tid).second) continue;
            if (::syscall(SYS_tgkill, ::getpid(), tid, sig) != 0) {
                if (errno == ESRCH) continue;  // it has just exited
                failure = "tgkill thread " + std::to_string(tid) + ": " + std::strerror(errno);
                break;
            }
            signalled.insert(tid);
        }
        if (signalled.empty()) break;
        // Wait until each has answered or exited: asleep on the answer count, which each
        // answer wakes; every millisecond without one, look for threads that exited instead.
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
        while (failure.empty()) {
            const int seen = g_answer_count.load();
            for (pid_t tid : answered()) signalled.erase(tid);
            if (signalled.empty()) break;
            wait_for_answers_after(seen, std::chrono::milliseconds(1));
            if (g_answer_count.load() != seen) continue;
            std::erase_if(signalled, [](pid_t tid) { return !thread_alive(tid); });
            if (signalled.empty()) break;
            if (std::chrono::steady_clock::now() > deadline)
                failure = "thread " + std::to_string(*signalled.begin()) +
                          " did not drop its capabilities (signal blocked?)";
        }
        if (const int err = g_error.load(); err != 0 && failure.empty())
            failure = "thread " + std::to_string(g_error_tid.load()) + ": " + std::strerror(err);
    }
    ::sigaction(sig, &old, nullptr);
    if (!failure.empty()) throw Error("dropping capabilities: " + failure);
    if (const int err = drop_on_this_thread(); err != 0) throw_errno("dropping capabilities", err);
}

}  // namespace vmm::jail
