#include "anchor/notify_loop.h"

#include "common/error.h"
#include "common/log.h"
#include "common/thread_name.h"

#include <fcntl.h>
#include <unistd.h>

namespace vmm::anchor {

struct NotifyLoop::Watch {
    Watch(boost::asio::io_context& io, int fd, std::function<void()> cb) : stream(io, fd), on_signal(std::move(cb)) {}
    boost::asio::posix::stream_descriptor stream;
    std::function<void()> on_signal;
    std::uint64_t counter = 0;
};

NotifyLoop::NotifyLoop() : work_(boost::asio::make_work_guard(io_)) {}

NotifyLoop::~NotifyLoop() { stop(); }

void NotifyLoop::watch(int eventfd, std::function<void()> on_signal) {
    Fd dup = dup_fd(eventfd);
    auto w = std::make_shared<Watch>(io_, dup.get(), std::move(on_signal));
    dup.release();  // the stream descriptor owns it now
    boost::asio::post(io_, [this, w] {
        watches_.push_back(w);
        arm(w);
    });
}

void NotifyLoop::arm(const std::shared_ptr<Watch>& w) {
    w->stream.async_read_some(boost::asio::buffer(&w->counter, sizeof w->counter),
                              [this, w](const boost::system::error_code& ec, std::size_t) {
                                  if (ec) {
                                      if (ec != boost::asio::error::operation_aborted)
                                          logger("anchor")->error("notify eventfd: {}", ec.message());
                                      return;
                                  }
                                  try {
                                      w->on_signal();
                                  } catch (const std::exception& e) {
                                      logger("anchor")->error("queue notification: {}", e.what());
                                  }
                                  arm(w);
                              });
}

void NotifyLoop::start(std::function<void()> on_thread_start) {
    if (thread_.joinable()) return;
    std::promise<void> done;
    finished_ = done.get_future();
    thread_ = std::thread([this, start = std::move(on_thread_start), done = std::move(done)]() mutable {
        set_thread_name("notify");
        if (start) start();
        io_.run();
        done.set_value();
    });
}

void NotifyLoop::stop() {
    if (thread_.joinable() && !stopping_) {
        stopping_ = true;
        // What is queued runs first (a socket console's last output and its close); then the
        // watches end and the loop returns once it has no work left. Whatever still holds it
        // after a second (a backend op that never completes) is cut off.
        boost::asio::post(io_, [this] {
            for (auto& w : watches_) {
                boost::system::error_code ignored;
                w->stream.close(ignored);
            }
            work_.reset();
        });
        if (finished_.wait_for(std::chrono::seconds(1)) != std::future_status::ready) io_.stop();
    } else {
        work_.reset();
        io_.stop();
    }
    if (thread_.joinable()) thread_.join();
    watches_.clear();
}

}  // namespace vmm::anchor
