// IoEngine: runs a virtio-blk device's disk I/O off the vCPU threads.
//
// Two engines with the same interface: an io_uring ring (when the build found liburing and the
// kernel allows io_uring), which the submitting thread enters itself and whose background
// completions one engine thread reaps, or a small pool of threads doing
// preadv/pwritev/fdatasync/fallocate. The device hands over whole operations whose iovecs point
// into guest memory (already bounds-checked by the virtqueue), and learns the result through the
// op's `done` callback, called exactly once: on an engine thread, or (io_uring: an op that
// completed at once, such as a read from the page cache; discard and write-zeroes) on the thread
// that called submit(), before submit() returns. A caller of submit() must hold no lock that
// `done` takes.
//
// Threads: submit() from any thread; the destructor waits for every submitted op to finish.
// Every engine thread (the ring thread, each pool worker) calls `on_thread_start` (when set)
// first thing, before it does any I/O; see VirtioBlkOptions::on_thread_start.
#pragma once

#include "devicemodel/virtio/virtqueue.h"

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace vmm::virtio_blk {

// An op's completion: fn(arg, tag, result). A function and two words, not a std::function:
// one is built and dropped per request on the data path (a std::function's manager call alone
// was ~20 instructions of a cached 4 KiB read, issue #3).
struct IoCompletion {
    void (*fn)(void* arg, std::uint64_t tag, int result) = nullptr;
    void* arg = nullptr;
    std::uint64_t tag = 0;
    void operator()(int result) const { fn(arg, tag, result); }
    // Calls `f` (which must outlive the op): for callers that want a closure (tests).
    static IoCompletion of(std::function<void(int)>& f) {
        return {[](void* a, std::uint64_t, int r) { (*static_cast<std::function<void(int)>*>(a))(r); }, &f, 0};
    }
};

struct IoOp {
    enum class Kind { Read, Write, Flush, Discard, WriteZeroes };
    // User-provided: `ops.emplace_back()` value-initialises, which for an implicit constructor
    // zero-fills the whole op first (a `rep stos` over the iovecs' inline storage, per request).
    IoOp() noexcept {}
    IoOp(Kind k, IoCompletion on_done) noexcept : kind(k), done(on_done) {}
    IoOp(IoOp&&) = default;
    // Field by field, a one-buffer op's iovec stored in place: the implicit one moved the
    // iovecs through boost's generic range copy and a memmove call (~45 instructions a request
    // at depth 32, where each op moves into its ring slot; issue #3).
    IoOp& operator=(IoOp&& o);
    Kind kind = Kind::Read;
    std::uint64_t offset = 0;  // host byte offset (Read, Write)
    virtio::IoVecs iov;        // Read, Write
    std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;  // Discard, WriteZeroes: host (offset, length)
    bool unmap = false;        // WriteZeroes: may deallocate
    // Called once with 0 on success (the whole length transferred), -errno on failure.
    IoCompletion done;
};

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
// GCC 12 sees boost's growth path of the iovec vector inlined after clear() and warns of a
// memmove into a zero-size region (a false positive: clear() keeps the inline capacity).
#pragma GCC diagnostic ignored "-Wstringop-overflow"
#endif
[[gnu::always_inline]] inline IoOp& IoOp::operator=(IoOp&& o) {
    if (this == &o) return *this;
    kind = o.kind;
    offset = o.offset;
    if (o.iov.size() == 1) {
        iov.clear();
        virtio::append_iov(iov, o.iov[0].iov_base, o.iov[0].iov_len);
    } else {
        iov = std::move(o.iov);
    }
    ranges.swap(o.ranges);  // o keeps this op's old list (a ring slot's: cleared when it finished)
    unmap = o.unmap;
    done = o.done;
    return *this;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

class IoEngine {
public:
    virtual ~IoEngine() = default;
    // Takes every op of `ops` and leaves it empty, its capacity kept for the caller's next
    // batch (a device submits a batch per kick; no allocation per batch).
    virtual void submit(std::vector<IoOp>& ops) = 0;
    virtual const char* name() const = 0;
};

// io_uring engine ("io_uring"), or nullptr when liburing was not built in or the kernel refuses.
std::unique_ptr<IoEngine> make_uring_engine(int fd, unsigned depth, const std::string& thread_name,
                                            std::function<void()> on_thread_start = {});
// Thread-pool engine ("threads"): `threads` workers named thread_name + index.
std::unique_ptr<IoEngine> make_thread_pool_engine(int fd, unsigned threads, const std::string& thread_name,
                                                  std::function<void()> on_thread_start = {});
// Reads to `reads`, every other op to `rest` ("io_uring reads, threads" for a ring and a pool);
// the order of a submit()'s ops is kept within each side.
std::unique_ptr<IoEngine> make_split_engine(std::unique_ptr<IoEngine> reads, std::unique_ptr<IoEngine> rest);

// Completion batching: an engine thread completes a run of ops inside a CompletionBatch; a
// device whose `done` runs inside one hands the op's result to the batch (defer()) and finishes
// the batch's results at its end, under one lock and with one interrupt: a burst of
// completions costs the driver one interrupt, not one each (issue #3: at depth 32 a request
// used to cost an interrupt of its own), and the device one lock round trip, not one each.
// Outside a batch (the dispatcher's inline path) defer() says no and the device completes the
// op at once. A batch is per thread; its flushes run, in order, when it closes (a device's
// earlier when kMaxResults of its results wait); the engines keep batches short (what one reap
// of the ring returned; up to kMaxBatchOps reads and writes of a pool worker, never a flush).
class CompletionBatch {
public:
    // One op's end, as the device knows it: its own tag (which request) and the op's result.
    struct Result {
        std::uint64_t tag;
        int value;
    };
    using Flush = void (*)(void* arg, std::span<const Result> results);
    static constexpr unsigned kMaxBatchOps = 8;
    static constexpr unsigned kMaxResults = 32;
    CompletionBatch() : outer_(current_) { current_ = this; }
    ~CompletionBatch();
    CompletionBatch(const CompletionBatch&) = delete;
    CompletionBatch& operator=(const CompletionBatch&) = delete;
    // Hands `result` to this thread's open batch, for `flush(arg, results)` (the results of the
    // pair in the order given); false when no batch is open or it has no room for another
    // pair: then the caller completes the op now.
    static bool defer(Flush flush, void* arg, Result result);

private:
    struct Pending {
        Flush flush;
        void* arg;
        unsigned count;
        Result results[kMaxResults];  // left uninitialised: only [0, count) is ever read
    };
    static thread_local CompletionBatch* current_;
    CompletionBatch* outer_;
    Pending pending_[4];
    unsigned count_ = 0;
};

// Runs one op synchronously on the calling thread; returns 0 or -errno (does not call done).
// A read or write consumes op's iovecs and moves op.offset along as it goes.
int run_io_sync(int fd, IoOp& op);

// A read of what the page cache holds, without waiting for the disk (preadv2 RWF_NOWAIT), the
// way io_uring first tries a read. 0: all of it was read. -EAGAIN: the rest would wait; op's
// offset and iovecs now cover only that rest. -EOPNOTSUPP: the file cannot do it (op untouched).
// Another -errno: the read failed. Does not call done.
int read_cached(int fd, IoOp& op);

}  // namespace vmm::virtio_blk
