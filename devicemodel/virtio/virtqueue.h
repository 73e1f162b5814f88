// VirtQueue: the device side of a split virtqueue (virtio 1.2 §2.7) over vmm::GuestMemory, and
// DescriptorChain, one request popped from it as checked guest buffers.
//
// The guest is hostile. Everything read from the rings is validated before use:
//  - the layout at construction (size a power of two <= max, areas aligned and inside RAM);
//    a bad layout leaves the queue broken() and it serves nothing;
//  - the avail index (never more than `size` ahead of us) and each head index (< size); either
//    failing marks the queue broken, because no head can be returned to the driver;
//  - each chain (next < size, at most `size` hops so loops end, indirect tables a non-zero
//    multiple of 16 long and never nested, every buffer inside one RAM region, device-readable
//    buffers before device-writable ones). A bad chain is still popped with error() set, so the
//    device can give the head back with add_used(head, 0) and carry on.
// A device calls VirtioInterrupt::needs_reset() when broken() turns true.
//
// Available-buffer notifications (the driver's kicks) can be suppressed while a device polls the
// ring (§2.7.10): disable_notifications() sets VIRTQ_USED_F_NO_NOTIFY, or with EVENT_IDX moves
// avail_event behind the driver; enable_notifications() undoes it and re-checks the ring, since a
// buffer published while kicks were off comes with no kick.
//
// Threads: a VirtQueue is not thread-safe; the device serialises pop/add_used/needs_notification
// (a device mutex). The guest's concurrent ring updates are ordered with fences as in §2.7.13.
// DescriptorChain is a value: its buffers stay valid as long as the GuestMemory does.
#pragma once

#include "devicemodel/bus/guest_memory.h"
#include "devicemodel/virtio/virtio_device.h"

#include <sys/uio.h>

// GCC 12 misreads boost's copy of a small_vector's inline buffer as an overread
// (-Wstringop-overread, a known false positive once the copy is inlined).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstringop-overread"
#endif
#include <boost/container/small_vector.hpp>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include <atomic>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace vmm::virtio {

// linux/virtio_ring.h holds these but does not compile as C++ (void* conversions in vring_init).
inline constexpr std::uint16_t kDescFNext = 1;      // VRING_DESC_F_NEXT
inline constexpr std::uint16_t kDescFWrite = 2;     // VRING_DESC_F_WRITE
inline constexpr std::uint16_t kDescFIndirect = 4;  // VRING_DESC_F_INDIRECT
inline constexpr std::uint16_t kAvailFNoInterrupt = 1;  // VRING_AVAIL_F_NO_INTERRUPT
inline constexpr std::uint16_t kUsedFNoNotify = 1;      // VRING_USED_F_NO_NOTIFY
inline constexpr std::uint16_t kMaxSplitQueueSize = 32768;  // §2.7: Queue Size max for split rings
// An indirect table may hold at most this many descriptors (Linux never builds bigger ones).
inline constexpr std::uint32_t kMaxIndirectDescriptors = 1024;

// §2.7.5 struct virtq_desc, little-endian (x86 host: no conversion).
struct VirtqDesc {
    std::uint64_t addr;
    std::uint32_t len;
    std::uint16_t flags;
    std::uint16_t next;
};
static_assert(sizeof(VirtqDesc) == 16);

// §2.7.8 struct virtq_used_elem.
struct VirtqUsedElem {
    std::uint32_t id;
    std::uint32_t len;
};
static_assert(sizeof(VirtqUsedElem) == 8);

// Why a popped chain is unusable. The head is valid; the rest of the chain is not.
enum class ChainError {
    None,
    NextOutOfRange,      // next >= queue size (or >= indirect table length)
    TooLong,             // more hops than the queue size: a loop or an over-long chain
    BufferOutsideRam,    // a buffer (or an indirect table) is not inside one RAM region
    IndirectBadLength,   // indirect table length 0, not a multiple of 16, or too big
    IndirectNested,      // an indirect descriptor inside an indirect table
    IndirectWithNext,    // INDIRECT and NEXT both set (§2.7.5.3.1)
    IndirectNotNegotiated,
    ReadableAfterWritable,  // §2.7.4.2: device-writable buffers must come last
};
const char* to_string(ChainError e) noexcept;

