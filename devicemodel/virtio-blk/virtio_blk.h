// VirtioBlk: the virtio block device (virtio 1.2 §5.2), one request queue, over a DiskImage.
//
// Features: VERSION_1, INDIRECT_DESC, EVENT_IDX, SEG_MAX, BLK_SIZE, FLUSH, DISCARD, WRITE_ZEROES,
// and RO for a read-only disk (writes, discards and write-zeroes then get VIRTIO_BLK_S_IOERR).
//
// Threads:
//  - read_config / write_config / activate / reset: vCPU threads (the transport).
//  - queue_notify (a vCPU or the I/O thread), or a signal on queue_kick_fd(0) (KVM's
//    ioeventfd, pointed straight at it: no relay thread), only wakes the device's dispatcher
//    thread ("<name>-q"), which sleeps in read() on that eventfd. It pops and parses chains
//    and hands them to the IoEngine: it enters an io_uring ring itself (reads, by default),
//    whose thread "<name>-rd" (or "<name>-io") only reaps what completes in the background, or
//    queues them for the "<name>-ioN" pool.
//    Completions write the status byte, add the chain to the used ring and call
//    VirtioInterrupt::notify_queue() from an engine thread, or from the dispatcher (a request it
//    ran inline, a read the ring completed at once).
//  - After serving the queue the dispatcher polls the avail ring for an adaptive window of up
//    to `poll_max` with the driver's kicks suppressed (VIRTQ_USED_F_NO_NOTIFY / avail_event,
//    virtio 1.2 §2.7.10), then re-enables kicks, re-checks the ring and only then sleeps.
//    Polling and kicking take no lock: the poll loop reads the avail idx through an
//    AvailIdxReader (reset() waits for a read in progress, see peek_avail()), and queue_notify
//    takes the mutex only to wake a sleeping dispatcher. A mutex held in a tight poll loop would
//    put every kicker and every completing engine thread to sleep in the kernel.
//  - Each of those threads first calls options.on_thread_start (when set).
//  - reset() waits until no request is in flight, so the device never touches guest memory
//    after it returns. A completion racing with reset() may still call notify_queue() once for the
//    old activation; the transport ignores interrupts of a device that is not DRIVER_OK.
// All device state is guarded by one mutex; VirtioInterrupt is never called with it held. Its
// unlock is a full barrier (common/full_fence_mutex.h), so the serving thread asks whether the
// driver wants an interrupt for a request it completed itself after unlocking, without a fence
// of its own, and tells the driver without taking the mutex again (settle_asking()).
#pragma once

#include "common/fd.h"
#include "common/full_fence_mutex.h"
#include "devicemodel/virtio-blk/block_request.h"
#include "devicemodel/virtio-blk/disk_image.h"
#include "devicemodel/virtio-blk/io_engine.h"
#include "devicemodel/virtio/adaptive_poll.h"
#include "devicemodel/virtio/virtio_device.h"
#include "devicemodel/virtio/virtqueue.h"

#include <linux/virtio_blk.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace spdlog {
class logger;
}

