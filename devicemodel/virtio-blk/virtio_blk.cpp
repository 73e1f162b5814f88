// VirtioBlk: see virtio_blk.h.
#include "devicemodel/virtio-blk/virtio_blk.h"

#include "common/error.h"
#include "common/log.h"
#include "common/thread_name.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <utility>

namespace vmm::virtio_blk {

namespace {

constexpr std::uint32_t kMaxDiscardSectors = 0x3fffff;  // 2 GiB - 512 per segment
constexpr std::uint32_t kMaxDiscardSegments = 32;

using Clock = std::chrono::steady_clock;

// A request's tag, in its op's completion and in a CompletionBatch: the activation it belongs
// to (the low 32 bits of the generation) and its head.
std::uint64_t completion_tag(std::uint32_t generation, std::uint16_t head) { return std::uint64_t{generation} << 16 | head; }
std::uint32_t tag_generation(std::uint64_t tag) { return static_cast<std::uint32_t>(tag >> 16); }
std::uint16_t tag_head(std::uint64_t tag) { return static_cast<std::uint16_t>(tag); }

// One spin-wait step: lets the sibling hyper-thread run and saves power while polling.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

}  // namespace

VirtioBlk::VirtioBlk(DiskImage disk, VirtioBlkOptions options)
    : disk_(std::move(disk)),
      options_(std::move(options)),
      log_(logger(options_.name)),
      kick_fd_(make_eventfd()),
      poll_(options_.poll_max, options_.poll_adaptive) {
    if (options_.serial.empty()) options_.serial = options_.name;
    poll_stats_.window = poll_.window();
    if (options_.queue_size < 4) options_.queue_size = 4;
    pending_.resize(options_.queue_size);  // heads are < the queue size, at most this
    limits_.capacity_sectors = disk_.capacity_sectors();
    limits_.read_only = disk_.read_only();
    if (!disk_.read_only()) {
        limits_.max_discard_sectors = limits_.max_write_zeroes_sectors = kMaxDiscardSectors;
        limits_.max_discard_seg = limits_.max_write_zeroes_seg = kMaxDiscardSegments;
    }
    // virtio 1.2 §5.2.4: little-endian fields, x86 host.
    config_.capacity = limits_.capacity_sectors;
    config_.seg_max = options_.queue_size - 2u;  // header and status take two descriptors
    config_.blk_size = disk_.logical_block_size();
    config_.max_discard_sectors = limits_.max_discard_sectors;
    config_.max_discard_seg = limits_.max_discard_seg;
    config_.discard_sector_alignment = disk_.logical_block_size() / 512;
    config_.max_write_zeroes_sectors = limits_.max_write_zeroes_sectors;
    config_.max_write_zeroes_seg = limits_.max_write_zeroes_seg;
    config_.write_zeroes_may_unmap = 1;

    const auto pool = [&] {
        return make_thread_pool_engine(disk_.fd(), options_.io_threads, options_.name + "-io", options_.on_thread_start);
    };
    if (options_.use_io_uring) {
        engine_ = make_uring_engine(disk_.fd(), options_.queue_size, options_.name + "-io", options_.on_thread_start);
    } else if (options_.reads_on_io_uring) {
        if (auto reads = make_uring_engine(disk_.fd(), options_.queue_size, options_.name + "-rd", options_.on_thread_start))
            engine_ = make_split_engine(std::move(reads), pool());
    }
    if (!engine_) {
        engine_ = pool();
        batch_reads_inline_ = options_.inline_cached_reads && options_.inline_max_bytes > 0;
    }
    log_->info("{}{}: {} sectors at offset {}, {} I/O", disk_.path(), disk_.read_only() ? " (read-only)" : "",
               limits_.capacity_sectors, disk_.offset(), engine_->name());
    if (options_.own_thread)
        dispatcher_ = std::thread([this] {
            set_thread_name(options_.name + "-q");
            if (options_.on_thread_start) options_.on_thread_start();
            dispatcher();
        });
}

VirtioBlk::~VirtioBlk() {
    reset();
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    signal_eventfd(kick_fd_.get());  // wakes the dispatcher's read(), or its next one
    if (dispatcher_.joinable()) dispatcher_.join();
    engine_.reset();
}

void VirtioBlk::serve_queue() {
    if (options_.own_thread) throw Error(options_.name + ": serve_queue() on a device that runs its own dispatcher");
    std::unique_lock lock(mu_);
    // No dispatcher sleeps on kicked_ in this mode (nothing reads it): no full fence (the
    // dispatcher's seq_cst store) per call.
    kicked_.store(false, std::memory_order_relaxed);
    if (active_) serve(lock);
}

std::uint64_t VirtioBlk::device_features() const {
    using virtio::feature_bit;
    std::uint64_t f = feature_bit(virtio::kFeatureVersion1) | feature_bit(virtio::kFeatureIndirectDesc) |
                      feature_bit(virtio::kFeatureEventIdx) | feature_bit(VIRTIO_BLK_F_SEG_MAX) |
                      feature_bit(VIRTIO_BLK_F_BLK_SIZE) | feature_bit(VIRTIO_BLK_F_FLUSH);
    if (disk_.read_only())
        f |= feature_bit(VIRTIO_BLK_F_RO);
    else
        f |= feature_bit(VIRTIO_BLK_F_DISCARD) | feature_bit(VIRTIO_BLK_F_WRITE_ZEROES);
    return f;
}

void VirtioBlk::read_config(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::fill(data.begin(), data.end(), 0);
    if (offset >= sizeof config_) return;
    const std::size_t n = std::min<std::uint64_t>(data.size(), sizeof config_ - offset);
    std::memcpy(data.data(), reinterpret_cast<const std::uint8_t*>(&config_) + offset, n);
}

void VirtioBlk::write_config(std::uint64_t, std::span<const std::uint8_t>) {
    // Only `wce` is writable, and only with VIRTIO_BLK_F_CONFIG_WCE, which is not offered.
}

void VirtioBlk::activate(const GuestMemory& memory, std::uint64_t features, std::vector<virtio::QueueConfig> queues,
                         std::shared_ptr<virtio::VirtioInterrupt> interrupt) {
    bool broken = false;
    std::string reason;
    {
        std::unique_lock lock(mu_);
        if (active_) {
            log_->warn("activate without a reset: resetting first");
            reset_locked(lock);
        }
        memory_ = &memory;
        interrupt_ = interrupt;
        queue_ = queues.empty() ? virtio::VirtQueue{} : virtio::VirtQueue(memory, queues[0], options_.queue_size, features);
        active_ = true;
        broken_reported_ = broken = queue_.broken();
        reason = queue_.broken_reason();
        kicked_ = true;  // buffers may already be waiting
    }
    signal_eventfd(kick_fd_.get());  // wakes the dispatcher's read(), or its next one
    if (broken) {
        log_->warn("activate: {}", reason);
        interrupt->needs_reset();
    }
}

void VirtioBlk::queue_notify(std::uint16_t queue) {
    if (queue != 0) return;
    // No lock: while the dispatcher polls, a kick (one that raced with suppression) is only a
    // flag; while it sleeps (or is about to), a signal on its eventfd. See sleeping_.
    kicked_.store(true);
    if (sleeping_.load()) {
        // sched_getcpu() reads the rseq area or the vDSO: no system call (none to allow in the jail).
        kicked_cpu_.store(::sched_getcpu(), std::memory_order_relaxed);
        kicked_at_ns_.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
        signal_eventfd(kick_fd_.get());  // wakes the dispatcher's read(), or its next one
    }
}

void VirtioBlk::reset() {
    std::unique_lock lock(mu_);
    reset_locked(lock);
}

void VirtioBlk::reset_locked(Lock& lock) {
    active_ = false;
    ++generation_;
    // A lock-free ring read of the poll loop may be under way: let it finish; later ones see the
    // new epoch and read nothing (peek_avail()). Takes at most one guest-memory read.
    poll_epoch_.fetch_add(1);
    while (in_peek_.load()) cpu_relax();
    ++idle_waiters_;
    idle_cv_.wait(lock, [&] { return in_flight_ == 0; });
    --idle_waiters_;
    // A lone request's interrupt may still be going out without mu_ (settle_asking): an
    // eventfd write at most. No new one starts: that takes mu_, held here. A sender preempted
    // meanwhile gets the CPU back from a waiter that yields.
    for (unsigned spins = 0; settling_.load(std::memory_order_acquire); ++spins) {
        if (spins < 1000)
            cpu_relax();
        else
            std::this_thread::yield();
    }
    queue_ = virtio::VirtQueue{};
    memory_ = nullptr;
    interrupt_.reset();
    broken_reported_ = false;
}

unsigned VirtioBlk::in_flight() const {
    std::lock_guard lock(mu_);
    return in_flight_ + (settling_.load(std::memory_order_acquire) ? 1 : 0);
}

PollStats VirtioBlk::poll_stats() const {
    std::lock_guard lock(mu_);
    return poll_stats_;
}

void VirtioBlk::hook(PollStep step, Lock& lock) {
    if (!options_.poll_hook) return;
    lock.unlock();
    options_.poll_hook(step);
    lock.lock();
}

void VirtioBlk::dispatcher() {
    std::unique_lock lock(mu_);
    // When the queue went quiet (the start of the last poll window), and in which activation.
    bool quiet = false;
    Clock::time_point quiet_since{};
    std::uint64_t quiet_generation = 0;
    for (;;) {
        // Kicks are enabled here: either polling is off or poll_queue() re-enabled them.
        if (!kicked_ && !stop_) {
            hook(PollStep::Sleep, lock);
            if (!kicked_ && !stop_) {
                ++poll_stats_.sleeps;
                kicked_at_ns_.store(0, std::memory_order_relaxed);
                kicked_cpu_.store(-1, std::memory_order_relaxed);
                sleeping_.store(true);
                // kicked_ after sleeping_ (seq_cst, against queue_notify's pair): a kick that did
                // not see sleeping_ is seen here. stop_ and activate() signal the eventfd too.
                // A signal that came while the dispatcher was busy (KVM's, or a kick that raced
                // with this) makes the next sleep return at once: one more look at the ring.
                if (!kicked_.load() && !stop_) {
                    lock.unlock();
                    std::uint64_t count;
                    while (::read(kick_fd_.get(), &count, sizeof count) < 0 && errno == EINTR) {
                    }
                    lock.lock();
                }
                sleeping_.store(false);
                if (quiet && quiet_generation == generation_) {
                    // The kicker's timestamp and CPU when there are some (written before the
                    // kicker takes mu_ to notify, so the wait's return orders them before this).
                    const std::int64_t at = kicked_at_ns_.load(std::memory_order_relaxed);
                    const int cpu = kicked_cpu_.load(std::memory_order_relaxed);
                    if (at && cpu >= 0 && cpu == polled_cpu_) {
                        poll_.kicked_from_polling_cpu();
                    } else {
                        const Clock::time_point kicked = at ? Clock::time_point(Clock::duration(at)) : Clock::now();
                        poll_.woke_after(kicked - quiet_since);
                    }
                    poll_stats_.window = poll_.window();
                }
            }
        }
        quiet = false;
        if (stop_) return;
        kicked_ = false;
        if (!active_) continue;
        serve(lock);
        lock.lock();
        quiet_generation = generation_;
        quiet_since = poll_queue(lock);
        quiet = true;
    }
}

void VirtioBlk::serve(Lock& lock) {
    bool notify = false, broken = false;
    drain_queue(lock, notify, broken);
    // Only these ops are in flight: a lone small read/write is served right here (no
    // ordering question arises with nothing else outstanding).
    const bool alone = ops_.size() == 1 && in_flight_ == 1;
    if (alone && ops_.front().kind == IoOp::Kind::Read && inline_ok(ops_.front())) {
        // A lone small read (a guest at queue depth 1): read and complete it without letting go
        // of mu_, instead of unlocking, reading, and taking mu_ again to complete it (a lock
        // round trip, a std::function call and a wake-up check per request: ~5 % of a cached
        // 4 KiB read, issue #3). Nothing else is in flight, so no completion waits for mu_
        // meanwhile; a reset() would wait for this read anyway; queue_notify() takes no lock.
        IoOp& op = ops_.front();
        const std::uint16_t head = pending_head_;
        const int result = run_io_sync(disk_.fd(), op);
        broken = put_result_locked(head, result) || broken;
        ops_.clear();
        settle_asking(lock, notify, broken, queue_.prepare_notification());  // publishes the entry
        return;
    }
    std::shared_ptr<virtio::VirtioInterrupt> irq;
    if (notify || broken) irq = interrupt_;
    lock.unlock();
    signal(notify, broken, irq.get());
    const bool lone_inline = alone && inline_ok(ops_.front()) &&
                             (ops_.front().kind != IoOp::Kind::Write || writes_inline_now());
    if (lone_inline) {
        run_inline(ops_, false);
    } else if (!ops_.empty()) {
        // The small writes (and, where no ring reads, the small reads) stay here; the rest (in
        // order) goes to the engine first, so it proceeds while these run.
        const bool writes = options_.inline_writes && writes_inline_now();
        if (writes || batch_reads_inline_) {
            auto stays = [&](const IoOp& op) {
                const bool here = op.kind == IoOp::Kind::Write ? writes : op.kind == IoOp::Kind::Read && batch_reads_inline_;
                return here && inline_ok(op);
            };
            auto kept = ops_.begin();
            for (auto it = ops_.begin(); it != ops_.end(); ++it) {
                if (stays(*it)) {
                    inline_ops_.push_back(std::move(*it));
                } else {
                    if (kept != it) *kept = std::move(*it);  // never onto itself: that empties it
                    ++kept;
                }
            }
            ops_.erase(kept, ops_.end());
        }
        if (!ops_.empty()) engine_->submit(ops_);  // leaves ops_ empty, its capacity kept
        if (!inline_ops_.empty()) run_inline(inline_ops_, true);
    }
}

bool VirtioBlk::writes_inline_now() const {
    return writes_inline_after_ == Clock::time_point{} || Clock::now() >= writes_inline_after_;
}

void VirtioBlk::run_inline(std::vector<IoOp>& ops, bool of_batch) {
    std::optional<CompletionBatch> batch;
    unsigned batched = 0;
    const bool cached_reads = of_batch && batch_reads_inline_;  // a lone read (nothing else in flight) just reads
    for (std::size_t i = 0; i < ops.size(); ++i) {
        if (ops.size() > 1 && !batch) batch.emplace();
        IoOp& op = ops[i];
        // Only a write's time is asked (the stall check below): a read reads no clock (30 ns a
        // read of it here).
        const bool write = op.kind == IoOp::Kind::Write;
        Clock::time_point started{}, now{};
        int result;
        if (cached_reads && op.kind == IoOp::Kind::Read) {
            result = read_cached(disk_.fd(), op);
            if (result == -EAGAIN || result == -EOPNOTSUPP) {
                if (result == -EOPNOTSUPP) {
                    log_->info("{}: no reads without waiting (RWF_NOWAIT) on this file; reads go to the pool", disk_.path());
                    batch_reads_inline_ = false;
                }
                to_engine_.push_back(std::move(op));  // the part the page cache did not hold
                continue;
            }
        } else {
            if (write) started = Clock::now();
            result = run_io_sync(disk_.fd(), op);
            if (write) now = Clock::now();
        }
        op.done(result);
        if (++batched == CompletionBatch::kMaxBatchOps) {
            batch.reset();  // the interrupt for these goes out now
            batched = 0;
        }
        const auto took = now - started;
        if (!write || took <= options_.inline_write_stall) continue;
        writes_inline_after_ = now + options_.inline_write_backoff;
        inline_write_stalls_.fetch_add(1, std::memory_order_relaxed);
        log_->debug("an inline write took {} us; writes go to the engine for {} ms",
                    std::chrono::duration_cast<std::chrono::microseconds>(took).count(),
                    std::chrono::duration_cast<std::chrono::milliseconds>(options_.inline_write_backoff).count());
        for (std::size_t j = i + 1; j < ops.size(); ++j) to_engine_.push_back(std::move(ops[j]));
        break;
    }
    batch.reset();
    ops.clear();  // keeps its capacity for the next request
    if (!to_engine_.empty()) engine_->submit(to_engine_);  // leaves it empty, its capacity kept
}

std::optional<std::uint16_t> VirtioBlk::peek_avail(const virtio::AvailIdxReader& reader, std::uint64_t epoch) {
    // Store in_peek_, then load the epoch; reset_locked() bumps the epoch, then loads in_peek_
    // (all seq_cst). Either this sees the new epoch and reads nothing, or reset sees in_peek_
    // and waits until the read below is over: no guest access after reset() returns.
    in_peek_.store(true);
    std::optional<std::uint16_t> idx;
    if (poll_epoch_.load() == epoch) idx = reader();  // bounds-checked guest read
    in_peek_.store(false, std::memory_order_release);
    return idx;
}

Clock::time_point VirtioBlk::poll_queue(Lock& lock) {
    const std::uint64_t generation = generation_;
    // A reset (new generation), a broken queue or shutdown ends polling at once. The rings of a
    // reset activation are never touched again, suppressed or not; a broken queue serves
    // nothing until the driver resets the device.
    auto live = [&] { return !stop_ && active_ && generation_ == generation && !queue_.broken(); };
    Clock::time_point start = Clock::now();
    polled_cpu_ = -1;
    if (poll_.window() == Clock::duration::zero() || !live() || !queue_.enabled()) return start;
    queue_.disable_notifications();
    const std::uint64_t epoch = poll_epoch_.load();
    std::uint64_t preempted = 0;
    // mu_ is held whenever this returns; the stats are updated on the way out.
    auto done = [&] {
        polled_cpu_ = ::sched_getcpu();
        poll_stats_.preempted += preempted;
        poll_stats_.window = poll_.window();
        return start;
    };
    for (;;) {
        // Polled without mu_: only the avail idx, against the next index we would pop (only
        // this thread pops). Anything else, and every real pop, happens under mu_ as before.
        const virtio::AvailIdxReader reader = queue_.avail_idx_reader();
        const std::uint16_t next = queue_.next_avail();
        bool found = false;
        lock.unlock();
        for (auto last = start;;) {
            if (options_.poll_hook) options_.poll_hook(PollStep::Check);
            const auto idx = peek_avail(reader, epoch);
            if (kicked_.load(std::memory_order_relaxed) || !idx || *idx != next) {
                lock.lock();
                if (!live()) return done();
                // The checked read: an avail idx that jumps too far marks the queue broken, and
                // serve() reports it as it would have anyway.
                if (kicked_ || queue_.has_available() || queue_.broken()) {
                    found = true;
                    break;
                }
                lock.unlock();
            }
            const auto now = Clock::now();
            if (poll_.check_gap(now - std::exchange(last, now))) ++preempted;
            if (now - start >= poll_.window()) {
                lock.lock();
                break;
            }
            cpu_relax();
        }
        if (!found) break;
        kicked_ = false;
        poll_.found_while_polling(Clock::now() - start);
        ++poll_stats_.found_polling;
        serve(lock);
        lock.lock();
        if (!live()) return done();
        start = Clock::now();
    }
    hook(PollStep::BeforeReenable, lock);
    if (!live()) return done();
    // The classic race: a buffer published after the last check above, while kicks were still
    // off, comes with no kick. enable_notifications() re-reads the ring after re-enabling.
    if (queue_.enable_notifications()) {
        ++poll_stats_.found_at_reenable;
        poll_.woke_after(Clock::now() - start);  // just missed: the window may grow
        kicked_ = true;
    }
    return done();
}

bool VirtioBlk::inline_ok(const IoOp& op) const {
    if (op.kind != IoOp::Kind::Read && op.kind != IoOp::Kind::Write) return false;
    std::size_t bytes = 0;
    for (const auto& v : op.iov) bytes += v.iov_len;
    return bytes <= options_.inline_max_bytes;
}

// Inlined (with put_result_locked): a few stores per request that calls would double.
[[gnu::always_inline]] inline void VirtioBlk::put_used_locked(std::uint16_t head, std::span<std::uint8_t> status, std::uint8_t value,
                                std::uint32_t used_len) {
    if (!status.empty()) status[0] = value;
    queue_.add_used_unpublished(head, used_len);
}

void VirtioBlk::finish_locked(std::uint16_t head, std::span<std::uint8_t> status, std::uint8_t value,
                              std::uint32_t used_len, bool& notify) {
    put_used_locked(head, status, value, used_len);
    notify = queue_.needs_notification() || notify;  // publishes the entry
}

void VirtioBlk::drain_queue(Lock&, bool& notify, bool& broken) {
    ops_.clear();
    virtio::DescriptorChain& chain = chain_;
    while (queue_.pop(chain)) {
        const std::uint16_t head = chain.head();
        BlockRequest& req = req_;
        parse_block_request(chain, limits_, req);
        std::span<std::uint8_t> status;
        if (req.has_status) status = {chain.writable_byte(chain.writable_bytes() - 1), 1};
        if (!req.has_status) {
            // No byte to put a status in (a bad chain, or the status in a device-readable
            // buffer): hand the chain back untouched.
            if (++bad_requests_ <= 10 || bad_requests_ % 1000 == 0)
                log_->warn("request at head {} has no status byte: {} ({} bad so far)", head,
                           virtio::to_string(chain.error()), bad_requests_);
            finish_locked(head, {}, 0, 0, notify);
            continue;
        }
        if (req.reject) {
            log_->debug("request type {} sector {} rejected with status {}", req.type, req.sector, *req.reject);
            finish_locked(head, status, *req.reject, 1, notify);
            continue;
        }
        if (head >= pending_.size()) {  // cannot happen: the queue checks heads against its size
            finish_locked(head, status, VIRTIO_BLK_S_IOERR, 1, notify);
            continue;
        }
        IoOp::Kind kind;
        switch (req.type) {
            case VIRTIO_BLK_T_GET_ID: {
                std::uint8_t id[VIRTIO_BLK_ID_BYTES] = {};
                std::memcpy(id, options_.serial.data(), std::min<std::size_t>(options_.serial.size(), sizeof id));
                chain.write(0, {id, static_cast<std::size_t>(req.data_len)});  // data_len <= sizeof id
                finish_locked(head, status, VIRTIO_BLK_S_OK, req.used_len_ok(), notify);
                continue;
            }
            case VIRTIO_BLK_T_IN:
            case VIRTIO_BLK_T_OUT:
                if (req.data_len == 0) {
                    finish_locked(head, status, VIRTIO_BLK_S_OK, req.used_len_ok(), notify);
                    continue;
                }
                kind = req.type == VIRTIO_BLK_T_IN ? IoOp::Kind::Read : IoOp::Kind::Write;
                break;
            case VIRTIO_BLK_T_FLUSH:
                kind = IoOp::Kind::Flush;
                break;
            case VIRTIO_BLK_T_DISCARD:
                kind = IoOp::Kind::Discard;
                break;
            case VIRTIO_BLK_T_WRITE_ZEROES:
                kind = IoOp::Kind::WriteZeroes;
                break;
            default:  // the parser rejects every other type
                finish_locked(head, status, VIRTIO_BLK_S_UNSUPP, 1, notify);
                continue;
        }
        // Built in place (ops_ keeps its capacity from batch to batch): no IoOp is moved.
        IoOp& op = ops_.emplace_back(kind, IoCompletion{&VirtioBlk::complete, this,
                                                        completion_tag(static_cast<std::uint32_t>(generation_), head)});
        const std::uint64_t base = disk_.offset();
        if (kind == IoOp::Kind::Read || kind == IoOp::Kind::Write) {
            op.offset = base + req.sector * kSectorSize;
            data_iov(chain, req, op.iov);  // straight from the chain into the op's inline storage
        } else if (kind == IoOp::Kind::Discard || kind == IoOp::Kind::WriteZeroes) {
            op.unmap = req.unmap;
            for (auto [sector, count] : req.segments) op.ranges.emplace_back(base + sector * kSectorSize, count * kSectorSize);
        }
        pending_[head] = {status, req.used_len_ok()};
        pending_head_ = head;
        ++in_flight_;
    }
    if (queue_.broken() && !broken_reported_) {
        broken_reported_ = broken = true;
        log_->warn("queue broken: {}", queue_.broken_reason());
    }
}

[[gnu::always_inline]] inline bool VirtioBlk::put_result_locked(std::uint16_t head, int result) {
    const std::uint8_t value = result == 0 ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
    const PendingRequest& p = pending_[head];
    if (value != VIRTIO_BLK_S_OK && (++io_errors_ <= 10 || io_errors_ % 1000 == 0))
        log_->warn("I/O error on request at head {} ({} so far)", head, io_errors_);
    put_used_locked(head, p.status, value, result == 0 ? p.used_len : 1);
    if (!queue_.broken() || broken_reported_) return false;
    broken_reported_ = true;
    return true;
}

void VirtioBlk::complete(void* self, std::uint64_t tag, int result) {
    // On an engine thread the result waits for the end of its batch of completions
    // (flush_results): one lock round trip for the batch, and one question whether the driver
    // wants an interrupt (it covers every used entry added since the last, §2.7.10; each a full
    // fence and a read of the driver's busiest cache line), one store of the used idx. The
    // request is in flight until then.
    // Outside a batch (or with no room in it): finished now, as a batch of one.
    const CompletionBatch::Result r{tag, result};
    if (!CompletionBatch::defer(&VirtioBlk::flush_results, self, r)) flush_results(self, {&r, 1});
}

void VirtioBlk::settle_locked(Lock& lock, bool notify, bool broken, unsigned settled) {
    if (notify || broken) {
        // Copied only when it is used: a shared_ptr copy is a locked add on a line other
        // threads touch (it was 7 % of the dispatcher's time at depth 32).
        const std::shared_ptr<virtio::VirtioInterrupt> irq = interrupt_;
        lock.unlock();
        signal(notify, broken, irq.get());
        lock.lock();
    }
    // A request is in flight until the driver has been told: in_flight() == 0 then means every
    // used entry *and* its interrupt are out, and a reset waits for both.
    in_flight_ -= settled;
    // Woken only when there is someone to wake (a reset waits rarely; the condition variable's
    // check costs each request ~20 instructions and a load of a line the waiter writes).
    const bool wake = in_flight_ == 0 && idle_waiters_ > 0;
    lock.unlock();
    if (wake) idle_cv_.notify_all();
}

void VirtioBlk::settle_asking(Lock& lock, bool notify, bool broken, const virtio::NotificationQuestion& question) {
    // A raw pointer: reset_locked() drops interrupt_ only after settling_ is clear again.
    virtio::VirtioInterrupt* const irq = interrupt_.get();
    settling_.store(true, std::memory_order_relaxed);  // seen by whoever takes mu_ next
    in_flight_ -= 1;
    const bool wake = in_flight_ == 0 && idle_waiters_ > 0;
    lock.unlock();  // a full barrier: the used idx is visible before the question reads the ring
    notify = question.ask() || notify;
    signal(notify, broken, irq);
    settling_.store(false, std::memory_order_release);  // the interrupt is out
    if (wake) idle_cv_.notify_all();
}

void VirtioBlk::flush_results(void* self, std::span<const CompletionBatch::Result> results) {
    auto* dev = static_cast<VirtioBlk*>(self);
    bool put = false, broken = false;
    std::unique_lock lock(dev->mu_);
    const auto generation = static_cast<std::uint32_t>(dev->generation_);
    // A reset under way (it waits for these) has nothing to ask the old rings; a completion from
    // before a reset must not touch the (new) ones.
    if (dev->active_)
        for (const CompletionBatch::Result& r : results) {
            if (tag_generation(r.tag) != generation) continue;
            broken = dev->put_result_locked(tag_head(r.tag), r.value) || broken;
            put = true;
        }
    // Asking publishes the batch's used entries before it reads the driver's suppression state.
    const bool notify = put && dev->queue_.needs_notification();
    dev->settle_locked(lock, notify, broken, static_cast<unsigned>(results.size()));
}

void VirtioBlk::signal(bool notify, bool broken, virtio::VirtioInterrupt* irq) {
    if (!irq) return;
    if (broken) irq->needs_reset();
    if (notify) irq->notify_queue(0);
}

}  // namespace vmm::virtio_blk
