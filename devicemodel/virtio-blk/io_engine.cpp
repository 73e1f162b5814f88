// IoEngine implementations: see io_engine.h.
#include "devicemodel/virtio-blk/io_engine.h"

#include "common/fd.h"
#include "common/log.h"
#include "common/plain_syscall.h"
#include "common/thread_name.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#ifdef VMM_HAVE_LIBURING
#include "devicemodel/uring/restricted_ring.h"

#include <liburing.h>
#endif

namespace vmm::virtio_blk {

namespace {

// Drops the first `n` bytes from an iovec list: the part across buffers, out of line.
void advance_across(virtio::IoVecs& iov, std::size_t n) {
    std::size_t i = 0;
    while (i < iov.size() && n >= iov[i].iov_len) n -= iov[i++].iov_len;
    iov.erase(iov.begin(), iov.begin() + static_cast<std::ptrdiff_t>(i));
    if (n && !iov.empty()) {
        iov[0].iov_base = static_cast<char*>(iov[0].iov_base) + n;
        iov[0].iov_len -= n;
    }
}

// The same, inline for the usual case (one buffer, wholly moved: a 4 KiB request), which every
// transfer ends with: no call per request (issue #3).
[[gnu::always_inline]] inline void advance(virtio::IoVecs& iov, std::size_t n) {
    if (iov.size() == 1 && n == iov[0].iov_len)
        iov.clear();
    else
        advance_across(iov, n);
}

std::uint64_t total(const virtio::IoVecs& iov) {
    std::uint64_t t = 0;
    for (const auto& v : iov) t += v.iov_len;
    return t;
}

int write_zeroes_slow(int fd, std::uint64_t off, std::uint64_t len) {
    static const std::vector<std::uint8_t> zeros(64 * 1024, 0);
    while (len) {
        const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(len, zeros.size()));
        const ssize_t w = ::pwrite(fd, zeros.data(), n, static_cast<off_t>(off));
        if (w < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (w == 0) return -EIO;
        off += static_cast<std::uint64_t>(w);
        len -= static_cast<std::uint64_t>(w);
    }
    return 0;
}

// Moves op's bytes at op.offset, continuing after short transfers; op.offset and op.iov follow
// the progress, so an op that stopped part-way (-EAGAIN) can be finished by someone else.
// read_flags (preadv2's) apply to reads only: the blk threads' seccomp list has no pwritev2.
int transfer(int fd, IoOp& op, int read_flags) {
    const bool read = op.kind == IoOp::Kind::Read;
    while (!op.iov.empty()) {
        const int cnt = static_cast<int>(std::min<std::size_t>(op.iov.size(), IOV_MAX));
        const auto off = static_cast<off_t>(op.offset);
        const iovec& first = op.iov[0];
        ssize_t n;
        // Plain system calls (common/plain_syscall.h): no cancellation bookkeeping per request.
        if (read && read_flags)
            n = sys::preadv2(fd, op.iov.data(), cnt, off, read_flags);
        else if (cnt == 1)  // most requests (4 KiB): pread/pwrite skip the iovec's copy-in (~90 ns here)
            n = read ? sys::pread(fd, first.iov_base, first.iov_len, off) : sys::pwrite(fd, first.iov_base, first.iov_len, off);
        else
            n = read ? sys::preadv(fd, op.iov.data(), cnt, off) : sys::pwritev(fd, op.iov.data(), cnt, off);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        if (n == 0) return -EIO;  // past the end of the file: the host truncated it
        op.offset += static_cast<std::uint64_t>(n);
        advance(op.iov, static_cast<std::size_t>(n));
    }
    return 0;
}

}  // namespace

thread_local CompletionBatch* CompletionBatch::current_ = nullptr;

CompletionBatch::~CompletionBatch() {
    current_ = outer_;
    for (unsigned i = 0; i < count_; ++i) {
        Pending& p = pending_[i];
        if (p.count) p.flush(p.arg, {p.results, p.count});
    }
}

bool CompletionBatch::defer(Flush flush, void* arg, Result result) {
    CompletionBatch* b = current_;
    if (b == nullptr) return false;
    Pending* p = nullptr;
    for (unsigned i = 0; i < b->count_ && !p; ++i)
        if (b->pending_[i].flush == flush && b->pending_[i].arg == arg) p = &b->pending_[i];
    if (!p) {
        if (b->count_ == std::size(b->pending_)) return false;
        p = &b->pending_[b->count_++];
        p->flush = flush;
        p->arg = arg;
        p->count = 0;
    }
    if (p->count == kMaxResults) {  // a long run: these go now, the batch goes on
        p->flush(p->arg, {p->results, p->count});
        p->count = 0;
    }
    p->results[p->count++] = result;
    return true;
}

int read_cached(int fd, IoOp& op) { return transfer(fd, op, RWF_NOWAIT); }

int run_io_sync(int fd, IoOp& op) {
    switch (op.kind) {
        case IoOp::Kind::Read:
        case IoOp::Kind::Write:
            return transfer(fd, op, 0);
        case IoOp::Kind::Flush:
            return ::fdatasync(fd) == 0 ? 0 : -errno;
        case IoOp::Kind::Discard:
            for (auto [off, len] : op.ranges) {
                // Discard is a hint (virtio 1.2 §5.2.6.2): a backend that cannot punch holes is fine.
                if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(off),
                                static_cast<off_t>(len)) != 0 &&
                    errno != EOPNOTSUPP)
                    return -errno;
            }
            return 0;
        case IoOp::Kind::WriteZeroes:
            for (auto [off, len] : op.ranges) {
                const int mode = op.unmap ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
                if (::fallocate(fd, mode, static_cast<off_t>(off), static_cast<off_t>(len)) == 0) continue;
                if (errno != EOPNOTSUPP && errno != EINVAL) return -errno;
                if (int r = write_zeroes_slow(fd, off, len); r != 0) return r;
            }
            return 0;
    }
    return -EINVAL;
}

