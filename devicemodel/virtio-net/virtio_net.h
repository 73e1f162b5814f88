// VirtioNet: the virtio network device (virtio 1.2 §5.1), one queue pair (0 = receiveq1,
// 1 = transmitq1), no control queue, over a NetBackend (a Tap in the anchor, a SocketBackend in
// tests).
//
// Features: VERSION_1, MAC, STATUS (link up), MRG_RXBUF (optional), INDIRECT_DESC, EVENT_IDX,
// and, only when the backend supports them (a tap whose kernel accepts TUNSETOFFLOAD): CSUM +
// GUEST_CSUM, HOST/GUEST_TSO4, HOST/GUEST_TSO6, HOST/GUEST_ECN. The guest's GUEST_* choice is
// applied to the backend at activation (TUNSETOFFLOAD), so the tap never hands the guest a
// partial checksum or a GSO frame it did not ask for. Config space: mac, status,
// max_virtqueue_pairs = 1.
//
// TX: each chain's readable part (virtio_net_hdr_v1 + frame) is written with one writev; every
// chain is completed (used length 0), also a bad or refused one. When the backend is full the
// chain is kept and retried on writability.
// RX: frames are read (readv) straight into the guest's posted buffers: one chain, or with
// MRG_RXBUF as many as the frame needs (num_buffers set in the header); with MRG_RXBUF a run of
// small frames is read into the bounce area alone and copied (cheaper than a readv of two
// iovecs; finish_frame_locked's read window). Popped chains that the
// next frame does not fill are kept for the one after; a host-side bounce area behind them in
// the iovec catches what does not fit, so a frame is never half-delivered: with MRG_RXBUF it
// waits there until the driver posts more buffers, without it the frame is dropped and counted
// and the chain stays with the device for the next frame (as QEMU does). With no RX buffers the
// device stops polling the backend (EPOLLIN off) and resumes on the next rx notify, so frames
// wait in the tap's queue instead of being read and lost.
// A broken ring (VirtQueue::broken()) sets NEEDS_RESET once; the other queue keeps working.
// A backend that goes away (a socket peer closes; a tap whose interface is deleted, `ip link
// del`, which the kernel reports as EBADFD and a permanent EPOLLERR) stops being polled: the
// link goes down (config interrupt), transmit chains are still completed and counted as
// tx_dropped, receive buffers stay with the device. Nothing spins on the dead fd.
//
// Threads:
//  - read_config / write_config / activate / reset: vCPU threads (the transport).
//  - queue_notify: a vCPU or the anchor's I/O thread; it only writes an eventfd. Each queue
//    also has a kick eventfd of its own in the loop's epoll set (queue_kick_fd), which the
//    anchor points KVM's ioeventfd at: a guest's kick wakes the loop with no relay thread.
//  - all queue and backend work: the event loop, an epoll loop on the thread "<name>-io"
//    (options.own_thread; it first calls options.on_thread_start), or whoever calls poll()
//    (tests, benchmarks).
//  One mutex guards the queues; guest memory and the backend are touched only under it, so
//  once reset() returns the device no longer touches guest memory. VirtioInterrupt is called
//  without it.
#pragma once

#include "common/fd.h"
#include "devicemodel/virtio-net/mac_address.h"
#include "devicemodel/virtio-net/net_backend.h"
#include "devicemodel/virtio-net/virtio_net_abi.h"
#include "devicemodel/virtio/chain_ring.h"
#include "devicemodel/virtio/virtio_device.h"
#include "devicemodel/virtio/virtqueue.h"


#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace spdlog {
class logger;
}

namespace vmm::virtio_net {

struct VirtioNetOptions {
    std::string name = "net0";                             // logger and thread names
    MacAddress mac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};    // see mac_address.h: mac_for_nic()
    std::uint16_t queue_size = 256;
    bool mergeable_rx_buffers = true;  // offer VIRTIO_NET_F_MRG_RXBUF
    bool offloads = true;              // offer checksum/TSO where the backend supports them
    bool own_thread = true;            // run the event loop on "<name>-io"; false: call poll()
    // Called first thing on "<name>-io" (own_thread), before the loop touches the backend or
    // guest memory. It may block (the destructor joins the thread, so whoever blocks it must
    // let it go first) and must not throw. The anchor holds the thread there until the process
    // is jailed and lets it narrow what it may do (anchor/pci_devices.h).
    std::function<void()> on_thread_start;
};

