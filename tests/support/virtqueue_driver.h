// VirtqueueDriver: plays the guest driver of one split virtqueue by hand (virtio 1.2 §2.7), the
// way Firecracker's VirtQueue test helper does: it lays out the descriptor table, available and
// used rings in a GuestMemory, adds chains (direct or through an indirect table), publishes them,
// and reads back the used ring. Raw setters let a test build hostile rings.
//
// Also FakeVirtioInterrupt (counts notify_queue / notify_config / needs_reset, can wake a waiter)
// and a bump allocator for data buffers.
//
// Test-only; single-threaded except for FakeVirtioInterrupt, which is thread-safe.
#pragma once

#include "devicemodel/bus/guest_memory.h"
#include "devicemodel/virtio/virtio_device.h"
#include "devicemodel/virtio/virtqueue.h"

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <utility>
#include <vector>

namespace vmm::test {

class FakeVirtioInterrupt : public virtio::VirtioInterrupt {
public:
    void notify_queue(std::uint16_t queue) override {
        {
            std::lock_guard lock(mu_);
            ++queue_notifies;
            ++per_queue[queue];
        }
        cv_.notify_all();
    }
    void notify_config() override { ++config_notifies; }
    void needs_reset() override {
        {
            std::lock_guard lock(mu_);
            ++resets_needed;
        }
        cv_.notify_all();
    }
    // Waits until `pred()` holds, re-checked after each notification or every 10 ms; false on timeout.
    template <typename Pred>
    bool wait_for(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        std::unique_lock lock(mu_);
        while (!pred()) {
            if (std::chrono::steady_clock::now() >= deadline) return false;
            cv_.wait_for(lock, std::chrono::milliseconds(10));
        }
        return true;
    }

    std::atomic<int> queue_notifies{0};
    std::atomic<int> config_notifies{0};
    std::atomic<int> resets_needed{0};
    std::map<std::uint16_t, int> per_queue;  // guarded by mu_

private:
    std::mutex mu_;
    std::condition_variable cv_;
};

class VirtqueueDriver {
public:
    struct Buf {
        std::uint64_t gpa;
        std::uint32_t len;
        bool device_writable;
    };
    static Buf rd(std::uint64_t gpa, std::uint32_t len) { return {gpa, len, false}; }
    static Buf wr(std::uint64_t gpa, std::uint32_t len) { return {gpa, len, true}; }

    // Lays out a queue of `size` entries at `base`: desc (16-aligned), avail, used (4-aligned).
    VirtqueueDriver(const GuestMemory& memory, std::uint64_t base, std::uint16_t size)
        : mem_(memory), size_(size) {
        desc_ = align(base, 16);
        avail_ = desc_ + 16ull * size;
        used_ = align(avail_ + 6 + 2ull * size, 4);
        end_ = used_ + 6 + 8ull * size;
        for (std::uint16_t i = 0; i < size; ++i) free_.push_back(static_cast<std::uint16_t>(size - 1 - i));
        std::vector<std::uint8_t> zero(end_ - desc_, 0);
        if (!mem_.write(desc_, zero.data(), zero.size())) throw std::runtime_error("queue outside memory");
    }

    virtio::QueueConfig config() const { return {size_, desc_, avail_, used_, true}; }
    std::uint64_t end() const { return end_; }
    std::uint16_t size() const { return size_; }
    std::uint64_t desc_addr() const { return desc_; }
    std::uint64_t avail_addr() const { return avail_; }
    std::uint64_t used_addr() const { return used_; }
    std::size_t free_descriptors() const { return free_.size(); }

    // Writes one descriptor in the table (or any table at `table`).
    void set_desc(std::uint16_t index, std::uint64_t addr, std::uint32_t len, std::uint16_t flags, std::uint16_t next,
                  std::uint64_t table = 0) const {
        const virtio::VirtqDesc d{addr, len, flags, next};
        put(table ? table : desc_ + 16ull * index, d, table ? 16ull * index : 0);
    }

    // Adds a chain of descriptors from the free list and makes it available; returns the head.
    std::uint16_t add_chain(const std::vector<Buf>& bufs) {
        const std::uint16_t head = write_chain(bufs);
        publish(head);
        return head;
    }
    // Adds one descriptor pointing at an indirect table (at `table_gpa`) holding `bufs`.
    std::uint16_t add_indirect_chain(const std::vector<Buf>& bufs, std::uint64_t table_gpa) {
        for (std::size_t i = 0; i < bufs.size(); ++i) {
            std::uint16_t flags = bufs[i].device_writable ? virtio::kDescFWrite : 0;
            if (i + 1 < bufs.size()) flags |= virtio::kDescFNext;
            set_desc(static_cast<std::uint16_t>(i), bufs[i].gpa, bufs[i].len, flags, static_cast<std::uint16_t>(i + 1),
                     table_gpa);
        }
        const std::uint16_t head = take();
        chains_[head] = {head};
        set_desc(head, table_gpa, static_cast<std::uint32_t>(16 * bufs.size()), virtio::kDescFIndirect, 0);
        publish(head);
        return head;
    }
    // Writes the chain's descriptors without publishing it.
    std::uint16_t write_chain(const std::vector<Buf>& bufs) {
        if (bufs.empty() || bufs.size() > free_.size()) throw std::runtime_error("no free descriptors");
        std::vector<std::uint16_t> ids;
        for (std::size_t i = 0; i < bufs.size(); ++i) ids.push_back(take());
        for (std::size_t i = 0; i < bufs.size(); ++i) {
            std::uint16_t flags = bufs[i].device_writable ? virtio::kDescFWrite : 0;
            std::uint16_t next = 0;
            if (i + 1 < bufs.size()) {
                flags |= virtio::kDescFNext;
                next = ids[i + 1];
            }
            set_desc(ids[i], bufs[i].gpa, bufs[i].len, flags, next);
        }
        chains_[ids[0]] = ids;
        return ids[0];
    }
    // Puts `head` in the next avail slot and bumps avail idx.
    void publish(std::uint16_t head) {
        put(avail_ + 4 + 2ull * (avail_idx_ % size_), head);
        ++avail_idx_;
        // §2.7.13: descriptors and the ring entry are visible before the idx that publishes them
        // (the benchmark's device runs on another thread).
        std::atomic_thread_fence(std::memory_order_release);
        put(avail_ + 2, avail_idx_);
    }