namespace {

class ThreadPoolEngine final : public IoEngine {
public:
    ThreadPoolEngine(int fd, unsigned threads, const std::string& thread_name, std::function<void()> on_thread_start)
        : fd_(fd), on_thread_start_(std::move(on_thread_start)) {
        for (unsigned i = 0; i < std::max(1u, threads); ++i)
            workers_.emplace_back([this, name = thread_name + std::to_string(i)] {
                set_thread_name(name);
                if (on_thread_start_) on_thread_start_();
                work();
            });
    }
    ~ThreadPoolEngine() override {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        for (auto& t : workers_) t.join();
    }
    void submit(std::vector<IoOp>& ops) override {
        const std::size_t n = ops.size();
        {
            std::lock_guard lock(mu_);
            for (auto& op : ops) queue_.push_back(std::move(op));
        }
        ops.clear();
        if (n == 1)
            cv_.notify_one();
        else
            cv_.notify_all();
    }
    const char* name() const override { return "threads"; }

private:
    static bool batchable(const IoOp& op) { return op.kind == IoOp::Kind::Read || op.kind == IoOp::Kind::Write; }

    void work() {
        for (;;) {
            IoOp op;
            {
                std::unique_lock lock(mu_);
                cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
                if (queue_.empty()) return;  // stop_ and drained
                op = std::move(queue_.front());
                queue_.pop_front();
            }
            // While more reads and writes wait, this worker takes them before the interrupts
            // of those it finished go out (one interrupt for the run; at most kMaxBatchOps, and
            // never held across a flush or discard, which may take long).
            CompletionBatch batch;
            for (unsigned n = 1;; ++n) {
                op.done(run_io_sync(fd_, op));
                if (n == CompletionBatch::kMaxBatchOps || !batchable(op)) break;
                std::lock_guard lock(mu_);
                if (queue_.empty() || !batchable(queue_.front())) break;
                op = std::move(queue_.front());
                queue_.pop_front();
            }
        }
    }