// One guest buffer, already checked to lie inside one RAM region.
struct GuestBuffer {
    std::uint64_t gpa;
    std::span<std::uint8_t> host;
};

// A chain's buffers and host iovecs over them. A typical request (a header, a data buffer or
// two, a status byte) fits inline, so popping and parsing one allocates nothing (the data path
// of issue #3); longer chains spill to the heap.
using GuestBuffers = boost::container::small_vector<GuestBuffer, 4>;
using IoVecs = boost::container::small_vector<iovec, 4>;

// Appends {base, len}, its two fields stored in place. An iovec built first as a temporary
// (push_back({base, len}), emplace_back(iovec{base, len})) lives on the stack wherever the
// growing path needs its address: two 8-byte stores, then one 16-byte load to copy it in, which
// cannot be forwarded from them and waits for both to reach the cache (~9 ns of a cached 4 KiB
// read on the 2026-12 host, issue #3; found again inlined into drain_queue, ~12 ns in a sampled
// profile). The element is made first (growing, if it must, with nothing of ours to copy) and
// its fields written after: stores only, each later read forwarded from the store it reads.
template <typename IovecVector>  // IoVecs or std::vector<iovec>
[[gnu::always_inline]] inline void append_iov(IovecVector& iov, void* base, std::size_t len) {
    iovec& v = iov.emplace_back();
    v.iov_base = base;
    v.iov_len = len;
}

class DescriptorChain {
public:
    std::uint16_t head() const noexcept { return head_; }
    ChainError error() const noexcept { return error_; }
    bool ok() const noexcept { return error_ == ChainError::None; }

    // Device-readable (driver → device) and device-writable (device → driver) buffers, in order.
    const GuestBuffers& readable() const noexcept { return readable_; }
    const GuestBuffers& writable() const noexcept { return writable_; }
    std::uint64_t readable_bytes() const noexcept { return readable_bytes_; }
    std::uint64_t writable_bytes() const noexcept { return writable_bytes_; }

