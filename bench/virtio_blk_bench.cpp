// virtio_blk_bench: the virtio-blk device model against the raw syscalls, in one run (issue 3).
//
// 4 KiB random reads and 4 KiB random writes on one backing file (page cache, no O_DIRECT):
//  - raw: pread/pwrite back to back (queue depth 1), io_uring at depth 1 and 32;
//  - device: a lean guest driver (LeanDriver below, ring layout by tests/support/virtqueue_driver.h)
//    on its own thread against a VirtioBlk (queue, dispatcher thread, inline path or I/O engine,
//    completion), at depth 1 and 32. The driver kicks (VirtioBlk::queue_notify) only when the
//    device's suppression state asks for it, as Linux's virtqueue_kick_prepare does. Its
//    interrupt is an eventfd, as the anchor's irqfd.
//    `one thread`: the driver's thread also serves the device (VirtioBlk's own_thread off,
//    serve_queue() in place of the kick, interrupts suppressed): the device model's own work
//    per request, the way virtio_net_bench measures its device, without a hand-off. These rows
//    also time serve_queue() itself: "the device model alone" leaves out the bench driver's
//    posting and reclaiming (a guest's work, on its own vCPU), as virtio_net_bench does.
//    `floor`: the same driver and timing against FloorDevice below, the least any virtio-blk
//    device does for a read (a yardstick for the one-thread rows, not a device).
//    Two drivers: `irq` blocks in read() on the interrupt eventfd (Linux's virtio-blk), `polled`
//    sets VRING_AVAIL_F_NO_INTERRUPT and spins on the used index (our test guests; at depth 32,
//    Linux's virtio_blk.poll_queues with io_uring's polled I/O). Each with the device's adaptive
//    polling off (poll_max 0) and on (--poll-max, default the device's); at depth 32 the polled
//    driver only with polling on.
// Every configuration runs once per round, rounds interleaved; ratios are taken within a round
// (device / raw of the same round), and the summary gives min..max and the median over rounds.
// In the anchor a kick is KVM's ioeventfd signalling the device's own kick eventfd (--kick eventfd);
// by default the bench calls queue_notify() instead, which costs the same hand-off.
//
// Usage: virtio_blk_bench [--file PATH] [--size-mb N] [--seconds S] [--rounds N]
//                         [--engine split|threads|io_uring] [--inline-max BYTES] [--poll-max NS]
//                         (split, the device's default: reads on io_uring, the rest on the pool)
//                         [--only NAME-PART[,NAME-PART...]]   (only the device configurations whose name has one)
//                         [--kick call|eventfd|relay]   (how the driver kicks: see Args::kick)
//                         [--pin]   (the device's threads on CPU 1, the driver and raw loops on CPU 0,
//                                    as a deployment that polls pins the iothread apart from the vCPU)
//                         [--workload read|write|both]   (default both)
//                         [--small-pages]   (guest RAM in 4 KiB pages; by default THP, as the anchor's)
//                         [--raw-alone]   (the raw loops in a single-threaded process: see Bystander)
#include "common/fd.h"
#include "common/log.h"
#include "common/mapping.h"
#include "common/plain_syscall.h"
#include "devicemodel/virtio-blk/virtio_blk.h"
#include "tests/support/fakes.h"
#include "tests/support/virtqueue_driver.h"

#include <fcntl.h>
#include <linux/virtio_blk.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#ifdef VMM_HAVE_LIBURING
#include <liburing.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <stdexcept>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace vmm;
using Clock = std::chrono::steady_clock;
using Drv = test::VirtqueueDriver;

constexpr std::uint32_t kLen = 4096;

struct Args {
    std::string file;
    std::uint64_t size_mb = 64;
    double seconds = 0.5;
    unsigned rounds = 5;
    std::string engine = "split";  // split | threads | io_uring
    std::size_t inline_max = virtio_blk::VirtioBlkOptions{}.inline_max_bytes;
    std::chrono::nanoseconds poll_max = virtio_blk::VirtioBlkOptions{}.poll_max;
    std::string only;  // run only the device configurations whose name contains this (or one of a,b,...)
    // How the driver kicks: `call` queue_notify() on its own thread; `eventfd` a write to the
    // device's kick eventfd, as KVM's ioeventfd does in the anchor; `relay` a write to an
    // eventfd a relay thread turns into queue_notify() (the anchor's notify thread before the
    // device had an eventfd of its own).
    std::string kick = "call";
    bool pin = false;  // the device's threads on CPU 1, the driver on CPU 0
    std::string workload = "both";  // read | write | both
    bool small_pages = false;  // guest RAM in 4 KiB pages (the anchor's "thp": false)
    bool raw_alone = false;    // no bystander thread (see Bystander)
};

// A thread that only waits, alive for the whole run: the raw loops then run in a process with
// more than one thread, as the device does (its engine threads) and as every VMM process is
// (vCPUs, device threads). Without it the raw loops alone would get what no VMM gets: the
// kernel takes a file reference on each pread only where the fd table is shared (fdget/fput,
// 3-4 % of a cached 4 KiB read on the 2026-12 KVM host, issue #3). --raw-alone leaves it out.
class Bystander {
public:
    Bystander() : thread_([this] {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stop_; });
    }) {}
    ~Bystander() {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
        }
        cv_.notify_one();
        thread_.join();
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::thread thread_;
};