struct VirtioNetStats {
    std::uint64_t tx_frames = 0, tx_bytes = 0;  // written to the backend (frame bytes, no header)
    std::uint64_t tx_errors = 0;                // chains completed without sending (bad chain, refused)
    std::uint64_t tx_dropped = 0;               // chains completed unsent because the backend is gone
    std::uint64_t rx_frames = 0, rx_bytes = 0;  // delivered to the guest
    std::uint64_t rx_dropped = 0;               // read from the backend but not delivered
    std::uint64_t rx_bad_chains = 0;            // RX chains given back empty (bad or too small)
};

class VirtioNet final : public virtio::VirtioDevice {
public:
    static constexpr std::uint16_t kRxQueue = 0;
    static constexpr std::uint16_t kTxQueue = 1;
    // The largest frame a backend delivers: header + 64 KiB GSO frame + Ethernet/VLAN headers.
    static constexpr std::size_t kMaxFrame = kVnetHeaderSize + 65536 + 14 + 4;

    // Throws std::system_error if the epoll/eventfd setup fails.
    VirtioNet(std::unique_ptr<NetBackend> backend, VirtioNetOptions options = {});
    ~VirtioNet() override;
    VirtioNet(const VirtioNet&) = delete;
    VirtioNet& operator=(const VirtioNet&) = delete;