namespace vmm::virtio_blk {

// The dispatcher's poll loop, for VirtioBlkOptions::poll_hook.
enum class PollStep {
    Check,           // polling, kicks suppressed: about to look at the avail ring once more
    BeforeReenable,  // the poll window ran out with nothing found; kicks are still suppressed
    Sleep,           // about to sleep until a kick; kicks are enabled
};

struct VirtioBlkOptions {
    std::string name = "blk0";  // logger and thread names
    std::string serial;         // GET_ID answer (up to 20 bytes); default: the name
    std::uint16_t queue_size = 256;
    // io_uring when available, else the pool. Off by default: on buffered files (Linux 6.1) io_uring
    // punts writes to io-wq workers serialised per inode, and bench/virtio_blk_bench measured
    // 64 KiB writes at depth 16 several times slower than the pool (reads were ~1.3x faster).
    bool use_io_uring = false;
    // With use_io_uring off: reads still go to an io_uring ring of their own (thread
    // <name>-rd, when available), writes, flushes, discards and write-zeroes to the pool.
    // Reads from the page cache complete inside io_uring_enter, a batch per system call and
    // an interrupt per reap: at depth 32 that is twice the pool's rate (bench/RESULTS.md,
    // 2026-12-05). Ordering is unaffected: a flush covers completed writes, which all run on
    // the pool.
    bool reads_on_io_uring = true;
    unsigned io_threads = 4;    // pool size
    // A lone small read or write (nothing else in flight, at most this many bytes) is done on
    // the dispatcher thread itself instead of being handed to the engine: at queue depth 1 that
    // saves a thread hand-off per request. 0 turns it off.
    std::size_t inline_max_bytes = 64 * 1024;
    // Small writes (up to inline_max_bytes) also run on the dispatcher when others are in
    // flight, after the batch's other requests went to the engine: a buffered write to one file
    // holds the inode's lock in the kernel, so the pool's threads only serialise there and add
    // two hand-offs per write (bench/RESULTS.md, 2026-12-06, eighth session: 4 KiB writes at
    // depth 32 went from 0.73-0.86 to 0.92 of the raw pwrite loop on one thread, from 0.49-0.57
    // to 0.82-0.88 with a polled driver). What the disk makes wait must not hold up the queue: a
    // write that takes longer than inline_write_stall (dirty-page throttling, a partial block
    // read from disk) sends the rest of its batch, and every write for inline_write_backoff
    // after it, to the engine. A lone write (nothing else in flight) stays inline unless backed off.
    bool inline_writes = true;
    // Where reads go to the pool (no io_uring ring for them: use_io_uring and reads_on_io_uring
    // off, or io_uring refused, as under Docker's default seccomp profile), the dispatcher first
    // tries a batch's small reads itself with RWF_NOWAIT: what the page cache holds completes
    // at once, as a ring would complete it inside io_uring_enter, and only a read that would wait
    // for the disk goes to the pool (with whatever part was already read left out).
    bool inline_cached_reads = true;
    std::chrono::nanoseconds inline_write_stall = std::chrono::microseconds(500);
    std::chrono::nanoseconds inline_write_backoff = std::chrono::milliseconds(100);
    // Adaptive polling (devicemodel/virtio/adaptive_poll.h): after serving the queue the
    // dispatcher keeps polling the avail ring for up to this long, with the driver's kicks
    // suppressed, so a driver that submits again soon after a completion costs neither a kick
    // nor a wake-up. The window adapts between 0 and this. 0 turns polling off (the dispatcher
    // sleeps right after serving, kicks always on). Default: QEMU's iothread poll-max-ns.
    std::chrono::nanoseconds poll_max{32768};
    // false: always poll for poll_max (tests and benchmarks that want a fixed window).
    bool poll_adaptive = true;
    // false: no dispatcher thread; the caller serves the queue with serve_queue() (kicks only
    // set a flag). Benchmarks use it to measure the device model's own work on one thread, with
    // no hand-off between a driver and the dispatcher (as VirtioNet's own_thread = false does).
    // Engine threads (the ring's reaper, the pool) still run.
    bool own_thread = true;
    // Test seam: called on the dispatcher thread, without the device mutex, at each PollStep.
    std::function<void(PollStep)> poll_hook;
    // Called first thing on every thread the device starts (the dispatcher "<name>-q" and the
    // engine's "<name>-io..."), before the thread touches the disk or guest memory. It may block
    // (the destructor joins the threads, so whoever blocks them must let them go first) and
    // must not throw. The anchor holds its threads there until the process is jailed and lets
    // each narrow what it may do (anchor/pci_devices.h); the device knows nothing of that.
    std::function<void()> on_thread_start;
};

// What the dispatcher's polling did, for tests and benchmarks.
struct PollStats {
    std::uint64_t found_polling = 0;      // polls that found requests: served without a kick
    std::uint64_t found_at_reenable = 0;  // requests found by the re-check after re-enabling kicks
    std::uint64_t sleeps = 0;             // times the dispatcher slept waiting for a kick
    std::uint64_t preempted = 0;          // polls interrupted by the scheduler (window halved)
    std::chrono::nanoseconds window{0};   // the adaptive window after the last poll
};

class VirtioBlk final : public virtio::VirtioDevice {
public:
    VirtioBlk(DiskImage disk, VirtioBlkOptions options = {});
    ~VirtioBlk() override;
    VirtioBlk(const VirtioBlk&) = delete;
    VirtioBlk& operator=(const VirtioBlk&) = delete;

