// VirtioConsole: see virtio_console.h.
#include "devicemodel/virtio-console/virtio_console.h"

#include "common/log.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace vmm::virtio_console {

VirtioConsole::VirtioConsole(Output output, VirtioConsoleOptions options, Executor executor)
    : output_(std::move(output)),
      options_(std::move(options)),
      executor_(std::move(executor)),
      log_(logger(options_.name)),
      host_connected_(options_.host_connected) {
    config_.cols = options_.cols;
    config_.rows = options_.rows;
    config_.max_nr_ports = 1;
    if (options_.port_name.size() > kMaxPortName)
        throw std::invalid_argument("virtio-console port name longer than " + std::to_string(kMaxPortName) + " bytes");
}

std::uint64_t VirtioConsole::device_features() const {
    using virtio::feature_bit;
    return feature_bit(virtio::kFeatureVersion1) | feature_bit(virtio::kFeatureIndirectDesc) |
           feature_bit(virtio::kFeatureEventIdx) | feature_bit(VIRTIO_CONSOLE_F_SIZE) |
           feature_bit(VIRTIO_CONSOLE_F_EMERG_WRITE) |
           (options_.port_name.empty() ? 0 : feature_bit(VIRTIO_CONSOLE_F_MULTIPORT));
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
        multiport_ = !options_.port_name.empty() && (features & virtio::feature_bit(VIRTIO_CONSOLE_F_MULTIPORT));
        queues.resize(multiport_ ? 4 : 2);
        rx_ = virtio::VirtQueue(memory, queues[kReceiveQueue], options_.queue_size, features);
        tx_ = virtio::VirtQueue(memory, queues[kTransmitQueue], options_.queue_size, features);
        if (multiport_) {
            control_rx_ = virtio::VirtQueue(memory, queues[kControlReceiveQueue], options_.queue_size, features);
            control_tx_ = virtio::VirtQueue(memory, queues[kControlTransmitQueue], options_.queue_size, features);
        }
        interrupt_ = std::move(interrupt);
        active_ = true;
        broken_reported_ = false;
        check_broken_locked(s);
    }
    send(s);
    // Buffers may already be waiting on any queue, and input may be pending.
    if (multiport_) queue_notify(kControlTransmitQueue);
    queue_notify(kTransmitQueue);
    queue_notify(kReceiveQueue);
}

