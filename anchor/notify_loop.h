// NotifyLoop: the anchor's device-notification thread ("notify"). Virtio queue notifications
// arrive as KVM ioeventfds (the guest's write to a notify address signals an eventfd inside
// KVM, without an exit to the vCPU thread); this thread waits on all of them with one
// Boost.Asio io_context and calls the device's queue_notify(). Devices do their I/O on their
// own workers, so a slow disk never delays another device's notification.
//
// Threads: watch() at setup (before start()) or from any thread later; callbacks run on the
// notify thread only. stop() (or the destructor) joins the thread.
#pragma once

#include "common/fd.h"

#include <boost/asio.hpp>

#include <functional>
#include <future>
#include <memory>
#include <thread>
#include <vector>

namespace vmm::anchor {

class NotifyLoop {
public:
    NotifyLoop();
    ~NotifyLoop();
    NotifyLoop(const NotifyLoop&) = delete;
    NotifyLoop& operator=(const NotifyLoop&) = delete;

    // Calls `on_signal` each time `eventfd` is signalled (coalesced: several signals between
    // two reads are one call, as for an interrupt). Takes a duplicate of the fd.
    void watch(int eventfd, std::function<void()> on_signal);
    // Runs `work` on the notify thread (device queue work that must not run on a vCPU).
    void post(std::function<void()> work) { boost::asio::post(io_, std::move(work)); }
    // The loop's io_context, for device backends that do their socket work on this thread.
    boost::asio::io_context& io() noexcept { return io_; }
    // Starts the thread; it calls `on_thread_start` (when set) first thing, before it serves
    // anything (it may block: stop() joins the thread, so whoever blocks it must let it go).
    void start(std::function<void()> on_thread_start = {});
    void stop();

private:
    struct Watch;
    void arm(const std::shared_ptr<Watch>& w);

    boost::asio::io_context io_;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
    std::vector<std::shared_ptr<Watch>> watches_;
    std::thread thread_;
    std::future<void> finished_;  // ready when the thread's io_.run() returned
    bool stopping_ = false;
};

}  // namespace vmm::anchor