    // Copies readable bytes [offset, offset + dst.size()) into dst; returns bytes copied (short
    // when the readable part ends first).
    std::size_t read(std::uint64_t offset, std::span<std::uint8_t> dst) const noexcept;
    // A T from readable bytes [offset, offset + sizeof(T)) into `out`; false (out unspecified)
    // when the readable part ends first. Inline with a fixed-size copy when the first buffer
    // holds it (a request header): read()'s copy of a run-time length is a libc call.
    template <typename T>
    bool read_obj(std::uint64_t offset, T& out) const noexcept {
        static_assert(std::is_trivially_copyable_v<T>);
        if (const std::uint8_t* p = in_first(readable_, offset, sizeof(T))) {
            std::memcpy(&out, p, sizeof(T));
            return true;
        }
        return read(offset, {reinterpret_cast<std::uint8_t*>(&out), sizeof(T)}) == sizeof(T);
    }
    // Copies src into writable bytes [offset, ...); returns bytes written (short at the end).
    std::size_t write(std::uint64_t offset, std::span<const std::uint8_t> src) const noexcept;
    // `value` into writable bytes [offset, offset + sizeof(T)); false (nothing written) when the
    // writable part ends first. Inline with a fixed-size copy when the first buffer holds it (a
    // frame's header), as read_obj.
    template <typename T>
    bool write_obj(std::uint64_t offset, const T& value) const noexcept {
        static_assert(std::is_trivially_copyable_v<T>);
        if (std::uint8_t* p = in_first(writable_, offset, sizeof(T))) {
            std::memcpy(p, &value, sizeof(T));
            return true;
        }
        if (offset > writable_bytes_ || sizeof(T) > writable_bytes_ - offset) return false;
        return write(offset, {reinterpret_cast<const std::uint8_t*>(&value), sizeof(T)}) == sizeof(T);
    }
    // Host iovecs for readable / writable bytes [offset, offset + len); nullopt when the range
    // goes past the end of that part. Empty pieces are skipped.
    std::optional<IoVecs> readable_iov(std::uint64_t offset, std::uint64_t len) const;
    std::optional<IoVecs> writable_iov(std::uint64_t offset, std::uint64_t len) const;
    // The same into `out` (replacing its contents; left empty on false), for a caller that keeps
    // the vector: no optional to move out of on the data path.
    // Inline for a range inside the first buffer (a request's data, a frame); the rest out of line.
    bool readable_iov(std::uint64_t offset, std::uint64_t len, IoVecs& out) const {
        return one_buffer_iov(readable_, offset, len, out) || readable_iov_walk(offset, len, out);
    }
    bool writable_iov(std::uint64_t offset, std::uint64_t len, IoVecs& out) const {
        return one_buffer_iov(writable_, offset, len, out) || writable_iov_walk(offset, len, out);
    }
    // The host address of writable byte `offset`; nullptr past the end of the writable part.
    // Inline for a byte in the last buffer (a block request's status); the rest out of line.
    std::uint8_t* writable_byte(std::uint64_t offset) const noexcept {
        if (offset >= writable_bytes_ || writable_.empty()) return nullptr;
        // The last buffer holds the chain's last host.size() writable bytes.
        const std::span<std::uint8_t> last = writable_.back().host;
        if (const std::uint64_t start = writable_bytes_ - last.size(); offset >= start) return last.data() + (offset - start);
        return writable_byte_walk(offset);
    }

private:
    friend class VirtQueue;
    // The host address of bytes [offset, offset + len) when they lie inside the first of `bufs`
    // (most ranges a device asks for: a request's header or data, a frame), else nullptr.
    static std::uint8_t* in_first(const GuestBuffers& bufs, std::uint64_t offset, std::uint64_t len) noexcept {
        if (bufs.empty()) return nullptr;
        const std::span<std::uint8_t> first = bufs.front().host;
        return offset < first.size() && len <= first.size() - offset ? first.data() + offset : nullptr;
    }
    // out = the one iovec of [offset, offset + len) when it is non-empty and inside bufs' first
    // buffer; false (out untouched) otherwise.
    static bool one_buffer_iov(const GuestBuffers& bufs, std::uint64_t offset, std::uint64_t len, IoVecs& out) {
        std::uint8_t* const p = len == 0 ? nullptr : in_first(bufs, offset, len);
        if (p == nullptr) return false;
        out.clear();
        append_iov(out, p, static_cast<std::size_t>(len));
        return true;
    }
    std::uint8_t* writable_byte_walk(std::uint64_t offset) const noexcept;
    bool readable_iov_walk(std::uint64_t offset, std::uint64_t len, IoVecs& out) const;
    bool writable_iov_walk(std::uint64_t offset, std::uint64_t len, IoVecs& out) const;
    std::uint16_t head_ = 0;
    ChainError error_ = ChainError::None;
    GuestBuffers readable_, writable_;
    std::uint64_t readable_bytes_ = 0, writable_bytes_ = 0;
};

// Reads the driver's avail idx of one queue without the VirtQueue: for a device thread that polls
// the ring without holding the device mutex (VirtioBlk's poll loop). It reads through the host
// view the queue checked at set-up (no region lookup per poll); it is the device's job to stop
// reading before its reset() returns (the guest memory outlives the queue). Empty (reads nullopt) for a
// disabled or broken queue.
class AvailIdxReader {
public:
    std::optional<std::uint16_t> operator()() const noexcept {
        if (!idx_) return std::nullopt;
        return std::atomic_ref<std::uint16_t>(*idx_).load(std::memory_order_relaxed);  // one access
    }

private:
    friend class VirtQueue;
    std::uint16_t* idx_ = nullptr;  // the avail idx through the queue's checked host view
};