struct Result {
    std::uint64_t ops = 0;
    double secs = 0;
    // Device runs: kicks and interrupts per request, and what the dispatcher's polling did.
    double kicks_per_op = 0, irqs_per_op = 0;
    virtio_blk::PollStats poll;
    // Per-request latency, submit to completion seen by the submitter: the median is what a
    // request costs when no thread of ours was preempted (the throughput of a spinning thread on
    // a loaded host is dominated by the time slices it loses).
    double p50_us = 0, p99_us = 0;
    // One-thread device runs: the time spent inside serve_queue(), the device model's own work
    // (the bench driver's posting and reclaiming, a guest's share, left out); 0 otherwise.
    double model_secs = 0;
    double iops() const { return secs > 0 ? ops / secs : 0; }
    double model_iops() const { return model_secs > 0 ? ops / model_secs : 0; }
};

class Latencies {
public:
    Latencies() { ns_.reserve(1 << 20); }
    void add(Clock::duration d) {
        ns_.push_back(static_cast<std::uint32_t>(std::min<std::int64_t>(d.count(), UINT32_MAX)));
    }
    void into(Result& r) {
        if (ns_.empty()) return;
        auto at = [&](double q) {
            auto it = ns_.begin() + static_cast<std::ptrdiff_t>(q * static_cast<double>(ns_.size() - 1));
            std::nth_element(ns_.begin(), it, ns_.end());
            return *it / 1000.0;
        };
        r.p50_us = at(0.5);
        r.p99_us = at(0.99);
    }

private:
    std::vector<std::uint32_t> ns_;
};

