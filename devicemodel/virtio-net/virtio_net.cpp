// VirtioNet: see virtio_net.h.
#include "devicemodel/virtio-net/virtio_net.h"

#include "common/error.h"
#include "common/log.h"
#include "common/thread_name.h"

#include <linux/if_tun.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <cstring>
#include <utility>

namespace vmm::virtio_net {

namespace {

using virtio::feature_bit;

// Frames (or chains) served per queue per pass, so a flood on one queue cannot starve the other.
constexpr std::size_t kBudget = 256;
// TX chains written per backend call (one io_uring_enter with a FrameWriter).
constexpr std::size_t kTxBatch = 64;
constexpr int kTxUnusable = -1, kTxDropped = -2;  // tx_frame_of_ for a chain that is not a frame
constexpr std::size_t kEthHeader = 14;
// Without guest GSO a frame is at most a 1500-byte MTU payload + Ethernet + VLAN header.
constexpr std::size_t kMaxPlainFrame = kVnetHeaderSize + 1500 + kEthHeader + 4;
// With MRG_RXBUF, a frame up to this long (header included) costs less read into the bounce area
// alone with read() and copied into the guest's buffer than read straight into them with a
// readv() of the first chain and the bounce area behind it (importing the two iovecs, walking
// them: ~50 ns a frame on a tap here). `virtio_net_bench --tap --mrg`, alternated, device model
// alone ÷ raw read: 256-byte frames 0.88 → 0.92-0.93, 700 0.88-0.90 → 0.91-0.92, 1514 0.90 →
// 0.88-0.90 (issue #3).
constexpr std::size_t kCopyUpTo = 1024;
// Frames in a row that would do with a narrower RX read window before it narrows.
constexpr unsigned kNarrowAfter = 64;
constexpr std::size_t kMaxIov = IOV_MAX - 1;  // room for the bounce area behind the guest's buffers

// Log the 1st, 2nd, 4th, 8th... occurrence: a misbehaving guest or peer cannot flood the log.
bool log_now(std::uint64_t count) { return (count & (count - 1)) == 0; }

}  // namespace

VirtioNet::VirtioNet(std::unique_ptr<NetBackend> backend, VirtioNetOptions options)
    : backend_(std::move(backend)), options_(std::move(options)), log_(logger(options_.name)), bounce_(kMaxFrame) {
    if (options_.queue_size < 2) options_.queue_size = 2;
    // virtio 1.2 §5.1.4: little-endian fields (x86 host).
    std::memcpy(config_.mac, options_.mac.data(), sizeof config_.mac);
    config_.status = kNetSLinkUp;
    config_.max_virtqueue_pairs = 1;

    features_ = feature_bit(virtio::kFeatureVersion1) | feature_bit(virtio::kFeatureIndirectDesc) |
                feature_bit(virtio::kFeatureEventIdx) | feature_bit(kNetFMac) | feature_bit(kNetFStatus);
    if (options_.mergeable_rx_buffers) features_ |= feature_bit(kNetFMrgRxbuf);
    const unsigned offloads = options_.offloads ? backend_->supported_offloads() : 0;
    // §5.1.3.1: the TSO features require the matching checksum feature; a backend that accepts
    // offloaded frames on read also accepts them on write (the tap parses the header either way).
    if (offloads & TUN_F_CSUM) {
        features_ |= feature_bit(kNetFCsum) | feature_bit(kNetFGuestCsum);
        if (offloads & TUN_F_TSO4) features_ |= feature_bit(kNetFHostTso4) | feature_bit(kNetFGuestTso4);
        if (offloads & TUN_F_TSO6) features_ |= feature_bit(kNetFHostTso6) | feature_bit(kNetFGuestTso6);
        if ((offloads & TUN_F_TSO_ECN) && (offloads & (TUN_F_TSO4 | TUN_F_TSO6)))
            features_ |= feature_bit(kNetFHostEcn) | feature_bit(kNetFGuestEcn);
    }

    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) throw_errno(options_.name + ": epoll_create1");
    epoll_ = Fd(ep);
    kick_fd_ = make_eventfd(EFD_NONBLOCK);
    for (auto& q : queue_kick_fds_) q = make_eventfd(EFD_NONBLOCK);
    // Edge-triggered, and never read: every write to an eventfd (ours, or KVM's ioeventfd
    // signalling it) wakes its waiters, so each kick is an edge, and a kick costs the loop no
    // read() to drain the counter. The counter only grows; it would take 2^64 kicks to fill.
    for (const Fd* fd : {&kick_fd_, &queue_kick_fds_[kRxQueue], &queue_kick_fds_[kTxQueue]}) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLET;
        ev.data.fd = fd->get();
        if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd->get(), &ev) < 0) throw_errno(options_.name + ": epoll_ctl kick");
    }

    log_->info("{} mac {} features {:#x}", backend_->description(), format_mac(options_.mac), features_);
    if (options_.own_thread)
        thread_ = std::thread([this] {
            set_thread_name(options_.name + "-io");
            if (options_.on_thread_start) options_.on_thread_start();
            loop();
        });
}