    virtio::DeviceType device_type() const override { return virtio::DeviceType::Net; }
    std::uint64_t device_features() const override { return features_; }
    std::uint16_t num_queues() const override { return 2; }
    std::uint16_t max_queue_size() const override { return options_.queue_size; }
    void read_config(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write_config(std::uint64_t offset, std::span<const std::uint8_t> data) override;
    void activate(const GuestMemory& memory, std::uint64_t features, std::vector<virtio::QueueConfig> queues,
                  std::shared_ptr<virtio::VirtioInterrupt> interrupt) override;
    void queue_notify(std::uint16_t queue) override;
    int queue_kick_fd(std::uint16_t queue) const override {
        return queue < std::size(queue_kick_fds_) ? queue_kick_fds_[queue].get() : -1;
    }
    void reset() override;

    // Link state in the config space (VIRTIO_NET_S_LINK_UP); a change sends a config interrupt.
    void set_link_up(bool up);
    // One pass of the event loop when options.own_thread is false: waits up to timeout_ms (-1:
    // forever) for an event, serves the queues and returns whether work is left over (a budget
    // ran out). Calling it with own_thread set is a logic error (throws vmm::Error).
    bool poll(int timeout_ms = 0);

    VirtioNetStats stats() const;
    NetBackend& backend() noexcept { return *backend_; }

private:
    struct Signal {
        bool rx = false, tx = false, broken = false, config = false;
        std::shared_ptr<virtio::VirtioInterrupt> irq;
    };
    bool run_pass(int timeout_ms);
    void loop();
    void kick(std::uint32_t bits);
    // Queue work, mu_ held. Each returns whether its budget ran out.
    bool process_tx_locked(bool& used);
    bool process_rx_locked(bool& used);
    // Pops RX chains into held_ (completing useless ones) until the next frame has room.
    void top_up_rx_locked(bool& used);
    // Pops the next RX chain into held_ (its writable bytes added to `have`); one that is broken
    // or has fewer than min_bytes writable bytes is handed back empty instead. False when the
    // ring has none.
    bool pop_rx_chain_locked(std::size_t min_bytes, std::size_t& have, bool& used);
    std::size_t held_bytes_locked() const;  // writable bytes of the chains in held_ (held_bytes_)
    // Completes the frame of `len` bytes spread over held_ (the first `direct_chains_` chains
    // hold what the read put there, the rest comes from bounce_). mu_ held.
    void finish_frame_locked(std::size_t len);
    // With a frame waiting in bounce_ (MRG_RXBUF): pops more chains and delivers it if they
    // suffice. Returns whether it was delivered.
    bool deliver_pending_locked(bool& used);
    void drop_rx_state_locked();
    void drop_tx_state_locked();
    // The backend has gone away for good (`why` for the log): stop polling it, link down.
    void backend_lost_locked(const char* why);
    void update_interest_locked();
    void check_broken_locked(Signal& s);
    static void send(const Signal& s);

    std::unique_ptr<NetBackend> backend_;
    VirtioNetOptions options_;
    std::shared_ptr<spdlog::logger> log_;
    std::uint64_t features_ = 0;
    VirtioNetConfig config_{};  // guarded by mu_ (status changes with set_link_up)

    Fd epoll_, kick_fd_;
    Fd queue_kick_fds_[2];  // RX, TX: what KVM's ioeventfds signal (queue_kick_fd)
    std::atomic<std::uint32_t> kicks_{0};
    std::atomic<bool> stop_{false};
    static constexpr std::uint32_t kKickRx = 1, kKickTx = 2;

    mutable std::mutex mu_;
    bool active_ = false, broken_reported_ = false;
    bool mrg_ = false;
    std::size_t rx_target_ = 0;  // bytes of held RX buffers wanted before a read
    // With MRG_RXBUF: bytes of held buffers a read writes straight into (0: none, the frame is
    // read into bounce_ alone; else whole chains until at least that many); the rest of a frame
    // lands in bounce_ and is copied. Follows the frames (finish_frame_locked): the run of
    // frames that wanted a narrower window, and the widest of them.
    std::size_t rx_direct_ = 0;
    unsigned rx_small_run_ = 0;
    std::size_t rx_run_wanted_ = 0;
    virtio::VirtQueue rx_, tx_;
    std::shared_ptr<virtio::VirtioInterrupt> interrupt_;
    // Popped RX chains not used yet, in order. A ring whose slots are popped into in place and
    // reused (a std::deque of chains frees and allocates a node as each chain comes and goes, a
    // vector would move every chain still held each time a frame completes: with MRG_RXBUF and
    // guest GSO some 40 chains of ~260 bytes). It grows only when full.
    virtio::ChainRing held_{64};
    // Their writable bytes, kept as chains come and go: summed per frame it was a walk over
    // every held chain (~40 with MRG_RXBUF), a fifth of the device's own receive time (issue #3).
    std::size_t held_bytes_ = 0;
    std::size_t direct_chains_ = 0;             // held_ chains the last read wrote into
    std::optional<std::size_t> pending_len_;    // a frame waiting for more RX buffers
    std::vector<std::uint8_t> bounce_;
    // Per-frame scratch kept between frames (no allocation per frame): the read's iovecs, the
    // (head, length) pairs a frame completes.
    std::vector<iovec> rx_iov_;
    std::vector<std::pair<std::uint16_t, std::uint32_t>> rx_done_;
    // TX: the first tx_count_ of tx_chains_ are chains popped and not yet given back, in order;
    // while the backend is full (tx_blocked_) the first of them waits for EPOLLOUT. The chains
    // after them are kept for the next pops (popped into in place: none is built or destroyed
    // per frame). Per-batch scratch kept between passes: each chain's iovecs, its frame's index
    // in tx_frames_ (or kTxUnusable / kTxDropped), the frames handed to write_batch and their
    // results.
    std::vector<virtio::DescriptorChain> tx_chains_;
    std::size_t tx_count_ = 0;
    std::vector<virtio::IoVecs> tx_iovs_;
    std::vector<int> tx_frame_of_;
    std::vector<std::span<const iovec>> tx_frames_;
    std::vector<ssize_t> tx_results_;
    bool tx_blocked_ = false;
    bool rx_wanted_ = false, backend_gone_ = false;
    bool config_changed_ = false;  // a config interrupt is owed (link status changed in the loop)
    bool rx_more_ = false, tx_more_ = false;  // a budget ran out: go on without waiting
    std::uint32_t interest_ = 0;  // events registered for the backend fd (0 = not registered)
    VirtioNetStats stats_;

    std::thread thread_;
};

}  // namespace vmm::virtio_net
