// JailGate: where the anchor's threads wait until the process is jailed (Machine::run). The
// vCPU threads and the device I/O threads (virtio-blk, virtio-net, notify) are made before the
// jail step; they wait here before they touch the guest, and once the main thread has dropped
// capabilities and installed the process filter (TSYNC, which fails once one thread's filters
// differ from the others') it opens the gate and each thread stacks its own filter.
//
// The gate always opens: open(mode) after the jail step, abandon() when the jail step failed
// (the domain is stopping) or the Machine is torn down without reaching it, so a thread held
// here never blocks a shutdown (the devices join their threads in their destructors). The
// first of the two wins.
//
// Threads: wait() on any thread, any number of times (after the gate opened it returns at
// once: a thread made later stacks its filter without waiting); open()/abandon() on any.
#pragma once

#include "jail/seccomp_policy.h"

#include <condition_variable>
#include <mutex>
#include <optional>

namespace vmm::anchor {

class JailGate {
public:
    // The process is jailed: waiters go on and stack their own filter in `mode`.
    void open(jail::SeccompMode mode) { release(mode); }
    // No jail comes: waiters go on without a filter of their own.
    void abandon() { release(std::nullopt); }
    // Blocks until open() or abandon(); returns open()'s mode, or nullopt when abandoned.
    std::optional<jail::SeccompMode> wait() {
        std::unique_lock lock(mutex_);
        cv_.wait(lock, [this] { return released_; });
        return mode_;
    }

private:
    void release(std::optional<jail::SeccompMode> mode) {
        {
            std::lock_guard lock(mutex_);
            if (released_) return;
            released_ = true;
            mode_ = mode;
        }
        cv_.notify_all();
    }

    std::mutex mutex_;
    std::condition_variable cv_;
    bool released_ = false;
    std::optional<jail::SeccompMode> mode_;
};

}  // namespace vmm::anchor