[[noreturn]] void die(const char* what) {
    std::perror(what);
    std::exit(1);
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

// Random 4 KiB-aligned offsets, the same sequence for every configuration.
struct Offsets {
    std::mt19937_64 rng{1};
    std::uint64_t slots;
    explicit Offsets(std::uint64_t disk_bytes) : slots(disk_bytes / kLen) {}
    std::uint64_t next() { return (rng() % slots) * kLen; }
};

// The raw loops' buffers: in memory mapped as the device's guest RAM is (page-aligned, THP
// unless --small-pages), so both copy into and out of the same kind of memory (measured on the
// 2026-12 KVM host: as fast as the heap vector it replaced).
Mapping raw_buffers(std::size_t bytes, bool small_pages) {
    const std::size_t size = (bytes + (2u << 20) - 1) & ~((std::size_t{2} << 20) - 1);
    Mapping m = Mapping::guest_ram(size, small_pages ? Mapping::RamPages::Small : Mapping::RamPages::Transparent);
    std::memset(m.data(), 0x5a, bytes);
    return m;
}

Result raw_sync(int fd, bool write, std::uint64_t disk_bytes, double seconds, bool small_pages) {
    const Mapping mapping = raw_buffers(kLen, small_pages);
    const std::span<std::uint8_t> buf(mapping.data(), kLen);
    Offsets offs(disk_bytes);
    Result r;
    Latencies lat;
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration<double>(seconds);
    for (auto now = start; now < end; ++r.ops) {
        const off_t off = static_cast<off_t>(offs.next());
        // The plain system call, as the device makes it (common/plain_syscall.h).
        const ssize_t n = write ? sys::pwrite(fd, buf.data(), kLen, off) : sys::pread(fd, buf.data(), kLen, off);
        if (n != static_cast<ssize_t>(kLen)) die("raw I/O");
        const auto t = Clock::now();
        lat.add(t - now);
        now = t;
    }
    r.secs = std::chrono::duration<double>(Clock::now() - start).count();
    lat.into(r);
    return r;
}

#ifdef VMM_HAVE_LIBURING
// io_uring keeping `depth` requests in flight; one io_uring_enter submits and waits per batch.
Result raw_uring(int fd, bool write, std::uint64_t disk_bytes, double seconds, unsigned depth, bool small_pages) {
    io_uring ring;
    if (io_uring_queue_init(depth, &ring, 0) < 0) return {};
    const Mapping mapping = raw_buffers(std::size_t{depth} * kLen, small_pages);
    std::uint8_t* const bufs = mapping.data();
    Offsets offs(disk_bytes);
    std::vector<Clock::time_point> submitted(depth);
    Latencies lat;
    // One clock reading per batch of completions, as the device loop takes.
    auto prep = [&](unsigned slot, Clock::time_point at) {
        submitted[slot] = at;
        io_uring_sqe* sqe = io_uring_get_sqe(&ring);
        std::uint8_t* buf = bufs + std::size_t{slot} * kLen;
        if (write)
            io_uring_prep_write(sqe, fd, buf, kLen, offs.next());
        else
            io_uring_prep_read(sqe, fd, buf, kLen, offs.next());
        sqe->user_data = slot;
    };
    const auto first = Clock::now();
    for (unsigned s = 0; s < depth; ++s) prep(s, first);
    Result r;
    unsigned outstanding = depth;
    bool draining = false;
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration<double>(seconds);
    while (outstanding) {
        if (io_uring_submit_and_wait(&ring, 1) < 0) die("io_uring_submit_and_wait");
        io_uring_cqe* cqe;
        unsigned head, seen = 0;
        const auto now = Clock::now();
        io_uring_for_each_cqe(&ring, head, cqe) {
            ++seen;
            if (cqe->res != static_cast<int>(kLen)) {
                errno = cqe->res < 0 ? -cqe->res : EIO;
                die("raw io_uring I/O");
            }
            ++r.ops;
            --outstanding;
            lat.add(now - submitted[cqe->user_data]);
            if (!draining) {
                prep(static_cast<unsigned>(cqe->user_data), now);
                ++outstanding;
            }
        }
        io_uring_cq_advance(&ring, seen);
        if (!draining && now >= end) draining = true;
    }
    r.secs = std::chrono::duration<double>(Clock::now() - start).count();
    lat.into(r);
    io_uring_queue_exit(&ring);
    return r;
}
#endif

// The device's interrupt, as the anchor's irqfd: an eventfd the driver can block on.
class EventfdInterrupt : public virtio::VirtioInterrupt {
public:
    EventfdInterrupt() : efd_(::eventfd(0, EFD_CLOEXEC)) {
        if (!efd_) die("eventfd");
    }
    void notify_queue(std::uint16_t) override {
        count.fetch_add(1, std::memory_order_relaxed);
        const std::uint64_t one = 1;
        if (::write(efd_.get(), &one, sizeof one) != sizeof one) die("eventfd write");
    }
    void notify_config() override {}
    void needs_reset() override {
        std::fprintf(stderr, "device asked for a reset\n");
        std::exit(1);
    }
    // Blocks until the next interrupt.
    void wait() {
        std::uint64_t v;
        if (::read(efd_.get(), &v, sizeof v) != sizeof v) die("eventfd read");
    }
    std::atomic<std::uint64_t> count{0};

private:
    Fd efd_;
};

struct DeviceConfig {
    unsigned depth;
    bool polled_driver;
    bool device_poll;
    // The driver's thread serves the device itself (VirtioBlkOptions::own_thread = false,
    // serve_queue() after each batch of submissions, no kicks, no interrupts): the device
    // model's own work per request, without the hand-off between two threads.
    bool one_thread = false;
    bool floor = false;  // one thread, FloorDevice in place of VirtioBlk (reads only)
};

// --only "a,b": a name containing any of the comma-separated parts.
bool matches_only(const std::string& name, const std::string& only) {
    std::size_t from = 0;
    for (;;) {
        const std::size_t comma = only.find(',', from);
        if (name.find(only.substr(from, comma - from)) != std::string::npos) return true;
        if (comma == std::string::npos) return false;
        from = comma + 1;
    }
}

std::string name_of(const DeviceConfig& c) {
    if (c.floor) return std::string("qd") + std::to_string(c.depth) + " floor (hand-written minimum)";
    if (c.one_thread) return std::string("qd") + std::to_string(c.depth) + " one thread";
    return std::string("qd") + std::to_string(c.depth) + (c.polled_driver ? " polled driver" : " irq driver") +
           (c.device_poll ? ", poll on" : ", poll off");
}

void pin_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (::sched_setaffinity(0, sizeof set, &set) != 0) die("sched_setaffinity");
}

// The guest driver, lean: each slot's chain (header, data, status) is written into the
// descriptor table once, and a request only rewrites its header and status byte and publishes
// the slot's head, as a polling test guest does. Ring fields are read and written through host
// pointers with the barriers of virtio 1.2 §2.7.13 (a guest kernel's virtio_wmb/virtio_mb).
// Whatever this costs is counted against the device, so it must stay small next to a ~2 µs
// pread (tests/support/virtqueue_driver.h, with its maps and vectors, costs ~0.8 µs a request).
class LeanDriver {
public:
    static constexpr std::uint16_t kSize = 256;
    static constexpr std::uint64_t kRings = 0x1000, kHeaders = 0x10000, kData = 1 << 20;