// The question whether the driver wants an interrupt for the used entries a device published
// (§2.7.7.2: VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX), put in two steps: the
// VirtQueue prepares it (publishes the used idx, notes what to compare) where the device holds
// its lock, and ask() reads the driver's answer from the ring. Between the two the caller needs
// a full barrier (§2.7.10); VirtQueue::needs_notification() fences, a device whose unlock is
// one (common/full_fence_mutex.h) asks after unlocking. ask() reads guest memory through the
// host view the queue checked at set-up: the device must have asked before its reset() returns
// (the guest memory outlives the queue).
class NotificationQuestion {
public:
    // Entries were published since the last question: there is something to ask.
    bool pending() const noexcept { return added_ != 0; }
    // True when the driver wants an interrupt for them. After the barrier; false when !pending().
    bool ask() const noexcept {
        if (!pending()) return false;
        const std::uint16_t field = std::atomic_ref<std::uint16_t>(*field_).load(std::memory_order_relaxed);
        if (!event_idx_) return !(field & kAvailFNoInterrupt);
        // vring_need_event(): did the used idx step past used_event since the last question?
        const std::uint16_t new_idx = next_used_, old_idx = static_cast<std::uint16_t>(next_used_ - added_);
        return static_cast<std::uint16_t>(new_idx - field - 1) < static_cast<std::uint16_t>(new_idx - old_idx);
    }

private:
    friend class VirtQueue;
    std::uint16_t* field_ = nullptr;  // avail flags, or used_event with EVENT_IDX (the queue's checked view)
    bool event_idx_ = false;
    std::uint16_t next_used_ = 0, added_ = 0;
};

class VirtQueue {
public:
    // An unconfigured queue (disabled: pops nothing, not broken).
    VirtQueue() = default;
    // Validates `config` against `memory`; features are the driver-accepted ones (INDIRECT_DESC,
    // EVENT_IDX are honoured). A disabled config gives a disabled queue.
    VirtQueue(const GuestMemory& memory, const QueueConfig& config, std::uint16_t max_size, std::uint64_t features);

    bool enabled() const noexcept { return enabled_; }
    bool broken() const noexcept { return !broken_reason_.empty(); }
    // Enabled and not broken: the queue serves (one flag for the per-request checks).
    bool serving() const noexcept { return serving_; }
    const std::string& broken_reason() const noexcept { return broken_reason_; }
    std::uint16_t size() const noexcept { return size_; }

    // The next available chain, or nullopt when there is none (or the queue is disabled or
    // broken: check broken()). A chain with error() != None must still be given back with
    // add_used(head, 0). The avail idx is read again only when the entries up to the one last
    // read are consumed. With EVENT_IDX and notifications enabled, a pop that finds the ring
    // empty publishes avail_event = the next index it wants (the driver kicks for the next
    // buffer) and looks once more; a device must therefore pop until it gets nothing before
    // it waits for a kick (a device that stops earlier comes back without one).
    std::optional<DescriptorChain> pop();
    // pop() into a chain the caller keeps (its previous contents replaced): false when there is
    // nothing. For a data path that pops per request: no chain is moved out of an optional.
    bool pop(DescriptorChain& chain);
    // True when pop() would return something right now (without consuming it).
    bool has_available();

    // Returns head to the driver with `len` bytes written into its writable buffers. False (and
    // the queue marked broken) if the queue is broken or head >= size. Inline (below), as
    // publish_used: a few stores per request that a call would double.
    bool add_used(std::uint16_t head, std::uint32_t len);
    // add_used without writing the used idx yet: publish_used() (or needs_notification(), which
    // publishes first) makes a run of entries visible with one store. A driver that polls the
    // index then pulls its cache line over once for the run, not once per entry.
    bool add_used_unpublished(std::uint16_t head, std::uint32_t len);
    void publish_used();

    // Whether the driver wants an interrupt for the buffers added since the last call (§2.7.7.2:
    // VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with EVENT_IDX). Resets that count. The same as
    // prepare_notification(), a full fence, and ask().
    bool needs_notification();
    // Publishes the used idx and resets the count, for a question the caller asks after a full
    // barrier of its own (NotificationQuestion). Nothing pending on a queue that does not serve.
    NotificationQuestion prepare_notification();

    // §2.7.10 available buffer notification suppression, for a device that polls the ring.
    // Without EVENT_IDX: used->flags = VIRTQ_USED_F_NO_NOTIFY. With EVENT_IDX (where the driver
    // ignores that flag): avail_event = next_avail - 1, an index the driver has already passed,
    // and pop() stops moving it; the driver kicks again only after 2^16 more buffers, which is
    // merely a spurious kick. A kick already under way may still arrive.
    void disable_notifications();
    // Asks for kicks again (flags 0, or avail_event = next_avail), then re-reads avail idx after
    // a full fence: true when buffers are available. The caller must serve those before it
    // sleeps: the driver published them while kicks were off, so no kick announces them.
    bool enable_notifications();
    bool notifications_enabled() const noexcept { return notify_enabled_; }
    AvailIdxReader avail_idx_reader() const noexcept;

