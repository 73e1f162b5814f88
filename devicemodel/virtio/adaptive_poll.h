// AdaptivePoll: how long a device thread keeps polling a virtqueue after serving it, before it
// re-enables the driver's kicks and sleeps. The rule is QEMU's adaptive polling (util/aio-posix.c,
// iothread `poll-max-ns`), applied per queue:
//  - the next request arrived while polling: the window was right, keep it;
//  - it arrived after the window ran out but within `max` of the start of polling: a longer
//    window would have caught it without a wake-up, so double the window (from kGrowStart when
//    it was 0), up to max;
//  - it arrived later than max (or never: the guest is idle): halve the window; below
//    kShrinkFloor it becomes 0, and the thread sleeps right away until a short gap grows it;
//  - the polling thread itself was preempted (two consecutive looks at the ring more than
//    kPreemptedGap apart): halve the window too. Unlike QEMU's rule this notices an
//    oversubscribed host, where a spinning thread only takes CPU time from the driver it waits
//    for (and loses the wake-up preemption a sleeping thread gets), so polling must back off
//    even though it still "finds" work;
//  - the kick that woke the thread came from the CPU it had been polling on: the driver shared
//    that CPU and could only submit once polling gave it up, so a longer window would only
//    delay it more (QEMU's rule would grow it: the request came "just after" the window). Halve
//    it instead; with both on one CPU polling decays to 0 and stays there.
// A fresh device starts at max. max 0 turns polling off for good; adaptive=false keeps the
// window at max (tests, benchmarks).
//
// Pure and not thread-safe: the device's dispatcher thread owns it.
#pragma once

#include <algorithm>
#include <chrono>

namespace vmm::virtio {

class AdaptivePoll {
public:
    using ns = std::chrono::nanoseconds;
    static constexpr ns kGrowStart{4000};   // QEMU's first step up from 0
    static constexpr ns kShrinkFloor{1000};  // shorter windows are not worth a clock read
    // One look at the ring takes well under a microsecond; a gap this long means the thread was
    // off the CPU (an interrupt rarely takes so long, a scheduler time slice always does).
    static constexpr ns kPreemptedGap{20000};

    explicit AdaptivePoll(ns max = ns{0}, bool adaptive = true)
        : max_(std::max(max, ns{0})), window_(max_), adaptive_(adaptive) {}

    ns max() const noexcept { return max_; }
    // How long to poll now; 0 = do not poll.
    ns window() const noexcept { return window_; }

    // Polling found work `waited` after it started (waited <= window()).
    void found_while_polling(ns) noexcept {}

    // The window ran out (or was 0) and the thread slept; the next request came `idle` after the
    // queue went quiet (the start of the poll window). A sleep that ends for another reason
    // (reset, shutdown) is not reported.
    void woke_after(ns idle) noexcept {
        if (!adaptive_ || max_ == ns{0}) return;
        if (idle > max_)
            shrink();
        else if (idle > window_)
            window_ = window_ == ns{0} ? std::min(kGrowStart, max_) : std::min(window_ * 2, max_);
    }

    // The kick came from the CPU the thread polled on (instead of woke_after()).
    void kicked_from_polling_cpu() noexcept {
        if (adaptive_) shrink();
    }

    // Between two looks at the ring `gap` passed; true (and the window halved) when that means
    // the polling thread was preempted.
    bool check_gap(ns gap) noexcept {
        if (gap <= kPreemptedGap) return false;
        if (adaptive_) shrink();
        return true;
    }

private:
    void shrink() noexcept {
        window_ /= 2;
        if (window_ < kShrinkFloor) window_ = ns{0};
    }

    ns max_;
    ns window_;
    bool adaptive_;
};

}  // namespace vmm::virtio