    const int fd_;
    const std::function<void()> on_thread_start_;
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<IoOp> queue_;
    bool stop_ = false;
    std::vector<std::thread> workers_;
};

class SplitEngine final : public IoEngine {
public:
    SplitEngine(std::unique_ptr<IoEngine> reads, std::unique_ptr<IoEngine> rest)
        : reads_(std::move(reads)), rest_(std::move(rest)),
          name_(std::string(reads_->name()) + " reads, " + rest_->name()) {}
    void submit(std::vector<IoOp>& ops) override {
        const auto reads = std::count_if(ops.begin(), ops.end(), [](const IoOp& op) { return op.kind == IoOp::Kind::Read; });
        if (reads == 0) return rest_->submit(ops);
        if (static_cast<std::size_t>(reads) == ops.size()) return reads_->submit(ops);
        std::vector<IoOp> r, o;
        r.reserve(static_cast<std::size_t>(reads));
        o.reserve(ops.size() - static_cast<std::size_t>(reads));
        for (auto& op : ops) (op.kind == IoOp::Kind::Read ? r : o).push_back(std::move(op));
        ops.clear();
        reads_->submit(r);
        rest_->submit(o);
    }
    const char* name() const override { return name_.c_str(); }

private:
    std::unique_ptr<IoEngine> reads_, rest_;  // each waits for its own ops when destroyed
    std::string name_;
};

#ifdef VMM_HAVE_LIBURING

// The thread that submits drives the ring (under mu_): it prepares the SQEs, enters the ring
// once and completes on the spot what already finished. Reads from the page cache complete
// inside that io_uring_enter, so a batch of them costs one system call and no hand-off to
// another thread (issue #3: the ring used to be fed through a queue and a kick eventfd to its
// own thread, one more cross-CPU wake-up per batch). What runs in the background (a read from
// disk, a write, a flush) completes later: the engine's thread waits in the ring for it, and
// only then (it sleeps on a condition variable while the ring holds nothing), so completions
// the submitter reaps itself do not wake it. Discard and write-zeroes (rare, not ring
// opcodes) run synchronously on the submitting thread.
class UringEngine final : public IoEngine {
public:
    static std::unique_ptr<IoEngine> create(int fd, unsigned depth, const std::string& thread_name,
                                            std::function<void()> on_thread_start) {
        auto e = std::unique_ptr<UringEngine>(new UringEngine(fd));
        // The ring may only read/write/fsync the disk (file 0): restricted_ring.h. -errno:
        // ENOSYS/EPERM where the kernel or a seccomp policy forbids io_uring, EINVAL where it
        // cannot restrict a ring (before 5.10).
        const int files[] = {fd};
        // NOP: the engine wakes its own thread out of a wait in the ring with one.
        // READ/WRITE: a one-buffer request (most: 4 KiB) without the iovec's import per request.
        const std::uint8_t ops[] = {IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_READ, IORING_OP_WRITE, IORING_OP_FSYNC,
                                    IORING_OP_NOP};
        if (int r = uring::setup_restricted_ring(e->ring_, depth, files, ops); r < 0) {
            logger("blk")->info("io_uring unavailable ({}), using the thread pool", std::strerror(-r));
            return nullptr;
        }
        e->ring_ok_ = true;
        e->thread_ = std::thread([p = e.get(), thread_name, start = std::move(on_thread_start)] {
            set_thread_name(thread_name);
            if (start) start();
            p->run();
        });
        return e;
    }
    ~UringEngine() override {
        if (thread_.joinable()) {
            {
                std::lock_guard lock(mu_);
                stop_ = true;
                // The thread may be waiting in the ring: a NOP's completion lets it out.
                io_uring_sqe* s = sqe();
                io_uring_prep_nop(s);
                io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE);  // required by the ring's restrictions
                io_uring_sqe_set_data(s, nullptr);
                io_uring_submit(&ring_);
            }
            waiting_.notify_all();
            thread_.join();
        }
        if (ring_ok_) uring::close_restricted_ring(ring_);
    }
    void submit(std::vector<IoOp>& ops) override {
        bool ring = false;
        for (auto& op : ops) {
            if (in_ring(op))
                ring = true;
            else
                op.done(run_io_sync(fd_, op));
        }
        if (!ring) return ops.clear();
        bool background = false;
        {
            std::lock_guard lock(mu_);
            for (auto& op : ops)
                if (in_ring(op)) start(slot_for(std::move(op)));
            io_uring_submit(&ring_);
            reap_locked();
            background = inflight_ > 0;
        }
        ops.clear();
        if (background) waiting_.notify_one();
    }
    const char* name() const override { return "io_uring"; }

private:
    explicit UringEngine(int fd) : fd_(fd) {}

    static bool in_ring(const IoOp& op) {
        return op.kind == IoOp::Kind::Read || op.kind == IoOp::Kind::Write || op.kind == IoOp::Kind::Flush;
    }

    io_uring_sqe* sqe() {
        io_uring_sqe* s = io_uring_get_sqe(&ring_);
        while (!s) {
            io_uring_submit(&ring_);
            s = io_uring_get_sqe(&ring_);
        }
        return s;
    }