    // Puts all of `heads` in the avail ring and then bumps avail idx once: a device reading the
    // idx at any moment sees none of them or all of them (a burst the device cannot split).
    void publish_all(const std::vector<std::uint16_t>& heads) {
        for (const std::uint16_t head : heads) put(avail_ + 4 + 2ull * (avail_idx_++ % size_), head);
        std::atomic_thread_fence(std::memory_order_release);
        put(avail_ + 2, avail_idx_);
    }

    // Raw ring fields for hostile tests.
    void set_avail_idx(std::uint16_t v) {
        avail_idx_ = v;
        put(avail_ + 2, v);
    }
    void set_avail_flags(std::uint16_t v) const { put(avail_, v); }
    void set_used_event(std::uint16_t v) const { put(avail_ + 4 + 2ull * size_, v); }
    std::uint16_t avail_event() const { return get<std::uint16_t>(used_ + 4 + 8ull * size_); }
    std::uint16_t used_flags() const { return get<std::uint16_t>(used_); }

    // Whether the buffers published since the last call need a kick, as Linux's
    // virtqueue_kick_prepare decides (§2.7.10): a full fence after the avail idx store, then
    // avail_event with EVENT_IDX (vring_need_event), else VIRTQ_USED_F_NO_NOTIFY.
    bool needs_kick(bool event_idx) {
        std::atomic_thread_fence(std::memory_order_seq_cst);
        const std::uint16_t old_idx = std::exchange(kick_checked_idx_, avail_idx_);
        if (event_idx)
            return static_cast<std::uint16_t>(avail_idx_ - avail_event() - 1) < static_cast<std::uint16_t>(avail_idx_ - old_idx);
        return !(used_flags() & virtio::kUsedFNoNotify);
    }
    std::uint16_t used_idx() const { return get<std::uint16_t>(used_ + 2); }
    virtio::VirtqUsedElem used(std::uint16_t i) const {
        return get<virtio::VirtqUsedElem>(used_ + 4 + 8ull * (i % size_));
    }

    // Used elements not seen yet; their descriptors go back to the free list.
    std::vector<virtio::VirtqUsedElem> reclaim() {
        std::vector<virtio::VirtqUsedElem> out;
        const std::uint16_t idx = used_idx();
        std::atomic_thread_fence(std::memory_order_acquire);
        while (last_used_ != idx) {
            auto e = used(last_used_++);
            out.push_back(e);
            auto it = chains_.find(static_cast<std::uint16_t>(e.id));
            if (it != chains_.end()) {
                for (auto d : it->second) free_.push_back(d);
                chains_.erase(it);
            }
        }
        return out;
    }

    // Bump allocator for data buffers in [from, to).
    class Arena {
    public:
        Arena(std::uint64_t from, std::uint64_t to) : next_(from), end_(to) {}
        std::uint64_t alloc(std::uint64_t len, std::uint64_t alignment = 16) {
            const std::uint64_t a = align(next_, alignment);
            if (a + len > end_) throw std::runtime_error("arena exhausted");
            next_ = a + len;
            return a;
        }

    private:
        std::uint64_t next_, end_;
    };

    template <typename T>
    void put(std::uint64_t gpa, const T& v, std::uint64_t extra = 0) const {
        if (!mem_.write(gpa + extra, &v, sizeof v)) throw std::runtime_error("write outside memory");
    }
    template <typename T>
    T get(std::uint64_t gpa) const {
        T v{};
        if (!mem_.read(gpa, &v, sizeof v)) throw std::runtime_error("read outside memory");
        return v;
    }

    static std::uint64_t align(std::uint64_t v, std::uint64_t a) { return (v + a - 1) & ~(a - 1); }

private:
    std::uint16_t take() {
        const std::uint16_t d = free_.back();
        free_.pop_back();
        return d;
    }

    const GuestMemory& mem_;
    std::uint16_t size_;
    std::uint64_t desc_, avail_, used_, end_;
    std::uint16_t avail_idx_ = 0, last_used_ = 0, kick_checked_idx_ = 0;
    std::vector<std::uint16_t> free_;
    std::map<std::uint16_t, std::vector<std::uint16_t>> chains_;
};

}  // namespace vmm::test