    std::uint16_t next_avail() const noexcept { return next_avail_; }
    std::uint16_t next_used() const noexcept { return next_used_; }

private:
    void mark_broken(std::string reason);
    std::optional<std::uint16_t> avail_idx();
    // The rare paths, out of line: they mark the queue broken (the first two) or log and empty
    // a chain the walk refused.
    [[gnu::cold]] void avail_idx_too_far(std::uint16_t idx);
    [[gnu::cold]] void head_out_of_range(const char* what, std::uint16_t head);
    [[gnu::cold]] void bad_chain(DescriptorChain& chain);
    [[gnu::cold]] void used_head_out_of_range(std::uint16_t head);
    // Reads avail idx into avail_shadow_ (publishing avail_event first when it shows nothing
    // new, see pop()); true when there are entries past next_avail_.
    bool refresh_avail();
    void walk(DescriptorChain& chain);
    // Appends one buffer; returns false (error set) on a bad buffer or direction order.
    bool add_buffer(DescriptorChain& chain, const VirtqDesc& d);

    // The ring fields, through the host views checked at construction. A 16-bit field the
    // other side may be writing right then: one access (see guest_memory.h).
    std::uint16_t load_avail(std::uint64_t offset) const noexcept {
        return std::atomic_ref<std::uint16_t>(*reinterpret_cast<std::uint16_t*>(avail_host_ + offset)).load(std::memory_order_relaxed);
    }
    void store_used(std::uint64_t offset, std::uint16_t v) const noexcept {
        std::atomic_ref<std::uint16_t>(*reinterpret_cast<std::uint16_t*>(used_host_ + offset)).store(v, std::memory_order_relaxed);
    }

    const GuestMemory* memory_ = nullptr;
    bool enabled_ = false;
    bool serving_ = false;  // enabled_ and not broken()
    std::string broken_reason_;
    std::uint16_t size_ = 0;
    std::uint64_t desc_ = 0, avail_ = 0, used_ = 0;
    // Host views of the three areas, each checked once to lie inside one RAM region (and as
    // aligned as its guest address), so the per-request ring accesses need no region lookup.
    // Valid as long as memory_'s regions are, as every GuestBuffer is.
    const std::uint8_t* desc_host_ = nullptr;
    std::uint8_t* avail_host_ = nullptr;
    std::uint8_t* used_host_ = nullptr;
    bool indirect_ = false, event_idx_ = false;
    bool notify_enabled_ = true;
    std::uint16_t next_avail_ = 0, next_used_ = 0;
    std::uint16_t avail_shadow_ = 0;  // the avail idx last read (entries before it are the driver's to give)
    std::uint16_t published_used_ = 0;  // the used idx the driver can see
    std::uint16_t added_since_notify_ = 0;
    std::uint64_t bad_chains_ = 0;
};

inline bool VirtQueue::add_used_unpublished(std::uint16_t head, std::uint32_t len) {
    if (!serving_) return false;
    if (head >= size_) {
        used_head_out_of_range(head);
        return false;
    }
    const VirtqUsedElem elem{head, len};
    std::memcpy(used_host_ + 4 + 8 * std::uint64_t{static_cast<std::uint16_t>(next_used_ & (size_ - 1))}, &elem, sizeof elem);
    ++next_used_;
    ++added_since_notify_;
    return true;
}

inline void VirtQueue::publish_used() {
    if (!serving_ || published_used_ == next_used_) return;
    // §2.7.8.2: the elements are visible before the index that publishes them.
    std::atomic_thread_fence(std::memory_order_release);
    store_used(2, next_used_);
    published_used_ = next_used_;
}

inline bool VirtQueue::add_used(std::uint16_t head, std::uint32_t len) {
    if (!add_used_unpublished(head, len)) return false;
    publish_used();
    return true;
}

}  // namespace vmm::virtio