void VirtioConsole::reset() {
    bool was_open;
    {
        std::lock_guard lock(mu_);
        was_open = guest_open_;
        active_ = false;
        rx_ = virtio::VirtQueue{};
        tx_ = virtio::VirtQueue{};
        control_rx_ = virtio::VirtQueue{};
        control_tx_ = virtio::VirtQueue{};
        multiport_ = guest_open_ = port_ready_ = false;
        control_out_.clear();
        control_broken_.clear();
        interrupt_.reset();
        // Pending input is the backend's, not the driver's: it survives a reset.
    }
    if (was_open && options_.on_guest_open) options_.on_guest_open(false);
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
    else if (queue == kControlTransmitQueue || queue == kControlReceiveQueue)  // (rx: buffers for held messages)
        run([this] { process_control(); });
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

void VirtioConsole::set_host_connected(bool connected) {
    {
        std::lock_guard lock(mu_);
        if (host_connected_ == connected) return;
        host_connected_ = connected;
        if (!active_ || !multiport_ || !port_ready_) return;  // told at PORT_READY
        queue_control_locked(VIRTIO_CONSOLE_PORT_OPEN, connected ? 1 : 0);
    }
    run([this] { process_control(); });  // delivers it
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

bool VirtioConsole::guest_open() const {
    std::lock_guard lock(mu_);
    return guest_open_;
}

bool VirtioConsole::deliver_locked() {
    bool used = false;
    while (!pending_.empty() && input_open_locked()) {
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

void VirtioConsole::process_control() {
    Signal s;
    {
        std::lock_guard lock(mu_);
        if (!active_ || !multiport_) return;
        bool used = false;
        while (control_broken_.empty()) {
            auto chain = control_tx_.pop();
            if (!chain) break;
            virtio_console_control msg{};
            if (chain->ok() && chain->read(0, {reinterpret_cast<std::uint8_t*>(&msg), sizeof msg}) == sizeof msg) {
                control_message_locked(msg, s);
            } else if (!warned_control_) {
                warned_control_ = true;
                if (chain->ok())
                    log_->warn("a control message of {} bytes, shorter than its {}-byte header: ignored",
                               chain->readable_bytes(), sizeof msg);
                else
                    log_->warn("a control message chain the device cannot read ({}): ignored", virtio::to_string(chain->error()));
            }
            control_tx_.add_used(chain->head(), 0);
            used = true;
        }
        s.control_tx = used && control_tx_.needs_notification();
        s.control_rx = deliver_control_locked();
        s.rx = deliver_locked();  // the guest may have just opened the port
        check_broken_locked(s);
    }
    send(s);
}

void VirtioConsole::control_message_locked(const virtio_console_control& msg, Signal& s) {
    if (msg.event == VIRTIO_CONSOLE_DEVICE_READY) {
        if (msg.value == 1)
            queue_control_locked(VIRTIO_CONSOLE_PORT_ADD, 0);
        else
            log_->warn("the driver could not set up the device (DEVICE_READY 0)");
        return;
    }
    if (msg.id != 0) {
        if (!warned_control_) {
            warned_control_ = true;
            log_->warn("control message {} for port {}: this device has port 0 only; ignored", msg.event, msg.id);
        }
        return;
    }
    switch (msg.event) {
        case VIRTIO_CONSOLE_PORT_READY:
            if (msg.value != 1) {
                log_->warn("the driver could not add port 0 (PORT_READY 0)");
                return;
            }
            // With its NUL, as QEMU sends it (Linux copies what fits and terminates it itself).
            queue_control_locked(VIRTIO_CONSOLE_PORT_NAME, 1, {options_.port_name.c_str(), options_.port_name.size() + 1});
            if (host_connected_) queue_control_locked(VIRTIO_CONSOLE_PORT_OPEN, 1);  // closed: the port's default
            port_ready_ = true;
            return;
        case VIRTIO_CONSOLE_PORT_OPEN:
            if (guest_open_ == (msg.value != 0)) return;
            guest_open_ = msg.value != 0;
            log_->info("port \"{}\" {} by the guest", options_.port_name, guest_open_ ? "opened" : "closed");
            s.guest_open = guest_open_;
            return;
        default:
            return;  // nothing else is the driver's to send (§5.3.6.2.1)
    }
}

void VirtioConsole::queue_control_locked(std::uint16_t event, std::uint16_t value, std::string_view payload) {
    const virtio_console_control msg{0, event, value};
    std::vector<std::uint8_t> bytes(sizeof msg + payload.size());
    std::memcpy(bytes.data(), &msg, sizeof msg);
    if (!payload.empty()) std::memcpy(bytes.data() + sizeof msg, payload.data(), payload.size());
    control_out_.push_back(std::move(bytes));
}

bool VirtioConsole::deliver_control_locked() {
    bool used = false;
    while (!control_out_.empty() && control_broken_.empty()) {
        auto chain = control_rx_.pop();
        if (!chain) break;
        std::uint32_t n = 0;
        const std::vector<std::uint8_t>& msg = control_out_.front();
        if (chain->ok() && chain->writable_bytes() >= msg.size()) {
            n = static_cast<std::uint32_t>(chain->write(0, msg));
            control_out_.pop_front();
        } else if (chain->ok()) {
            control_broken_ = "a control receive buffer of " + std::to_string(chain->writable_bytes()) +
                              " bytes is too small for a " + std::to_string(msg.size()) + "-byte message";
        }
        control_rx_.add_used(chain->head(), n);
        used = true;
    }
    return used && control_rx_.needs_notification();
}

void VirtioConsole::check_broken_locked(Signal& s) {
    s.irq = interrupt_;
    if (broken_reported_) return;
    std::string reason;
    for (const virtio::VirtQueue* q : {&rx_, &tx_, &control_rx_, &control_tx_})
        if (q->broken()) {
            reason = q->broken_reason();
            break;
        }
    if (reason.empty()) reason = control_broken_;
    if (reason.empty()) return;
    broken_reported_ = s.broken = true;
    log_->warn("device broken: {}", reason);
}

void VirtioConsole::send(const Signal& s) const {
    if (s.guest_open && options_.on_guest_open) options_.on_guest_open(*s.guest_open);
    if (!s.irq) return;
    if (s.broken) s.irq->needs_reset();
    if (s.rx) s.irq->notify_queue(kReceiveQueue);
    if (s.tx) s.irq->notify_queue(kTransmitQueue);
    if (s.control_rx) s.irq->notify_queue(kControlReceiveQueue);
    if (s.control_tx) s.irq->notify_queue(kControlTransmitQueue);
}

}  // namespace vmm::virtio_console