    LeanDriver(const GuestMemory& mem, unsigned depth, bool write) : layout_(mem, kRings, kSize) {
        if (depth * 3 > kSize) throw std::runtime_error("depth too large");
        for (unsigned slot = 0; slot < depth; ++slot) {
            const auto head = static_cast<std::uint16_t>(3 * slot);
            const std::uint64_t h = kHeaders + 32ull * slot, data = kData + std::uint64_t{slot} * kLen;
            layout_.set_desc(head, h, 16, virtio::kDescFNext, static_cast<std::uint16_t>(head + 1));
            layout_.set_desc(static_cast<std::uint16_t>(head + 1), data, kLen,
                             static_cast<std::uint16_t>(virtio::kDescFNext | (write ? 0 : virtio::kDescFWrite)),
                             static_cast<std::uint16_t>(head + 2));
            layout_.set_desc(static_cast<std::uint16_t>(head + 2), h + 16, 1, virtio::kDescFWrite, 0);
            virtio_blk_outhdr hdr{write ? 1u * VIRTIO_BLK_T_OUT : 1u * VIRTIO_BLK_T_IN, 0, 0};
            mem.write(h, &hdr, sizeof hdr);
        }
        // Host views, checked once: the layout above lies inside `mem` (VirtqueueDriver checked).
        avail_ = host<std::uint16_t>(mem, layout_.avail_addr(), 4 + 2 * kSize);
        used_ = host<std::uint8_t>(mem, layout_.used_addr(), 4 + 8 * kSize);
        headers_ = host<std::uint8_t>(mem, kHeaders, 32ull * depth);
    }
    virtio::QueueConfig config() const { return layout_.config(); }
    void suppress_interrupts() { std::atomic_ref<std::uint16_t>(avail_[0]).store(virtio::kAvailFNoInterrupt); }

    void submit(unsigned slot, std::uint64_t sector) {
        std::uint8_t* h = headers_ + 32ull * slot;
        std::memcpy(h + 8, &sector, sizeof sector);  // virtio_blk_outhdr.sector
        h[16] = 0xff;                                 // status
        avail_[2 + avail_idx_ % kSize] = static_cast<std::uint16_t>(3 * slot);
        ++avail_idx_;
        std::atomic_ref<std::uint16_t>(avail_[1]).store(avail_idx_, std::memory_order_release);
    }
    // After a batch of submits: Linux's virtqueue_kick_prepare without EVENT_IDX.
    bool needs_kick() const {
        std::atomic_thread_fence(std::memory_order_seq_cst);
        std::uint16_t flags;
        std::memcpy(&flags, used_, sizeof flags);
        return !(flags & virtio::kUsedFNoNotify);
    }
    bool has_used() const { return used_idx() != last_used_; }
    // Calls fn(slot, status) for every request completed since the last call.
    template <typename Fn>
    void reclaim(Fn&& fn) {
        const std::uint16_t idx = used_idx();
        while (last_used_ != idx) {
            virtio::VirtqUsedElem e;
            std::memcpy(&e, used_ + 4 + 8 * (last_used_ % kSize), sizeof e);
            const unsigned slot = e.id / 3;
            fn(slot, headers_[32ull * slot + 16]);
            ++last_used_;
        }
    }

private:
    template <typename T>
    static T* host(const GuestMemory& mem, std::uint64_t gpa, std::uint64_t len) {
        auto s = mem.span(gpa, len);
        if (!s) throw std::runtime_error("ring outside memory");
        return reinterpret_cast<T*>(s->data());  // alignment: the ring layout's (2 and 4 bytes)
    }
    std::uint16_t used_idx() const {
        return std::atomic_ref<std::uint16_t>(*reinterpret_cast<std::uint16_t*>(used_ + 2)).load(std::memory_order_acquire);
    }

    Drv layout_;
    std::uint16_t* avail_ = nullptr;
    std::uint8_t* used_ = nullptr;
    std::uint8_t* headers_ = nullptr;
    std::uint16_t avail_idx_ = 0, last_used_ = 0;
};

// The floor: the least any virtio-blk device does for a request, written out by hand for the
// one-thread rows' single-queue, single-thread case (no lock, no reset, no engine, no
// abstraction): read the avail idx, the ring entry and the descriptors, check each against guest
// memory and the chain's rules, read the header, check the request against the disk, make the
// one system call into the guest's buffer, write the status, the used entry and the used idx,
// and ask whether the driver wants an interrupt, with the fences of virtio 1.2 §2.7.13 (the
// used idx before the driver's flags; notifications re-enabled, then a look again, before the
// device would sleep). A yardstick, not a device: what a request costs a device before any
// design choice of ours (the lock, the op records, the completion path); "qd1 floor" puts it
// beside "qd1 one thread" (issue #3).
class FloorDevice {
public:
    FloorDevice(const GuestMemory& mem, const virtio::QueueConfig& q, int fd, std::uint64_t capacity)
        : mem_(mem), size_(q.size), fd_(fd), capacity_(capacity) {
        desc_ = mem.host_address(q.desc, 16ull * size_);
        avail_ = mem.host_address(q.avail, 6 + 2ull * size_);
        used_ = mem.host_address(q.used, 6 + 8ull * size_);
        if (!desc_ || !avail_ || !used_) throw std::runtime_error("floor: rings outside memory");
    }
    std::uint64_t errors() const { return errors_; }

