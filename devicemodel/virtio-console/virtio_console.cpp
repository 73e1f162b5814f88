// VirtioConsole: see virtio_console.h.
#include "devicemodel/virtio-console/virtio_console.h"

#include "common/log.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

namespace vmm::virtio_console {

VirtioConsole::VirtioConsole(Output output, VirtioConsoleOptions options, Executor executor)
    : output_(std::move(output)), options_(std::move(options)), executor_(std::move(executor)), log_(logger(options_.name)) {
    config_.cols = options_.cols;
    config_.rows = options_.rows;
    config_.max_nr_ports = 1;
}

std::uint64_t VirtioConsole::device_features() const {
    using virtio::feature_bit;
    return feature_bit(virtio::kFeatureVersion1) | feature_bit(virtio::kFeatureIndirectDesc) |
           feature_bit(virtio::kFeatureEventIdx) | feature_bit(VIRTIO_CONSOLE_F_SIZE) |
           feature_bit(VIRTIO_CONSOLE_F_EMERG_WRITE);
}

void VirtioConsole::read_config(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::fill(data.begin(), data.end(), 0);
    std::lock_guard lock(mu_);
    // emerg_wr is write-only: it reads as zero (§5.3.4), and config_.emerg_wr stays 0.
    if (offset >= sizeof config_) return;
    const std::size_t n = std::min<std::uint64_t>(data.size(), sizeof config_ - offset);
    std::memcpy(data.data(), reinterpret_cast<const std::uint8_t*>(&config_) + offset, n);
}

void VirtioConsole::write_config(std::uint64_t offset, std::span<const std::uint8_t> data) {
    // §5.3.6.1: a write to emerg_wr outputs its low byte, even before DRIVER_OK.
    if (offset == offsetof(virtio_console_config, emerg_wr) && !data.empty()) {
        std::lock_guard lock(mu_);
        if (output_) output_(data.first(1));
    }
}

void VirtioConsole::activate(const GuestMemory& memory, std::uint64_t features, std::vector<virtio::QueueConfig> queues,
                             std::shared_ptr<virtio::VirtioInterrupt> interrupt) {
    Signal s;
    {
        std::lock_guard lock(mu_);
        queues.resize(2);
        rx_ = virtio::VirtQueue(memory, queues[kReceiveQueue], options_.queue_size, features);
        tx_ = virtio::VirtQueue(memory, queues[kTransmitQueue], options_.queue_size, features);
        interrupt_ = std::move(interrupt);
        active_ = true;
        broken_reported_ = false;
        check_broken_locked(s);
    }
    send(s);
    // Buffers may already be waiting on either queue, and input may be pending.
    queue_notify(kTransmitQueue);
    queue_notify(kReceiveQueue);
}

void VirtioConsole::reset() {
    std::lock_guard lock(mu_);
    active_ = false;
    rx_ = virtio::VirtQueue{};
    tx_ = virtio::VirtQueue{};
    interrupt_.reset();
    // Pending input is the backend's, not the driver's: it survives a reset.
}

void VirtioConsole::run(std::function<void()> work) {
    if (executor_)
        executor_(std::move(work));
    else
        work();
}

void VirtioConsole::queue_notify(std::uint16_t queue) {
    if (queue == kReceiveQueue)
        run([this] { process_rx(); });
    else if (queue == kTransmitQueue)
        run([this] { process_tx(); });
}

std::size_t VirtioConsole::feed_input(std::span<const std::uint8_t> data) {
    std::size_t accepted;
    {
        std::lock_guard lock(mu_);
        const std::size_t room = options_.max_pending_input - std::min(options_.max_pending_input, pending_.size());
        accepted = std::min(room, data.size());
        pending_.insert(pending_.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(accepted));
        if (accepted < data.size()) {
            if (dropped_ == 0) log_->warn("input buffer full ({} bytes): dropping input", options_.max_pending_input);
            dropped_ += data.size() - accepted;
        }
    }
    run([this] { process_rx(); });
    return accepted;
}

void VirtioConsole::resize(std::uint16_t cols, std::uint16_t rows) {
    std::shared_ptr<virtio::VirtioInterrupt> irq;
    {
        std::lock_guard lock(mu_);
        if (config_.cols == cols && config_.rows == rows) return;
        config_.cols = cols;
        config_.rows = rows;
        if (active_) irq = interrupt_;
    }
    if (irq) irq->notify_config();
}

std::size_t VirtioConsole::pending_input() const {
    std::lock_guard lock(mu_);
    return pending_.size();
}

std::uint64_t VirtioConsole::dropped_input() const {
    std::lock_guard lock(mu_);
    return dropped_;
}

bool VirtioConsole::deliver_locked() {
    bool used = false;
    while (!pending_.empty()) {
        auto chain = rx_.pop();
        if (!chain) break;
        std::uint32_t n = 0;
        if (chain->ok()) {
            // Copy out of the deque in contiguous pieces, at most what the buffers hold.
            const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(chain->writable_bytes(), pending_.size()));
            std::vector<std::uint8_t> bytes(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(want));
            n = static_cast<std::uint32_t>(chain->write(0, bytes));
            pending_.erase(pending_.begin(), pending_.begin() + n);
        }
        rx_.add_used(chain->head(), n);
        used = true;
    }
    return used && rx_.needs_notification();
}

void VirtioConsole::process_rx() {
    Signal s;
    {
        std::lock_guard lock(mu_);
        if (!active_) return;
        s.rx = deliver_locked();
        check_broken_locked(s);
    }
    send(s);
}

void VirtioConsole::process_tx() {
    Signal s;
    {
        std::lock_guard lock(mu_);
        if (!active_) return;
        bool used = false;
        while (auto chain = tx_.pop()) {
            if (output_)
                for (const auto& b : chain->readable()) output_(b.host);
            // The device writes nothing into a transmit buffer: used length 0 (§5.3.6.2).
            tx_.add_used(chain->head(), 0);
            used = true;
        }
        s.tx = used && tx_.needs_notification();
        check_broken_locked(s);
    }
    send(s);
}

void VirtioConsole::check_broken_locked(Signal& s) {
    s.irq = interrupt_;
    if (!broken_reported_ && (rx_.broken() || tx_.broken())) {
        broken_reported_ = s.broken = true;
        log_->warn("queue broken: {}", rx_.broken() ? rx_.broken_reason() : tx_.broken_reason());
    }
}

void VirtioConsole::send(const Signal& s) {
    if (!s.irq) return;
    if (s.broken) s.irq->needs_reset();
    if (s.rx) s.irq->notify_queue(kReceiveQueue);
    if (s.tx) s.irq->notify_queue(kTransmitQueue);
}

}  // namespace vmm::virtio_console
