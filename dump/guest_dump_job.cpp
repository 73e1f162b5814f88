#include "dump/guest_dump_job.h"

#include "common/error.h"
#include "common/log.h"
#include "common/thread_name.h"
#include "dump/guest_core_writer.h"

#include <fcntl.h>

#include <exception>
#include <utility>

namespace vmm::dump {
namespace {

std::string checked_path(const DumpProtocol& target) {
    if (target.kind == DumpProtocol::Kind::fd)
        throw Error("dump-guest-memory: protocol 'fd:" + target.value +
                    "' needs the descriptor itself (the constructor taking an Fd)");
    return target.value;
}

}  // namespace

GuestDumpJob::GuestDumpJob(GuestMemory memory, std::vector<VcpuDumpState> vcpus, const DumpProtocol& target,
                           CompletionCallback on_done)
    : memory_(std::move(memory)),
      vcpus_(std::move(vcpus)),
      on_done_(std::move(on_done)),
      total_(memory_.total_size()),
      thread_([this, path = checked_path(target)](std::stop_token stop) mutable {
          run(std::move(stop), std::move(path), Fd());
      }) {}

GuestDumpJob::GuestDumpJob(GuestMemory memory, std::vector<VcpuDumpState> vcpus, Fd target,
                           CompletionCallback on_done)
    : memory_(std::move(memory)),
      vcpus_(std::move(vcpus)),
      on_done_(std::move(on_done)),
      total_(memory_.total_size()),
      thread_([this, fd = std::move(target)](std::stop_token stop) mutable {
          run(std::move(stop), std::string(), std::move(fd));
      }) {}

GuestDumpJob::~GuestDumpJob() {
    thread_.request_stop();
    if (thread_.joinable()) thread_.join();
}

void GuestDumpJob::run(std::stop_token stop, std::string path, Fd fd) {
    set_thread_name("dump");
    auto log = logger("dump");
    try {
        if (!fd.valid()) {
            fd = open_dump_file(path, stop);
        } else {
            const int flags = ::fcntl(fd.get(), F_GETFL);
            if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) < 0)
                throw_errno("fcntl O_NONBLOCK on the dump fd");
        }
        log->info("dumping {} bytes of guest memory and {} vCPU(s) to {}", total_, vcpus_.size(),
                  path.empty() ? "an fd" : path);
        write_guest_core(
            fd.get(), memory_, vcpus_,
            [this](std::uint64_t completed, std::uint64_t) { completed_.store(completed, std::memory_order_relaxed); },
            stop);
        // close(2) can report a deferred write error (NFS, some FUSE file systems).
        if (::close(fd.release()) < 0) throw_errno("close dump target");
        finish(Status::completed, {});
    } catch (const std::exception& e) {
        log->warn("guest memory dump failed: {}", e.what());
        finish(Status::failed, e.what());
    }
}

void GuestDumpJob::finish(Status status, std::string error) {
    {
        std::lock_guard lock(mutex_);
        status_ = status;
        error_ = std::move(error);
    }
    const Result r = result();
    if (on_done_) {
        try {
            on_done_(r);
        } catch (const std::exception& e) {
            logger("dump")->error("dump completion callback threw: {}", e.what());
        }
    }
    {
        std::lock_guard lock(mutex_);
        ended_ = true;
    }
    ended_cv_.notify_all();
}

GuestDumpJob::Result GuestDumpJob::result() const {
    Result r;
    r.total = total_;
    // Under the lock, after the status: a final status comes with the final count (the dump
    // thread's last store precedes its unlock in finish()).
    std::lock_guard lock(mutex_);
    r.status = status_;
    r.error = error_;
    r.completed = completed_.load(std::memory_order_relaxed);
    return r;
}

GuestDumpJob::Result GuestDumpJob::wait() const {
    {
        std::unique_lock lock(mutex_);
        ended_cv_.wait(lock, [this] { return ended_; });
    }
    return result();
}

void GuestDumpJob::cancel() noexcept { thread_.request_stop(); }

const char* GuestDumpJob::status_name(Status status) noexcept {
    switch (status) {
        case Status::active: return "active";
        case Status::completed: return "completed";
        case Status::failed: return "failed";
    }
    return "failed";
}

}  // namespace vmm::dump