    void serve() {
        store16(used_, virtio::kUsedFNoNotify);  // no kicks while serving
        for (;;) {
            std::uint16_t idx = load_acquire16(avail_ + 2);
            if (idx == next_avail_) {
                store16(used_, 0);  // kicks again before going idle, then one more look
                std::atomic_thread_fence(std::memory_order_seq_cst);
                idx = load_acquire16(avail_ + 2);
                if (idx == next_avail_) return;
                store16(used_, virtio::kUsedFNoNotify);
            }
            if (static_cast<std::uint16_t>(idx - next_avail_) > size_) return void(++errors_);
            while (next_avail_ != idx) serve_one(load16(avail_ + 4 + 2 * (next_avail_++ & (size_ - 1))));
            publish_and_ask();
        }
    }

private:
    static std::uint16_t load16(const std::uint8_t* p) {
        std::uint16_t v;
        std::memcpy(&v, p, 2);
        return v;
    }
    static std::uint16_t load_acquire16(std::uint8_t* p) {
        return std::atomic_ref<std::uint16_t>(*reinterpret_cast<std::uint16_t*>(p)).load(std::memory_order_acquire);
    }
    static void store16(std::uint8_t* p, std::uint16_t v) { std::memcpy(p, &v, 2); }

    void serve_one(std::uint16_t head) {
        if (head >= size_) return void(++errors_);
        // Walk: header (readable, 16 bytes), data, status (writable, 1 byte), at most size_ hops.
        std::uint8_t* host[3];
        std::uint32_t len[3];
        bool writable[3];
        unsigned n = 0;
        std::uint32_t i = head;
        for (unsigned hops = 0;; ++hops) {
            virtio::VirtqDesc d;
            std::memcpy(&d, desc_ + 16ull * i, sizeof d);
            if (hops >= size_ || n == 3 || (d.flags & virtio::kDescFIndirect)) return fail(head);
            host[n] = mem_.host_address(d.addr, d.len);
            if (!host[n]) return fail(head);
            len[n] = d.len;
            writable[n] = d.flags & virtio::kDescFWrite;
            if (n && writable[n - 1] && !writable[n]) return fail(head);
            ++n;
            if (!(d.flags & virtio::kDescFNext)) break;
            if (d.next >= size_) return fail(head);
            i = d.next;
        }
        if (n != 3 || writable[0] || len[0] < 16 || !writable[2] || len[2] < 1) return fail(head);
        std::uint32_t type;
        std::uint64_t sector;
        std::memcpy(&type, host[0], 4);
        std::memcpy(&sector, host[0] + 8, 8);
        std::uint8_t status = VIRTIO_BLK_S_IOERR;
        std::uint32_t written = 0;
        if (type == VIRTIO_BLK_T_IN && writable[1] && len[1] % 512 == 0 && sector <= capacity_ / 512 &&
            len[1] <= capacity_ - sector * 512) {
            const ssize_t got = sys::pread(fd_, host[1], len[1], static_cast<off_t>(sector * 512));
            if (got == static_cast<ssize_t>(len[1])) {
                status = VIRTIO_BLK_S_OK;
                written = len[1];
            }
        }
        host[2][0] = status;
        put_used(head, written + 1);
    }
    void fail(std::uint16_t head) {
        ++errors_;
        put_used(head, 0);
    }
    void put_used(std::uint16_t head, std::uint32_t written) {
        const virtio::VirtqUsedElem e{head, written};
        std::memcpy(used_ + 4 + 8 * (next_used_++ & (size_ - 1)), &e, sizeof e);
    }
    void publish_and_ask() {
        std::atomic_ref<std::uint16_t>(*reinterpret_cast<std::uint16_t*>(used_ + 2)).store(next_used_, std::memory_order_release);
        std::atomic_thread_fence(std::memory_order_seq_cst);  // the used idx before the driver's flags
        if (!(load16(avail_) & virtio::kAvailFNoInterrupt)) ++interrupts_;
    }

    const GuestMemory& mem_;
    std::uint16_t size_;
    int fd_;
    std::uint64_t capacity_;
    std::uint8_t *desc_, *avail_, *used_;
    std::uint16_t next_avail_ = 0, next_used_ = 0;
    std::uint64_t errors_ = 0, interrupts_ = 0;
};