VirtioNet::~VirtioNet() {
    if (thread_.joinable()) {
        stop_ = true;
        kick(0);
        thread_.join();
    }
    reset();
}

void VirtioNet::read_config(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::fill(data.begin(), data.end(), 0);
    std::lock_guard lock(mu_);
    if (offset >= sizeof config_) return;
    const std::size_t n = std::min<std::uint64_t>(data.size(), sizeof config_ - offset);
    std::memcpy(data.data(), reinterpret_cast<const std::uint8_t*>(&config_) + offset, n);
}

void VirtioNet::write_config(std::uint64_t, std::span<const std::uint8_t>) {
    // §5.1.4: the driver must not write the config space of a VERSION_1 device (the mac is
    // writable only for legacy drivers); writes are ignored.
}

void VirtioNet::activate(const GuestMemory& memory, std::uint64_t features, std::vector<virtio::QueueConfig> queues,
                         std::shared_ptr<virtio::VirtioInterrupt> interrupt) {
    Signal s;
    {
        std::lock_guard lock(mu_);
        drop_rx_state_locked();
        drop_tx_state_locked();
        queues.resize(2);
        rx_ = virtio::VirtQueue(memory, queues[kRxQueue], options_.queue_size, features);
        tx_ = virtio::VirtQueue(memory, queues[kTxQueue], options_.queue_size, features);
        mrg_ = features & feature_bit(kNetFMrgRxbuf);
        const bool guest_gso = features & (feature_bit(kNetFGuestTso4) | feature_bit(kNetFGuestTso6) |
                                           feature_bit(kNetFGuestUfo));
        rx_target_ = guest_gso ? kMaxFrame : kMaxPlainFrame;
        rx_direct_ = kMaxPlainFrame;
        rx_small_run_ = 0;
        rx_run_wanted_ = 0;
        // What the guest accepts on receive becomes the tap's offload set: the kernel finishes
        // checksums and segments GSO frames the guest did not ask for.
        unsigned offloads = 0;
        if (features & feature_bit(kNetFGuestCsum)) {
            offloads |= TUN_F_CSUM;
            if (features & feature_bit(kNetFGuestTso4)) offloads |= TUN_F_TSO4;
            if (features & feature_bit(kNetFGuestTso6)) offloads |= TUN_F_TSO6;
            if (features & feature_bit(kNetFGuestEcn)) offloads |= TUN_F_TSO_ECN;
        }
        if (!backend_gone_ && !backend_->set_offloads(offloads)) log_->warn("{}: offloads {:#x} refused", backend_->description(), offloads);
        interrupt_ = std::move(interrupt);
        active_ = true;
        broken_reported_ = false;
        rx_more_ = tx_more_ = false;
        check_broken_locked(s);
        log_->debug("activated: features {:#x}, rx queue {} tx queue {}", features, rx_.size(), tx_.size());
    }
    send(s);
    // Buffers may already be waiting on either queue.
    kick(kKickRx | kKickTx);
}

void VirtioNet::reset() {
    std::lock_guard lock(mu_);
    active_ = false;
    drop_rx_state_locked();
    drop_tx_state_locked();
    rx_ = virtio::VirtQueue{};
    tx_ = virtio::VirtQueue{};
    interrupt_.reset();
    broken_reported_ = false;
    rx_wanted_ = rx_more_ = tx_more_ = false;
    // Stop polling the backend now: frames wait in the tap until the driver is back.
    update_interest_locked();
}

void VirtioNet::queue_notify(std::uint16_t queue) {
    if (queue == kRxQueue)
        kick(kKickRx);
    else if (queue == kTxQueue)
        kick(kKickTx);
}

void VirtioNet::kick(std::uint32_t bits) {
    kicks_.fetch_or(bits);
    signal_eventfd(kick_fd_.get());
}