    virtio::DeviceType device_type() const override { return virtio::DeviceType::Block; }
    std::uint64_t device_features() const override;
    std::uint16_t num_queues() const override { return 1; }
    std::uint16_t max_queue_size() const override { return options_.queue_size; }
    void read_config(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write_config(std::uint64_t offset, std::span<const std::uint8_t> data) override;
    void activate(const GuestMemory& memory, std::uint64_t features, std::vector<virtio::QueueConfig> queues,
                  std::shared_ptr<virtio::VirtioInterrupt> interrupt) override;
    void queue_notify(std::uint16_t queue) override;
    int queue_kick_fd(std::uint16_t queue) const override { return queue == 0 ? kick_fd_.get() : -1; }
    void reset() override;

    // With options.own_thread false: pops, parses and starts every available request on the
    // calling thread, as the dispatcher's serve step does (a lone small request, or a read the
    // io_uring ring completes at once, is completed before this returns). One caller at a time.
    // Throws on a device that runs its own dispatcher.
    void serve_queue();

    const DiskImage& disk() const noexcept { return disk_; }
    const char* io_engine_name() const noexcept { return engine_->name(); }
    // Requests taken from the ring and not yet completed with their interrupt sent (tests;
    // 0 means every used entry and its interrupt are out).
    unsigned in_flight() const;
    PollStats poll_stats() const;
    // Inline writes that took longer than options.inline_write_stall (each began a backoff).
    std::uint64_t inline_write_stalls() const noexcept { return inline_write_stalls_.load(std::memory_order_relaxed); }

private:
    using Lock = std::unique_lock<FullFenceMutex>;
    void dispatcher();
    // Pops, parses and starts every available request (inline or on the engine). mu_ held on
    // entry, released on return (it signals and does I/O unlocked; serve_queue() needs it no
    // more, the dispatcher takes it again).
    void serve(Lock& lock);
    // The poll loop after serve(): polls while the adaptive window allows, then re-enables kicks
    // and sets kicked_ if the re-check finds requests. mu_ held on entry and on return. Returns
    // the start of the last (unsuccessful) poll window: when the queue went quiet.
    std::chrono::steady_clock::time_point poll_queue(Lock& lock);
    void hook(PollStep step, Lock& lock);
    // The avail idx read without mu_, or nullopt once a reset began (poll_epoch_ != epoch).
    std::optional<std::uint16_t> peek_avail(const virtio::AvailIdxReader& reader, std::uint64_t epoch);
    void reset_locked(Lock& lock);
    // Pops and parses every available chain into ops_ (the I/O to submit). Called with mu_ held.
    void drain_queue(Lock& lock, bool& notify, bool& broken);
    // An op's end (its IoCompletion, `self` the device): `result` 0 or -errno, for the request
    // its tag names (completion_tag: the head and the low 32 bits of its activation).
    static void complete(void* self, std::uint64_t tag, int result);
    // A read or write small enough to run on the dispatcher (options_.inline_max_bytes).
    bool inline_ok(const IoOp& op) const;
    // Writes may run on the dispatcher now: no backoff after a stalled one is running.
    bool writes_inline_now() const;
    // Runs `ops` on the serving thread, in order, and leaves it empty. A write that stalls
    // starts a backoff and hands the ops after it to the engine. Completions of more than one
    // op are signalled in CompletionBatches of up to kMaxBatchOps. mu_ not held.
    // Reads of a batch (of_batch: others are in flight; batch_reads_inline_) are tried with
    // read_cached(); those that would wait for the disk go to the engine after the loop.
    void run_inline(std::vector<IoOp>& ops, bool of_batch);
    // Writes status and returns the chain, its used entry not yet published: every caller asks
    // the interrupt question next, in the same hold of mu_ (needs_notification() or
    // prepare_notification()), which publishes the entries of a request or a batch with one
    // store of the used idx. mu_ held.
    void put_used_locked(std::uint16_t head, std::span<std::uint8_t> status, std::uint8_t value, std::uint32_t used_len);
    // The same, and decides on notification. mu_ held.
    void finish_locked(std::uint16_t head, std::span<std::uint8_t> status, std::uint8_t value, std::uint32_t used_len,
                       bool& notify);
    // The request at `head` (drain_queue() set it up) ends with `result` (0 or -errno): its status
    // byte and used entry, an I/O error logged. True when the queue broke and that is not yet
    // reported. mu_ held.
    bool put_result_locked(std::uint16_t head, int result);
    // `settled` requests' used entries are out (mu_ held by `lock`): tells the driver (notify,
    // broken) with mu_ released, then counts the requests out of in_flight_ and wakes a waiting
    // reset. Returns with mu_ released.
    void settle_locked(Lock& lock, bool notify, bool broken, unsigned settled = 1);
    // settle_locked for the lone request the serving thread completed itself, its used entry
    // published by `question` (prepared with mu_ held): the question is asked after mu_ is
    // released, whose unlock is the full barrier §2.7.10 asks for between the two (no fence of
    // its own), and the driver told without taking mu_ again. settling_ stands for the request
    // until then. Returns with mu_ released.
    void settle_asking(Lock& lock, bool notify, bool broken, const virtio::NotificationQuestion& question);
    static void signal(bool notify, bool broken, virtio::VirtioInterrupt* irq);
    // The results an engine's CompletionBatch gathered (complete()'s, tagged by completion_tag),
    // finished when it closes: under one lock, with one question whether the driver wants an
    // interrupt.
    static void flush_results(void* self, std::span<const CompletionBatch::Result> results);

    DiskImage disk_;
    VirtioBlkOptions options_;
    virtio_blk_config config_{};
    BlockLimits limits_;
    std::shared_ptr<spdlog::logger> log_;
    std::unique_ptr<IoEngine> engine_;

    // Its unlock is a full barrier (settle_asking).
    mutable FullFenceMutex mu_;
    std::condition_variable_any idle_cv_;  // in_flight_ dropped to 0
    unsigned idle_waiters_ = 0;        // threads waiting on idle_cv_ (reset_locked); guarded by mu_
    // The dispatcher sleeps in read() on this eventfd: KVM's ioeventfd for the queue, a kick
    // through queue_notify while it sleeps, activate() and the destructor signal it.
    Fd kick_fd_;
    // Kicks pending for the dispatcher; written without mu_ by queue_notify.
    std::atomic<bool> kicked_{false};
    // The dispatcher is (about to be) blocked on kick_fd_. With kicked_, a store-then-load pair
    // on each side (seq_cst): either queue_notify sees sleeping_ and signals kick_fd_, or the
    // dispatcher's check before it blocks sees kicked_.
    std::atomic<bool> sleeping_{false};
    // When the kick that woke the sleeping dispatcher was made (steady_clock ns; 0 = none): the
    // adaptive window is fed the driver's real turnaround, not that plus our own wake-up latency
    // (which on a busy host alone exceeds poll_max and would keep polling off for good).
    std::atomic<std::int64_t> kicked_at_ns_{0};
    // ... and on which CPU (-1 = unknown), against the CPU the dispatcher last polled on.
    std::atomic<int> kicked_cpu_{-1};
    int polled_cpu_ = -1;  // the dispatcher thread's
    // Bumped by reset_locked() before it drops the queue; the poll loop sets in_peek_ around its
    // lock-free ring read, and reset_locked() waits for in_peek_ to clear (same handshake).
    std::atomic<std::uint64_t> poll_epoch_{0};
    std::atomic<bool> in_peek_{false};
    bool stop_ = false;
    bool active_ = false, broken_reported_ = false;
    std::uint64_t generation_ = 0;
    unsigned in_flight_ = 0;
    // settle_asking() is answering a lone request's question and telling the driver, without
    // mu_: that request is out of in_flight_ but still in flight (in_flight() counts it), and a
    // reset waits for this to clear before it lets the interrupt and the rings go. Written by
    // the serving thread only.
    std::atomic<bool> settling_{false};
    // Where each in-flight request (by head) gets its status byte and its used length; guarded
    // by mu_. A driver that makes a head available again while it is in flight (§2.7.13.3 forbids
    // it) gets the later request's status for both: guest memory it gave us either way.
    struct PendingRequest {
        std::span<std::uint8_t> status;
        std::uint32_t used_len = 0;
    };
    std::vector<PendingRequest> pending_;
    std::uint16_t pending_head_ = 0;  // the head of the last request drain_queue() started
    std::vector<IoOp> ops_;  // the dispatcher's, reused: serving a request allocates nothing
    virtio::DescriptorChain chain_;  // drain_queue()'s, reused (no chain moved per request)
    BlockRequest req_;               // drain_queue()'s, reused too (each chain parsed into it)
    std::vector<IoOp> inline_ops_;  // the writes (and cached reads) of ops_ run on the dispatcher, reused too
    std::vector<IoOp> to_engine_;   // what run_inline hands on to the engine, reused too
    // Reads of a batch are tried on the dispatcher (inline_cached_reads, and no ring reads them);
    // cleared for good when the file refuses RWF_NOWAIT. The serving thread's.
    bool batch_reads_inline_ = false;
    std::chrono::steady_clock::time_point writes_inline_after_{};  // the serving thread's: end of a stall's backoff
    std::atomic<std::uint64_t> inline_write_stalls_{0};
    std::uint64_t bad_requests_ = 0, io_errors_ = 0;  // for rate-limited logging
    virtio::AdaptivePoll poll_;  // the dispatcher thread's alone
    PollStats poll_stats_;       // guarded by mu_
    const GuestMemory* memory_ = nullptr;
    virtio::VirtQueue queue_;
    std::shared_ptr<virtio::VirtioInterrupt> interrupt_;
    std::thread dispatcher_;
};

}  // namespace vmm::virtio_blk