Result device_run(const Args& a, const DeviceConfig& c, bool write, std::uint64_t disk_bytes) {
    // Threads inherit the creator's affinity: create the device's threads on CPU 1.
    if (a.pin) pin_to(1);
    virtio_blk::VirtioBlkOptions opts;
    opts.name = "bench";
    opts.use_io_uring = a.engine == "io_uring";
    opts.reads_on_io_uring = a.engine == "split";
    opts.inline_max_bytes = a.inline_max;
    opts.poll_max = c.device_poll ? a.poll_max : std::chrono::nanoseconds{0};
    opts.own_thread = !c.one_thread;
    virtio_blk::VirtioBlk blk(virtio_blk::DiskImage::open({a.file, std::nullopt, false}), opts);
    if (a.pin) pin_to(0);
    // Guest RAM as the anchor maps it (THP by default; whole 2 MiB pages).
    const std::uint64_t ram = (LeanDriver::kData + std::uint64_t{c.depth} * kLen + (2u << 20) - 1) & ~((2ull << 20) - 1);
    test::RamGuestMemory guest_ram(ram, a.small_pages ? Mapping::RamPages::Small : Mapping::RamPages::Transparent);
    const GuestMemory& mem = guest_ram;
    LeanDriver drv(mem, c.depth, write);
    auto irq = std::make_shared<EventfdInterrupt>();
    std::optional<FloorDevice> floor;
    Fd floor_fd;
    if (c.floor) {
        floor_fd = Fd(::open(a.file.c_str(), O_RDONLY | O_CLOEXEC));
        if (!floor_fd) die(a.file.c_str());
        floor.emplace(mem, drv.config(), floor_fd.get(), disk_bytes);
    } else {
        blk.activate(mem, virtio::feature_bit(virtio::kFeatureVersion1) | virtio::feature_bit(virtio::kFeatureIndirectDesc),
                     {drv.config()}, irq);
    }
    auto serve = [&] { floor ? floor->serve() : blk.serve_queue(); };
    if (c.polled_driver) drv.suppress_interrupts();
    Offsets offs(disk_bytes);
    std::uint64_t errors = 0, kicks = 0;
    std::vector<Clock::time_point> submitted(c.depth);
    Latencies lat;
    // A request's submit time is the clock reading its submitter already took (the reclaim that
    // freed its slot, or the one reading before the first batch): the device loop reads the
    // clock once per reclaim, as the raw loops read it once per request (a reading costs ~19 ns
    // here; four per request, as before, charged the device ~60 ns the raw loop did not pay).
    auto submit = [&](unsigned slot, Clock::time_point at) {
        submitted[slot] = at;
        drv.submit(slot, offs.next() / 512);
    };
    // The relay: an eventfd and a thread that turns each signal into queue_notify().
    Fd relay_fd(::eventfd(0, EFD_CLOEXEC));
    std::atomic<bool> relay_stop{false};
    std::thread relay;
    if (a.kick == "relay")
        relay = std::thread([&] {
            std::uint64_t n;
            while (::read(relay_fd.get(), &n, sizeof n) == sizeof n && !relay_stop) blk.queue_notify(0);
        });
    const int kick_fd = a.kick == "eventfd" ? blk.queue_kick_fd(0) : relay_fd.get();
    // One thread: the time inside serve_queue(), read around one call in kServeSample (two
    // readings around every call would add a reading's cost to each) and scaled to all calls.
    constexpr std::uint64_t kServeSample = 8;
    Clock::duration in_device{};
    std::uint64_t serves = 0, timed_serves = 0;
    auto kick = [&] {
        if (c.one_thread) {  // the driver's thread is the device's
            if (serves++ % kServeSample != 0) return serve();
            const auto t0 = Clock::now();
            serve();
            in_device += Clock::now() - t0;
            ++timed_serves;
            return;
        }
        if (drv.needs_kick()) {
            ++kicks;
            if (a.kick == "call") {
                blk.queue_notify(0);
            } else {
                const std::uint64_t one = 1;
                if (::write(kick_fd, &one, sizeof one) != sizeof one) die("kick eventfd");
            }
        }
    };
    const auto first = Clock::now();
    for (unsigned s = 0; s < c.depth; ++s) submit(s, first);
    kick();
    in_device = {};  // the first batch's serving is outside `secs` too
    serves = timed_serves = 0;
    Result r;
    const auto start = Clock::now();
    const auto end = start + std::chrono::duration<double>(a.seconds);
    bool draining = false;
    unsigned outstanding = c.depth;
    const std::uint64_t irqs_before = irq->count.load();
    while (outstanding) {
        if (c.polled_driver) {
            // One thread (its configurations poll too): served inline or by the ring at once
            // (reads, a lone request), or by an engine thread (writes at depth 32 go to the pool).
            while (!drv.has_used()) cpu_relax();
        } else {
            while (!drv.has_used()) irq->wait();
        }
        const auto now = Clock::now();
        if (!draining && now >= end) draining = true;
        drv.reclaim([&](unsigned slot, std::uint8_t status) {
            ++r.ops;
            --outstanding;
            lat.add(now - submitted[slot]);
            if (status != VIRTIO_BLK_S_OK) ++errors;
            if (!draining) {
                submit(slot, now);
                ++outstanding;
            }
        });
        if (!draining) kick();
    }
    r.secs = std::chrono::duration<double>(Clock::now() - start).count();
    if (timed_serves)
        r.model_secs = std::chrono::duration<double>(in_device).count() * static_cast<double>(serves) /
                       static_cast<double>(timed_serves);
    r.kicks_per_op = static_cast<double>(kicks) / static_cast<double>(r.ops);
    r.irqs_per_op = static_cast<double>(irq->count.load() - irqs_before) / static_cast<double>(r.ops);
    r.poll = blk.poll_stats();
    lat.into(r);
    if (relay.joinable()) {
        relay_stop = true;
        const std::uint64_t one = 1;
        if (::write(relay_fd.get(), &one, sizeof one) != sizeof one) die("relay eventfd");
        relay.join();
    }
    blk.reset();
    if (floor) errors += floor->errors();
    if (errors) {
        std::fprintf(stderr, "device reported %llu errors\n", static_cast<unsigned long long>(errors));
        std::exit(1);
    }
    return r;
}

