// GuestDumpJob: one dump-guest-memory run on its own thread ("dump"), as QEMU's detach=true:
// the QMP command returns as soon as the job is constructed, query-dump reads result(), and the
// completion callback (for the DUMP_COMPLETED event) fires once on the dump thread.
//
// Constructed, queried and destroyed on the anchor's main (QMP) thread; result() and wait() are
// safe from any thread. The destructor cancels a running dump and joins the thread (so the
// callback has returned, with status failed and "dump cancelled", before it does). Guest RAM is
// read while the job runs: the mappings behind `memory` must outlive the job, and the caller
// pauses the vCPUs for a consistent image (QEMU stops the VM while it dumps).
#pragma once

#include "common/fd.h"
#include "devicemodel/bus/guest_memory.h"
#include "dump/dump_target.h"
#include "dump/vcpu_dump_state.h"

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace vmm::dump {

class GuestDumpJob {
public:
    // QAPI DumpStatus (qapi/dump.json) minus "none", which means "no job".
    enum class Status { active, completed, failed };

    // query-dump's DumpQueryResult, plus DUMP_COMPLETED's `error`. completed/total count guest
    // RAM bytes as QEMU does (guest_core_writer.h).
    struct Result {
        Status status = Status::active;
        std::uint64_t completed = 0;
        std::uint64_t total = 0;
        std::string error;  // set when failed
    };

    // Called once on the dump thread when the job ends (completed or failed).
    using CompletionCallback = std::function<void(const Result&)>;

    // Dumps to `target`. file:PATH is opened on the dump thread (a FIFO blocks there until its
    // reader comes). fd:NAME throws vmm::Error at once: there is no QMP getfd to name an fd yet.
    GuestDumpJob(GuestMemory memory, std::vector<VcpuDumpState> vcpus, const DumpProtocol& target,
                 CompletionCallback on_done = {});
    // Dumps to an open descriptor (made non-blocking so the dump stays cancellable).
    GuestDumpJob(GuestMemory memory, std::vector<VcpuDumpState> vcpus, Fd target,
                 CompletionCallback on_done = {});
    GuestDumpJob(const GuestDumpJob&) = delete;
    GuestDumpJob& operator=(const GuestDumpJob&) = delete;
    ~GuestDumpJob();

    Result result() const;
    // Blocks until the job has ended and its callback has returned.
    Result wait() const;
    // Asks a running dump to stop; it ends as failed with "dump cancelled".
    void cancel() noexcept;

    // "active" | "completed" | "failed", as QMP spells DumpStatus.
    static const char* status_name(Status status) noexcept;

private:
    void run(std::stop_token stop, std::string path, Fd fd);
    void finish(Status status, std::string error);

    GuestMemory memory_;
    std::vector<VcpuDumpState> vcpus_;
    CompletionCallback on_done_;
    const std::uint64_t total_;
    std::atomic<std::uint64_t> completed_{0};

    mutable std::mutex mutex_;
    mutable std::condition_variable ended_cv_;
    Status status_ = Status::active;  // guarded by mutex_
    std::string error_;              // guarded by mutex_
    bool ended_ = false;             // guarded by mutex_: the callback has returned

    std::jthread thread_;  // last: starts after, and is joined before, everything above
};

}  // namespace vmm::dump