void VirtioNet::set_link_up(bool up) {
    std::shared_ptr<virtio::VirtioInterrupt> irq;
    {
        std::lock_guard lock(mu_);
        const std::uint16_t status = up ? kNetSLinkUp : 0;
        if (config_.status == status) return;
        config_.status = status;
        if (active_) irq = interrupt_;
    }
    if (irq) irq->notify_config();
}

VirtioNetStats VirtioNet::stats() const {
    std::lock_guard lock(mu_);
    return stats_;
}

bool VirtioNet::poll(int timeout_ms) {
    if (options_.own_thread) throw Error(options_.name + ": poll() on a device that runs its own event loop");
    return run_pass(timeout_ms);
}

void VirtioNet::loop() {
    bool more = false;
    while (!stop_) more = run_pass(more ? 0 : -1);
}

bool VirtioNet::run_pass(int timeout_ms) {
    epoll_event events[4];
    const int n = ::epoll_wait(epoll_.get(), events, 4, timeout_ms);
    if (n < 0 && errno != EINTR) {
        log_->error("epoll_wait: {}", std::strerror(errno));
        return false;
    }
    bool readable = false, writable = false;
    std::uint32_t queue_kicks = 0;
    for (int i = 0; i < n; ++i) {
        const int fd = events[i].data.fd;
        if (fd == queue_kick_fds_[kRxQueue].get()) {
            queue_kicks |= kKickRx;
        } else if (fd == queue_kick_fds_[kTxQueue].get()) {
            queue_kicks |= kKickTx;
        } else if (fd == kick_fd_.get()) {
            // kicks_ says what for
        } else {
            readable |= (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0;
            writable |= (events[i].events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0;
        }
    }
    const std::uint32_t kicks = kicks_.exchange(0) | queue_kicks;
    if (stop_) return false;

    Signal s;
    bool more = false;
    {
        std::lock_guard lock(mu_);
        if (active_) {
            bool tx_used = false, rx_used = false;
            if ((kicks & kKickTx) || writable || tx_more_) tx_more_ = process_tx_locked(tx_used);
            if ((kicks & kKickRx) || readable || rx_more_) rx_more_ = process_rx_locked(rx_used);
            s.tx = tx_used && tx_.needs_notification();
            s.rx = rx_used && rx_.needs_notification();
            s.config = std::exchange(config_changed_, false);
            check_broken_locked(s);
            more = rx_more_ || tx_more_;
        }
        update_interest_locked();
    }
    send(s);
    return more;
}

bool VirtioNet::process_tx_locked(bool& used) {
    std::size_t served = 0;
    for (;;) {
        // The chains held from a pass that found the backend full go first, in their order.
        while (tx_count_ < kTxBatch && served + tx_count_ < kBudget) {
            if (tx_count_ == tx_chains_.size()) tx_chains_.emplace_back();
            if (!tx_.pop(tx_chains_[tx_count_])) break;  // popped in place: no chain built or moved
            ++tx_count_;
        }
        if (tx_count_ == 0) {
            tx_blocked_ = false;
            return false;
        }
        // One frame per usable chain; the rest are given back unsent.
        const std::size_t chains = tx_count_;
        tx_iovs_.resize(chains);
        tx_frame_of_.assign(chains, kTxUnusable);
        tx_frames_.clear();
        for (std::size_t i = 0; i < chains; ++i) {
            const virtio::DescriptorChain& chain = tx_chains_[i];
            const std::uint64_t len = chain.readable_bytes();
            virtio::IoVecs& iov = tx_iovs_[i];
            // The chain's readable buffers as they are (each checked, none empty).
            iov.clear();
            for (const virtio::GuestBuffer& b : chain.readable()) virtio::append_iov(iov, b.host.data(), b.host.size());
            const bool usable = chain.ok() && len >= kVnetHeaderSize + kEthHeader && len <= kMaxFrame && iov.size() <= IOV_MAX;
            if (!usable) {
                // §5.1.6.2: a transmit chain is the header and the frame; anything else is the
                // guest's mistake: give the chain back unsent.
                if (log_now(++stats_.tx_errors))
                    log_->warn("tx chain at head {} unusable ({}, {} readable bytes): not sent", chain.head(),
                               virtio::to_string(chain.error()), len);
            } else if (backend_gone_) {
                tx_frame_of_[i] = kTxDropped;  // nowhere to send it; the guest still gets its buffer back
            } else {
                tx_frame_of_[i] = static_cast<int>(tx_frames_.size());
                tx_frames_.emplace_back(iov.data(), iov.size());
            }
        }
        tx_results_.resize(tx_frames_.size());
        const std::size_t written = tx_frames_.empty() ? 0 : backend_->write_batch(tx_frames_, tx_results_);
        // Every chain but the frames the backend could not take (the first of them and those
        // behind it) is done; those wait for EPOLLOUT, kept in order, not given back.
        std::size_t kept = 0;
        for (std::size_t i = 0; i < chains; ++i) {
            const int frame = tx_frame_of_[i];
            if (frame >= 0 && static_cast<std::size_t>(frame) >= written) {
                if (kept != i) std::swap(tx_chains_[kept], tx_chains_[i]);  // both stay kept
                ++kept;
                continue;
            }
            if (frame == kTxDropped) {
                ++stats_.tx_dropped;
            } else if (frame >= 0) {
                const ssize_t n = tx_results_[static_cast<std::size_t>(frame)];
                const std::uint64_t len = tx_chains_[i].readable_bytes();
                if (n == -EBADFD) {
                    if (!backend_gone_) backend_lost_locked("is gone (the interface was deleted)");
                    ++stats_.tx_dropped;
                } else if (n < 0) {
                    if (log_now(++stats_.tx_errors))
                        log_->warn("tx of {} bytes to {} failed: {}", len, backend_->description(), std::strerror(static_cast<int>(-n)));
                } else {
                    ++stats_.tx_frames;
                    stats_.tx_bytes += len - kVnetHeaderSize;
                }
            }
            // The device writes nothing into a transmit chain: used length 0.
            tx_.add_used(tx_chains_[i].head(), 0);
            used = true;
        }
        tx_count_ = kept;
        const std::size_t done = chains - kept;
        served += done;
        if (kept > 0) {
            // The backend is full: retry when it is writable (EPOLLOUT).
            tx_blocked_ = true;
            return false;
        }
        tx_blocked_ = false;
        if (served >= kBudget) return true;
    }
}

void VirtioNet::drop_tx_state_locked() {
    tx_count_ = 0;
    tx_blocked_ = false;
}

std::size_t VirtioNet::held_bytes_locked() const {
#ifndef NDEBUG
    std::size_t have = 0;
    for (std::size_t i = 0; i < held_.size(); ++i) have += held_[i].writable_bytes();
    assert(have == held_bytes_);
#endif
    return held_bytes_;
}

bool VirtioNet::pop_rx_chain_locked(std::size_t min_bytes, std::size_t& have, bool& used) {
    virtio::DescriptorChain& chain = held_.next_slot();  // popped in place: no chain built or moved
    if (!rx_.pop(chain)) return false;
    if (!chain.ok() || chain.writable_bytes() < min_bytes) {
        // Not a receive buffer we can use: hand it back empty, the driver recycles it.
        if (log_now(++stats_.rx_bad_chains))
            log_->warn("rx chain at head {} unusable ({}, {} writable bytes)", chain.head(),
                       virtio::to_string(chain.error()), chain.writable_bytes());
        rx_.add_used(chain.head(), 0);
        used = true;
        return true;
    }
    have += chain.writable_bytes();
    held_bytes_ += chain.writable_bytes();
    held_.commit_back();
    return true;
}

void VirtioNet::top_up_rx_locked(bool& used) {
    std::size_t have = held_bytes_locked();
    // Without MRG_RXBUF one chain takes a whole frame; with it, gather up to the largest frame
    // the guest can be sent (a smaller frame leaves the rest held for the next one).
    while (mrg_ ? have < rx_target_ : held_.empty())
        if (!pop_rx_chain_locked(kVnetHeaderSize, have, used)) return;
}

bool VirtioNet::process_rx_locked(bool& used) {
    if (backend_gone_) return false;
    for (std::size_t i = 0; i < kBudget; ++i) {
        if (pending_len_ && !deliver_pending_locked(used)) {
            rx_wanted_ = false;  // resume on the next rx notify
            return false;
        }
        top_up_rx_locked(used);
        if (held_.empty()) {
            rx_wanted_ = false;  // no buffers: leave frames in the backend until the driver posts some
            return false;
        }
        std::vector<iovec>& iov = rx_iov_;
        iov.clear();
        std::size_t guest_bytes = 0;
        direct_chains_ = 0;
        for (std::size_t c_i = 0; c_i < held_.size(); ++c_i) {
            const virtio::DescriptorChain& c = held_[c_i];
            if (!mrg_ && direct_chains_ == 1) break;
            if (mrg_ && guest_bytes >= rx_direct_) break;  // rx_direct_ 0: the bounce area alone
            // The chain's writable buffers as they are (each checked, none empty: the walk
            // leaves out zero-length ones), not copied through an IoVecs first.
            const virtio::GuestBuffers& bufs = c.writable();
            if (iov.size() + bufs.size() > kMaxIov) break;
            for (const virtio::GuestBuffer& b : bufs) virtio::append_iov(iov, b.host.data(), b.host.size());
            guest_bytes += c.writable_bytes();
            ++direct_chains_;
        }
        // The bounce area takes what does not fit the guest's buffers: the tail of a frame
        // waiting for more buffers (MRG_RXBUF), or all of it from a chain of more than IOV_MAX
        // pieces. Without MRG_RXBUF a frame longer than its one chain is dropped whatever, and
        // both backends report a cut frame's full length, so a read into the chain alone tells
        // the same; nor can any frame overflow buffers of kMaxFrame bytes. Where the bounce
        // area is not needed it stays out of the read: one iovec is the kernel's fast path.
        const bool bounce = guest_bytes < kMaxFrame && (mrg_ || direct_chains_ == 0);
        if (bounce) virtio::append_iov(iov, bounce_.data(), bounce_.size());
        const std::size_t room = guest_bytes + (bounce ? bounce_.size() : 0);
        const ssize_t n = backend_->read(iov);
        if (n == -EAGAIN) {
            rx_wanted_ = true;
            return false;
        }
        // A deleted tap answers every read with EBADFD and polls EPOLLERR for ever: without
        // this the loop would retry it at full speed.
        if (n == 0 || n == -EBADFD) {
            backend_lost_locked(n == 0 ? "closed" : "is gone (the interface was deleted)");
            return false;
        }
        const std::size_t len = n > 0 ? static_cast<std::size_t>(n) : 0;
        if (n < 0 || len < kVnetHeaderSize + kEthHeader || (len > room && (mrg_ || direct_chains_ == 0))) {
            if (log_now(++stats_.rx_dropped))
                log_->warn("rx from {}: {} frame dropped", backend_->description(),
                           n < 0 ? std::strerror(static_cast<int>(-n)) : len < kVnetHeaderSize + kEthHeader ? "runt" : "oversized");
            continue;
        }
        if (len <= held_bytes_locked()) {
            // The held chains take the frame: where the read put it, or (its tail, or all of it
            // when the window was none or the chain has more than IOV_MAX pieces) copied from
            // the bounce area. Without MRG_RXBUF one chain is held.
            finish_frame_locked(len);
            used = true;
            continue;
        }
        if (!mrg_) {
            // §5.1.6.3.1: the driver should post buffers for the largest frame. This one does
            // not fit: drop the frame, keep the chain for the next one (QEMU does the same).
            if (log_now(++stats_.rx_dropped))
                log_->warn("rx frame of {} bytes does not fit a {}-byte receive buffer: dropped", len - kVnetHeaderSize,
                           held_.front().writable_bytes());
            continue;
        }
        // The tail sits in the bounce area: it waits there for more buffers (never half-delivered).
        pending_len_ = len;
    }
    return true;
}

bool VirtioNet::deliver_pending_locked(bool& used) {
    std::size_t have = held_bytes_locked();
    while (have < *pending_len_)
        if (!pop_rx_chain_locked(1, have, used)) return false;
    finish_frame_locked(*pending_len_);
    pending_len_.reset();
    used = true;
    return true;
}

void VirtioNet::finish_frame_locked(std::size_t len) {
    // §5.1.6.4: num_buffers is the number of chains the frame used (1 without MRG_RXBUF).
    constexpr std::uint64_t kNumBuffersAt = offsetof(VirtioNetHdr, num_buffers);
    const virtio::DescriptorChain& first = held_.front();
    if (direct_chains_ > 0 && len <= first.writable_bytes()) {
        // The frame lies in the first chain, where the read put it: every frame without
        // MRG_RXBUF and most with it. One used entry, no list of them to build.
        first.write_obj(kNumBuffersAt, std::uint16_t{1});
        rx_.add_used(first.head(), static_cast<std::uint32_t>(len));
        held_bytes_ -= first.writable_bytes();
        held_.drop_front(1);
    } else {
        auto& done = rx_done_;
        done.clear();
        std::size_t remaining = len, bounce_off = 0, given = 0;
        for (std::size_t i = 0; remaining > 0 && i < held_.size(); ++i) {
            const auto& c = held_[i];
            const std::size_t take = std::min<std::size_t>(remaining, c.writable_bytes());
            given += c.writable_bytes();
            if (i >= direct_chains_) {
                c.write(0, {bounce_.data() + bounce_off, take});
                bounce_off += take;
            }
            done.emplace_back(c.head(), static_cast<std::uint32_t>(take));
            remaining -= take;
        }
        held_.front().write_obj(kNumBuffersAt, static_cast<std::uint16_t>(done.size()));
        for (auto [head, used_len] : done) rx_.add_used(head, used_len);
        held_.drop_front(done.size());
        held_bytes_ -= given;
    }
    // The read's window into the held chains follows the frames. It has three widths: none (the
    // bounce area alone, a small frame copied from there: kCopyUpTo), a plain Ethernet frame
    // (one chain and the bounce area: two iovecs for the kernel to import, not the ~40 chains
    // of 1.5 KiB a guest with GSO keeps posted) and every chain held (a GSO frame goes straight
    // in, not through the bounce area). A frame that wants it wider widens it at once; a run
    // of kNarrowAfter frames that all want it narrower narrows it to the widest they wanted.
    if (mrg_) {
        const std::size_t wanted = len <= kCopyUpTo ? 0 : len <= kMaxPlainFrame ? kMaxPlainFrame : rx_target_;
        if (wanted >= rx_direct_) {
            rx_direct_ = wanted;
            rx_small_run_ = 0;
            rx_run_wanted_ = 0;
        } else {
            rx_run_wanted_ = std::max(rx_run_wanted_, wanted);
            if (++rx_small_run_ >= kNarrowAfter) {
                rx_direct_ = rx_run_wanted_;
                rx_small_run_ = 0;
                rx_run_wanted_ = 0;
            }
        }
    }
    direct_chains_ = 0;
    ++stats_.rx_frames;
    stats_.rx_bytes += len - kVnetHeaderSize;
}

void VirtioNet::drop_rx_state_locked() {
    if (pending_len_) ++stats_.rx_dropped;
    pending_len_.reset();
    held_.clear();
    held_bytes_ = 0;
    direct_chains_ = 0;
}

void VirtioNet::backend_lost_locked(const char* why) {
    if (backend_gone_) return;
    backend_gone_ = true;
    rx_wanted_ = false;
    // §5.1.4: VIRTIO_NET_S_LINK_UP off tells the driver its carrier is lost.
    if (config_.status & kNetSLinkUp) {
        config_.status = static_cast<std::uint16_t>(config_.status & ~kNetSLinkUp);
        config_changed_ = true;
    }
    log_->warn("{} {}: link down; no more receive, transmitted frames are dropped", backend_->description(), why);
}

void VirtioNet::update_interest_locked() {
    std::uint32_t want = 0;
    if (active_ && rx_wanted_ && !backend_gone_) want |= EPOLLIN;
    if (active_ && tx_blocked_) want |= EPOLLOUT;
    if (want == interest_) return;
    epoll_event ev{};
    ev.events = want;
    ev.data.fd = backend_->fd();
    const int op = interest_ == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (::epoll_ctl(epoll_.get(), op, backend_->fd(), &ev) < 0) {
        log_->error("epoll_ctl on {}: {}", backend_->description(), std::strerror(errno));
        return;
    }
    interest_ = want;
}

void VirtioNet::check_broken_locked(Signal& s) {
    s.irq = interrupt_;
    if (!broken_reported_ && (rx_.broken() || tx_.broken())) {
        broken_reported_ = s.broken = true;
        log_->warn("queue broken: {}", rx_.broken() ? rx_.broken_reason() : tx_.broken_reason());
    }
}

void VirtioNet::send(const Signal& s) {
    if (!s.irq) return;
    if (s.broken) s.irq->needs_reset();
    if (s.config) s.irq->notify_config();
    if (s.rx) s.irq->notify_queue(kRxQueue);
    if (s.tx) s.irq->notify_queue(kTxQueue);
}

}  // namespace vmm::virtio_net