// Per configuration: one Result per round.
using Samples = std::map<std::string, std::vector<Result>>;

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string range(const std::vector<double>& v, const char* fmt) {
    const auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    char b[96];
    std::string f = std::string(fmt) + " .. " + fmt + " (median " + fmt + ")";
    std::snprintf(b, sizeof b, f.c_str(), *lo, *hi, median(v));
    return b;
}

void summarise(const char* workload, const Samples& s, const std::vector<std::string>& raws,
               const std::vector<std::pair<std::string, std::string>>& ratios) {
    std::printf("\n## %s: requests/s over rounds (min .. max, median)\n", workload);
    for (const auto& [name, rs] : s) {
        std::vector<double> iops;
        for (const auto& r : rs) iops.push_back(r.iops() / 1000.0);
        std::vector<double> p50;
        for (const auto& r : rs) p50.push_back(r.p50_us);
        std::printf("  %-30s %s k/s; latency p50 %s us, p99 %.1f us", name.c_str(), range(iops, "%.1f").c_str(),
                    range(p50, "%.2f").c_str(), rs.back().p99_us);
        if (std::find(raws.begin(), raws.end(), name) == raws.end()) {
            const Result& last = rs.back();
            std::printf("   kicks/req %.3f irqs/req %.3f; last round: %llu found by polling, %llu at re-enable, %llu sleeps, "
                        "%llu preempted, window %lld ns",
                        last.kicks_per_op, last.irqs_per_op, static_cast<unsigned long long>(last.poll.found_polling),
                        static_cast<unsigned long long>(last.poll.found_at_reenable),
                        static_cast<unsigned long long>(last.poll.sleeps),
                        static_cast<unsigned long long>(last.poll.preempted),
                        static_cast<long long>(last.poll.window.count()));
        }
        std::printf("\n");
    }
    // One table per measure: ratio(device result, raw result) of the same round, over rounds;
    // a round where it is undefined (nullopt) is left out.
    const auto table = [&](const char* title, auto ratio) {
        std::printf("## %s: %s\n", workload, title);
        std::printf("| device | raw | ratio (min .. max, median) |\n|---|---|---|\n");
        for (const auto& [dev, raw] : ratios) {
            auto d = s.find(dev), w = s.find(raw);
            if (d == s.end() || w == s.end()) continue;
            std::vector<double> q;
            for (std::size_t i = 0; i < d->second.size() && i < w->second.size(); ++i)
                if (const std::optional<double> r = ratio(d->second[i], w->second[i])) q.push_back(*r);
            if (!q.empty()) std::printf("| %s | %s | %s |\n", dev.c_str(), raw.c_str(), range(q, "%.2f").c_str());
        }
    };
    table("ratios, device / raw within each round", [](const Result& dev, const Result& raw) -> std::optional<double> {
        if (raw.iops() > 0) return dev.iops() / raw.iops();
        return std::nullopt;
    });
    table("the device model alone (time inside serve_queue(), one thread) / raw within each round",
          [](const Result& dev, const Result& raw) -> std::optional<double> {
              if (dev.model_iops() > 0 && raw.iops() > 0) return dev.model_iops() / raw.iops();
              return std::nullopt;
          });
    table("median latency, raw p50 / device p50 within each round (1 = no overhead)",
          [](const Result& dev, const Result& raw) -> std::optional<double> {
              if (dev.p50_us > 0) return raw.p50_us / dev.p50_us;
              return std::nullopt;
          });
}

}  // namespace