    void start(IoOp* op) {
        io_uring_sqe* s = sqe();
        switch (op->kind) {
            // One buffer: READ/WRITE, as pread/pwrite on the inline path (no iovec to import).
            case IoOp::Kind::Read:
                if (op->iov.size() == 1)
                    io_uring_prep_read(s, kDiskFile, op->iov[0].iov_base, static_cast<unsigned>(op->iov[0].iov_len), op->offset);
                else
                    io_uring_prep_readv(s, kDiskFile, op->iov.data(), static_cast<unsigned>(std::min<std::size_t>(op->iov.size(), IOV_MAX)), op->offset);
                break;
            case IoOp::Kind::Write:
                if (op->iov.size() == 1)
                    io_uring_prep_write(s, kDiskFile, op->iov[0].iov_base, static_cast<unsigned>(op->iov[0].iov_len), op->offset);
                else
                    io_uring_prep_writev(s, kDiskFile, op->iov.data(), static_cast<unsigned>(std::min<std::size_t>(op->iov.size(), IOV_MAX)), op->offset);
                break;
            default:
                io_uring_prep_fsync(s, kDiskFile, IORING_FSYNC_DATASYNC);
                break;
        }
        io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE);  // the ring takes registered files only
        io_uring_sqe_set_data(s, op);
        ++inflight_;
    }

    // An op in the ring lives in a slot of its own (its iovecs must stay put until the
    // completion); finished slots are kept for the next ops instead of a new and a delete per
    // request. mu_ held.
    IoOp* slot_for(IoOp&& op) {
        if (spare_.empty()) return new IoOp(std::move(op));
        IoOp* slot = spare_.back().release();
        spare_.pop_back();
        *slot = std::move(op);
        return slot;
    }

    void finish(IoOp* op, int r) {
        op->done(r);
        op->done = {};
        op->ranges.clear();
        spare_.emplace_back(op);
    }

    // One CQE's op: finished (done called), or started again (true: the ring needs a submit).
    bool complete(IoOp* op, int res) {
        --inflight_;
        if (op->kind == IoOp::Kind::Flush) return finish(op, res < 0 ? res : 0), false;
        if (res == -EINTR || res == -EAGAIN) return start(op), true;
        if (res < 0) return finish(op, res), false;
        if (res == 0) return finish(op, -EIO), false;
        op->offset += static_cast<std::uint64_t>(res);
        advance(op->iov, static_cast<std::size_t>(res));
        if (op->iov.empty() || total(op->iov) == 0) return finish(op, 0), false;
        start(op);  // short transfer: continue with the rest
        return true;
    }

    // Completes every CQE the ring holds, one interrupt per reap (CompletionBatch); ops started
    // again are submitted and reaped in turn. mu_ held.
    void reap_locked() {
        for (;;) {
            unsigned head, seen = 0;
            bool resubmit = false;
            {
                CompletionBatch batch;
                io_uring_cqe* cqe = nullptr;
                io_uring_for_each_cqe(&ring_, head, cqe) {
                    ++seen;
                    if (auto* op = static_cast<IoOp*>(io_uring_cqe_get_data(cqe)))  // nullptr: the wake-up NOP
                        resubmit = complete(op, cqe->res) || resubmit;
                }
            }
            io_uring_cq_advance(&ring_, seen);
            if (!resubmit) return;
            io_uring_submit(&ring_);
        }
    }

    // The engine thread: what completes in the background, and the end.
    void run() {
        std::unique_lock lock(mu_);
        for (;;) {
            waiting_.wait(lock, [&] { return stop_ || inflight_ > 0; });
            if (stop_ && inflight_ == 0) return;
            // Without mu_: the submitter may reap what this waits for (then the next completion
            // wakes it for nothing) or submit meanwhile; liburing's wait only reads the CQ.
            lock.unlock();
            io_uring_cqe* cqe = nullptr;
            const int r = io_uring_wait_cqe(&ring_, &cqe);
            lock.lock();
            if (r < 0 && r != -EINTR && r != -EAGAIN) {
                // Never seen; but the ops in the ring must still end (a reset waits for them):
                // look at the completion queue every millisecond instead of waiting in it.
                if (!wait_failed_) logger("blk")->error("io_uring_wait_cqe: {}; polling the ring", std::strerror(-r));
                wait_failed_ = true;
            }
            reap_locked();
            if (wait_failed_ && inflight_ > 0) waiting_.wait_for(lock, std::chrono::milliseconds(1));
        }
    }

    static constexpr int kDiskFile = 0;  // registered file index
    const int fd_;
    io_uring ring_{};
    bool ring_ok_ = false;
    std::thread thread_;
    std::mutex mu_;                        // the ring (SQ and CQ), inflight_, stop_
    std::condition_variable waiting_;      // the engine thread: the ring holds ops, or stop_
    unsigned inflight_ = 0;                // ops in the ring
    std::vector<std::unique_ptr<IoOp>> spare_;  // finished ops' slots (slot_for)
    bool stop_ = false;
    bool wait_failed_ = false;             // engine thread only
};

#endif

}  // namespace

std::unique_ptr<IoEngine> make_uring_engine([[maybe_unused]] int fd, [[maybe_unused]] unsigned depth,
                                            [[maybe_unused]] const std::string& thread_name,
                                            [[maybe_unused]] std::function<void()> on_thread_start) {
#ifdef VMM_HAVE_LIBURING
    return UringEngine::create(fd, depth, thread_name, std::move(on_thread_start));
#else
    return nullptr;
#endif
}

std::unique_ptr<IoEngine> make_thread_pool_engine(int fd, unsigned threads, const std::string& thread_name,
                                                  std::function<void()> on_thread_start) {
    return std::make_unique<ThreadPoolEngine>(fd, threads, thread_name, std::move(on_thread_start));
}

std::unique_ptr<IoEngine> make_split_engine(std::unique_ptr<IoEngine> reads, std::unique_ptr<IoEngine> rest) {
    return std::make_unique<SplitEngine>(std::move(reads), std::move(rest));
}

}  // namespace vmm::virtio_blk
