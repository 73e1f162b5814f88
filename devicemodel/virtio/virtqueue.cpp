// VirtQueue / DescriptorChain: see virtqueue.h. Layout per virtio 1.2 §2.7:
//   desc  = virtq_desc[size]                              (16-byte aligned)
//   avail = flags, idx, ring[size], used_event            (2-byte aligned, 6 + 2*size bytes)
//   used  = flags, idx, virtq_used_elem[size], avail_event (4-byte aligned, 6 + 8*size bytes)
#include "devicemodel/virtio/virtqueue.h"

#include "common/log.h"

#include <algorithm>
#include <atomic>
#include <cstring>

namespace vmm::virtio {

const char* to_string(ChainError e) noexcept {
    switch (e) {
        case ChainError::None: return "ok";
        case ChainError::NextOutOfRange: return "next index out of range";
        case ChainError::TooLong: return "chain longer than the queue (loop?)";
        case ChainError::BufferOutsideRam: return "buffer outside guest RAM";
        case ChainError::IndirectBadLength: return "indirect table with a bad length";
        case ChainError::IndirectNested: return "nested indirect descriptor";
        case ChainError::IndirectWithNext: return "indirect descriptor with NEXT set";
        case ChainError::IndirectNotNegotiated: return "indirect descriptor without VIRTIO_F_INDIRECT_DESC";
        case ChainError::ReadableAfterWritable: return "device-readable buffer after a device-writable one";
    }
    return "?";
}

namespace {

// Walks `bufs` from byte `offset` for `len` bytes, calling fn(host_ptr, n) per piece. Returns
// the number of bytes visited (short when the buffers end first).
template <typename Fn>
std::uint64_t for_range(const GuestBuffers& bufs, std::uint64_t offset, std::uint64_t len, Fn&& fn) {
    std::uint64_t done = 0;
    for (const auto& b : bufs) {
        if (done == len) break;
        const std::uint64_t size = b.host.size();
        if (offset >= size) {
            offset -= size;
            continue;
        }
        const std::uint64_t n = std::min(size - offset, len - done);
        fn(b.host.data() + offset, n);
        done += n;
        offset = 0;
    }
    return done;
}

// The general case, across buffers (the one-buffer case is DescriptorChain::one_buffer_iov).
bool make_iov(const GuestBuffers& bufs, std::uint64_t total, std::uint64_t offset, std::uint64_t len, IoVecs& iov) {
    iov.clear();
    if (offset > total || len > total - offset) return false;
    for_range(bufs, offset, len, [&](std::uint8_t* p, std::uint64_t n) {
        if (n) append_iov(iov, p, static_cast<std::size_t>(n));
    });
    return true;
}

}  // namespace

std::size_t DescriptorChain::read(std::uint64_t offset, std::span<std::uint8_t> dst) const noexcept {
    if (const std::uint8_t* p = in_first(readable_, offset, dst.size())) {
        std::memcpy(dst.data(), p, dst.size());
        return dst.size();
    }
    std::uint8_t* out = dst.data();
    return for_range(readable_, offset, dst.size(), [&](std::uint8_t* p, std::uint64_t n) {
        std::memcpy(out, p, n);
        out += n;
    });
}

std::size_t DescriptorChain::write(std::uint64_t offset, std::span<const std::uint8_t> src) const noexcept {
    const std::uint8_t* in = src.data();
    return for_range(writable_, offset, src.size(), [&](std::uint8_t* p, std::uint64_t n) {
        std::memcpy(p, in, n);
        in += n;
    });
}

std::optional<IoVecs> DescriptorChain::readable_iov(std::uint64_t offset, std::uint64_t len) const {
    IoVecs iov;
    if (!readable_iov(offset, len, iov)) return std::nullopt;
    return iov;
}

std::optional<IoVecs> DescriptorChain::writable_iov(std::uint64_t offset, std::uint64_t len) const {
    IoVecs iov;
    if (!writable_iov(offset, len, iov)) return std::nullopt;
    return iov;
}

bool DescriptorChain::readable_iov_walk(std::uint64_t offset, std::uint64_t len, IoVecs& out) const {
    return make_iov(readable_, readable_bytes_, offset, len, out);
}

bool DescriptorChain::writable_iov_walk(std::uint64_t offset, std::uint64_t len, IoVecs& out) const {
    return make_iov(writable_, writable_bytes_, offset, len, out);
}

std::uint8_t* DescriptorChain::writable_byte_walk(std::uint64_t offset) const noexcept {
    std::uint8_t* at = nullptr;
    for_range(writable_, offset, 1, [&](std::uint8_t* p, std::uint64_t) { at = p; });
    return at;
}

VirtQueue::VirtQueue(const GuestMemory& memory, const QueueConfig& config, std::uint16_t max_size,
                     std::uint64_t features)
    : memory_(&memory),
      enabled_(config.enabled),
      size_(config.size),
      desc_(config.desc),
      avail_(config.avail),
      used_(config.used),
      indirect_(features & feature_bit(kFeatureIndirectDesc)),
      event_idx_(features & feature_bit(kFeatureEventIdx)) {
    if (!enabled_) return;
    const std::uint64_t n = size_;
    if (n == 0 || (n & (n - 1)) != 0 || n > max_size || n > kMaxSplitQueueSize)
        mark_broken("queue size " + std::to_string(n) + " is not a power of two <= " + std::to_string(max_size));
    else if (desc_ % 16 || avail_ % 2 || used_ % 4)
        mark_broken("misaligned ring area");
    else if (auto d = memory.span(desc_, 16 * n); !d)
        mark_broken("descriptor table outside guest RAM");
    else if (auto a = memory.span(avail_, 6 + 2 * n); !a)
        mark_broken("available ring outside guest RAM");
    else if (auto u = memory.span(used_, 6 + 8 * n); !u)
        mark_broken("used ring outside guest RAM");
    else if (reinterpret_cast<std::uintptr_t>(a->data()) % 2 || reinterpret_cast<std::uintptr_t>(u->data()) % 4)
        mark_broken("ring area misaligned in host memory");  // a region's host base is a page
    else {
        desc_host_ = d->data();
        avail_host_ = a->data();
        used_host_ = u->data();
        serving_ = true;
    }
}

void VirtQueue::mark_broken(std::string reason) {
    if (broken()) return;
    serving_ = false;
    broken_reason_ = std::move(reason);
    logger("virtqueue")->warn("queue broken: {}", broken_reason_);
}

void VirtQueue::avail_idx_too_far(std::uint16_t idx) {
    mark_broken("avail idx " + std::to_string(idx) + " is more than the queue size ahead of " + std::to_string(next_avail_));
}

std::optional<std::uint16_t> VirtQueue::avail_idx() {
    const std::uint16_t idx = load_avail(2);
    // The driver may have at most `size` entries outstanding (§2.7.6); more is a broken ring.
    if (static_cast<std::uint16_t>(idx - next_avail_) > size_) {
        avail_idx_too_far(idx);
        return std::nullopt;
    }
    return idx;
}

bool VirtQueue::has_available() {
    if (!serving_) return false;
    auto idx = avail_idx();
    return idx && *idx != next_avail_;
}

std::optional<DescriptorChain> VirtQueue::pop() {
    DescriptorChain chain;
    if (!pop(chain)) return std::nullopt;
    return chain;
}

bool VirtQueue::refresh_avail() {
    auto idx = avail_idx();
    if (idx && *idx == next_avail_ && event_idx_ && notify_enabled_) {
        // §2.7.10: ask for a kick when the driver makes entry next_avail_ available, then look
        // once more (full fence between): a buffer added before the store is seen here, one
        // added after it brings a kick. Only a ring found empty needs it: while entries are
        // left the device comes back for them without a kick.
        store_used(4 + 8 * std::uint64_t{size_}, next_avail_);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        idx = avail_idx();
    }
    if (!idx) return false;  // more than the queue size ahead: broken
    avail_shadow_ = *idx;
    if (*idx == next_avail_) return false;
    // Ring entries and descriptors are read after idx (§2.7.13.3: the driver wrote them first).
    std::atomic_thread_fence(std::memory_order_acquire);
    return true;
}

bool VirtQueue::pop(DescriptorChain& chain) {
    if (!serving_) return false;
    // The entries up to the idx last read need no new look at it (as vhost's avail_idx).
    if (next_avail_ == avail_shadow_ && !refresh_avail()) return false;
    // size_ is a power of two (checked at construction): a mask, not a division.
    const std::uint16_t head = load_avail(4 + 2 * std::uint64_t{static_cast<std::uint16_t>(next_avail_ & (size_ - 1))});
    if (head >= size_) {
        head_out_of_range("avail ring head index", head);
        return false;
    }
    ++next_avail_;
    chain.head_ = head;
    chain.error_ = ChainError::None;
    chain.readable_.clear();
    chain.writable_.clear();
    chain.readable_bytes_ = chain.writable_bytes_ = 0;
    walk(chain);
    if (!chain.ok()) bad_chain(chain);
    return true;
}

void VirtQueue::head_out_of_range(const char* what, std::uint16_t head) {
    mark_broken(std::string(what) + " " + std::to_string(head) + " >= queue size");
}

void VirtQueue::bad_chain(DescriptorChain& chain) {
    // A hostile driver can send these forever: log the first few, then every 1000th.
    if (++bad_chains_ <= 10 || bad_chains_ % 1000 == 0)
        logger("virtqueue")->warn("bad descriptor chain at head {}: {} ({} so far)", chain.head_, to_string(chain.error_),
                                  bad_chains_);
    chain.readable_.clear();
    chain.writable_.clear();
    chain.readable_bytes_ = chain.writable_bytes_ = 0;
}

// Inlined into walk(), its only caller (per descriptor of every request).
[[gnu::always_inline]] inline bool VirtQueue::add_buffer(DescriptorChain& chain, const VirtqDesc& d) {
    if (d.len == 0) return true;  // nothing to read or write; its address is never used
    std::uint8_t* host = memory_->host_address(d.addr, d.len);
    if (host == nullptr) {
        chain.error_ = ChainError::BufferOutsideRam;
        return false;
    }
    // The record is filled field by field in place: a GuestBuffer built on the stack and copied
    // in was loaded as one 16-byte piece right after two 8-byte stores, a store-forwarding stall.
    GuestBuffer* b;
    if (d.flags & kDescFWrite) {
        b = &chain.writable_.emplace_back();
        chain.writable_bytes_ += d.len;
    } else {
        if (!chain.writable_.empty()) {
            chain.error_ = ChainError::ReadableAfterWritable;
            return false;
        }
        b = &chain.readable_.emplace_back();
        chain.readable_bytes_ += d.len;
    }
    b->gpa = d.addr;
    b->host = std::span<std::uint8_t>(host, d.len);
    return true;
}

// Inlined into pop(), its only caller (a call per request).
[[gnu::always_inline]] inline void VirtQueue::walk(DescriptorChain& chain) {
    const std::uint8_t* table = desc_host_;  // checked at construction
    std::uint32_t table_len = size_;
    std::uint32_t budget = size_;  // hop limit: ends loops
    bool in_indirect = false;
    std::uint32_t hops = 0;
    std::uint32_t idx = chain.head_;
    for (;;) {
        if (++hops > budget) {
            chain.error_ = ChainError::TooLong;
            return;
        }
        // Direct table: checked at construction. Indirect table: checked below before use.
        // idx < table_len. Copied once: the driver may rewrite it meanwhile.
        VirtqDesc d;
        std::memcpy(&d, table + 16 * std::uint64_t{idx}, sizeof d);
        if (d.flags & kDescFIndirect) {
            if (in_indirect) return void(chain.error_ = ChainError::IndirectNested);
            if (!indirect_) return void(chain.error_ = ChainError::IndirectNotNegotiated);
            if (d.flags & kDescFNext) return void(chain.error_ = ChainError::IndirectWithNext);
            if (d.len == 0 || d.len % 16 || d.len / 16 > kMaxIndirectDescriptors)
                return void(chain.error_ = ChainError::IndirectBadLength);
            auto indirect = memory_->span(d.addr, d.len);
            if (!indirect) return void(chain.error_ = ChainError::BufferOutsideRam);
            // §2.7.5.3: the indirect table replaces the rest of the chain; its `next` fields
            // index the table itself.
            table = indirect->data();
            table_len = budget = d.len / 16;
            hops = 0;
            idx = 0;
            in_indirect = true;
            continue;
        }
        if (!add_buffer(chain, d)) return;
        if (!(d.flags & kDescFNext)) return;
        if (d.next >= table_len) return void(chain.error_ = ChainError::NextOutOfRange);
        idx = d.next;
    }
}

void VirtQueue::used_head_out_of_range(std::uint16_t head) { head_out_of_range("add_used of head", head); }

void VirtQueue::disable_notifications() {
    if (!serving_ || !notify_enabled_) return;
    notify_enabled_ = false;
    // Layout checked at construction: both fields are inside the used ring.
    if (event_idx_)
        store_used(4 + 8 * std::uint64_t{size_}, static_cast<std::uint16_t>(next_avail_ - 1));
    else
        store_used(0, kUsedFNoNotify);
}

bool VirtQueue::enable_notifications() {
    if (!serving_) return false;
    if (!notify_enabled_) {
        notify_enabled_ = true;
        if (event_idx_)
            store_used(4 + 8 * std::uint64_t{size_}, next_avail_);
        else
            store_used(0, 0);
    }
    // The store above must be visible before avail idx is read again; the driver orders its idx
    // store before reading our flags / avail_event the same way (§2.7.13.4, virtio_mb in Linux's
    // virtqueue_kick_prepare). Either it sees kicks enabled and kicks, or we see its buffer here.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return has_available();
}

AvailIdxReader VirtQueue::avail_idx_reader() const noexcept {
    AvailIdxReader r;
    if (serving_) r.idx_ = reinterpret_cast<std::uint16_t*>(avail_host_ + 2);
    return r;
}

NotificationQuestion VirtQueue::prepare_notification() {
    NotificationQuestion q;
    if (!serving_) return q;
    publish_used();  // the driver is only ever told about entries it can see
    q.added_ = std::exchange(added_since_notify_, 0);
    q.event_idx_ = event_idx_;
    q.next_used_ = next_used_;
    // Layout checked at construction: both fields are inside the avail ring.
    q.field_ = reinterpret_cast<std::uint16_t*>(avail_host_ + (event_idx_ ? 4 + 2 * std::uint64_t{size_} : 0));
    return q;
}

bool VirtQueue::needs_notification() {
    const NotificationQuestion q = prepare_notification();
    if (!q.pending()) return false;
    // The used idx must be visible before we read the driver's suppression state (§2.7.10).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return q.ask();
}

}  // namespace vmm::virtio