int main(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        std::string k = argv[i];
        auto next = [&] {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s needs a value\n", k.c_str());
                std::exit(64);
            }
            return std::string(argv[++i]);
        };
        if (k == "--file") a.file = next();
        else if (k == "--size-mb") a.size_mb = std::stoull(next());
        else if (k == "--seconds") a.seconds = std::stod(next());
        else if (k == "--rounds") a.rounds = std::max(1u, static_cast<unsigned>(std::stoul(next())));
        else if (k == "--engine") {
            a.engine = next();
            if (a.engine != "split" && a.engine != "threads" && a.engine != "io_uring") {
                std::fprintf(stderr, "%s: --engine must be split, threads or io_uring, not \"%s\"\n", argv[0], a.engine.c_str());
                return 64;
            }
        }
        else if (k == "--inline-max") a.inline_max = std::stoull(next());
        else if (k == "--poll-max") a.poll_max = std::chrono::nanoseconds{std::stoll(next())};
        else if (k == "--only") a.only = next();
        else if (k == "--kick") {
            a.kick = next();
            if (a.kick != "call" && a.kick != "eventfd" && a.kick != "relay") throw std::runtime_error("--kick call|eventfd|relay");
        }
        else if (k == "--pin") a.pin = true;
        else if (k == "--small-pages") a.small_pages = true;
        else if (k == "--raw-alone") a.raw_alone = true;
        else if (k == "--workload") {
            a.workload = next();
            if (a.workload != "read" && a.workload != "write" && a.workload != "both") {
                std::fprintf(stderr, "%s: --workload must be read, write or both, not \"%s\"\n", argv[0], a.workload.c_str());
                return 64;
            }
        }
        else {
            std::fprintf(stderr,
                         "usage: %s [--file PATH] [--size-mb N] [--seconds S] [--rounds N] [--engine split|threads|io_uring] "
                         "[--inline-max BYTES] [--poll-max NS] [--only NAME-PART[,...]] [--kick call|eventfd|relay] [--pin] "
                         "[--workload read|write|both] [--small-pages] [--raw-alone]\n",
                         argv[0]);
            return 64;
        }
    }
    bool temp = false;
    if (a.file.empty()) {
        char tmpl[] = "/tmp/vmm-blk-bench-XXXXXX";
        int fd = ::mkstemp(tmpl);
        if (fd < 0) die("mkstemp");
        ::close(fd);
        a.file = tmpl;
        temp = true;
    }
    const std::uint64_t bytes = a.size_mb << 20;
    Fd fd(::open(a.file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd || ::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) die(a.file.c_str());
    {
        std::vector<std::uint8_t> chunk(1 << 20, 0xa5);  // fill it so reads hit real (cached) data
        for (std::uint64_t off = 0; off < bytes; off += chunk.size())
            if (::pwrite(fd.get(), chunk.data(), chunk.size(), static_cast<off_t>(off)) < 0) die("fill");
    }
    vmm::set_log_level("warn");
    std::printf("virtio_blk_bench: %s, %llu MiB, %.2f s per run, %u rounds, device engine %s, inline up to %zu bytes, "
                "poll_max %lld ns, kick by %s, %ld CPUs%s, guest RAM in %s pages, raw loops %s\n",
                a.file.c_str(), static_cast<unsigned long long>(a.size_mb), a.seconds, a.rounds,
                a.engine.c_str(), a.inline_max, static_cast<long long>(a.poll_max.count()), a.kick.c_str(),
                ::sysconf(_SC_NPROCESSORS_ONLN), a.pin ? ", driver on CPU 0, device threads on CPU 1" : "",
                a.small_pages ? "4 KiB" : "transparent huge",
                a.raw_alone ? "in a single-threaded process (--raw-alone)" : "beside an idle thread (as in any VMM process)");
    std::vector<DeviceConfig> configs;
    for (const DeviceConfig& c : std::initializer_list<DeviceConfig>{
             {1, false, false}, {1, false, true}, {1, true, false}, {1, true, true}, {32, false, false}, {32, false, true},
             {32, true, true}, {1, true, false, true}, {32, true, false, true}, {1, true, false, true, true}})
        if (matches_only(name_of(c), a.only)) configs.push_back(c);
    std::vector<std::string> raws{"raw pread/pwrite qd1"};
#ifdef VMM_HAVE_LIBURING
    raws.push_back("raw io_uring qd1");
    raws.push_back("raw io_uring qd32");
#endif
    std::vector<std::pair<std::string, std::string>> ratios;
    for (const auto& c : configs) {
        ratios.emplace_back(name_of(c), raws[0]);
        if (raws.size() > 1) ratios.emplace_back(name_of(c), c.depth == 1 ? raws[1] : raws[2]);
    }
    if (a.pin) pin_to(0);
    std::optional<Bystander> bystander;
    if (!a.raw_alone) bystander.emplace();
    raw_sync(fd.get(), false, bytes, 0.2, a.small_pages);  // warm-up
    Samples samples[2];
    for (unsigned round = 0; round < a.rounds; ++round) {
        double la[1] = {0};
        ::getloadavg(la, 1);
        std::printf("round %u (load average %.2f)\n", round + 1, la[0]);
        for (int w = 0; w < 2; ++w) {
            const bool write = w == 1;
            if (a.workload == (write ? "read" : "write")) continue;
            auto& s = samples[w];
            s[raws[0]].push_back(raw_sync(fd.get(), write, bytes, a.seconds, a.small_pages));
#ifdef VMM_HAVE_LIBURING
            s[raws[1]].push_back(raw_uring(fd.get(), write, bytes, a.seconds, 1, a.small_pages));
            s[raws[2]].push_back(raw_uring(fd.get(), write, bytes, a.seconds, 32, a.small_pages));
#endif
            for (const auto& c : configs)
                if (!(c.floor && write)) s[name_of(c)].push_back(device_run(a, c, write, bytes));
            std::printf("  4 KiB random %-5s", write ? "write" : "read");
            for (const auto& [name, rs] : s) std::printf(" | %s %.0fk", name.c_str(), rs.back().iops() / 1000);
            std::printf("\n");
        }
    }
    if (a.workload != "write") summarise("4 KiB random read", samples[0], raws, ratios);
    if (a.workload != "read") summarise("4 KiB random write", samples[1], raws, ratios);
    std::printf("\n(ratio = device requests/s / raw requests/s in the same round; the raw pread/pwrite loop is one "
                "thread with no hand-off at all)\n");
    if (temp) ::unlink(a.file.c_str());
    return 0;
}
