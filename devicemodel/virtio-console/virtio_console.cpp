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
    : options_(std::move(options)), executor_(std::move(executor)), log_(logger(options_.name)) {
    config_.cols = options_.cols;
    config_.rows = options_.rows;
    if (options_.port_name.size() > kMaxPortName)
        throw std::invalid_argument("virtio-console port name longer than " + std::to_string(kMaxPortName) + " bytes");
    if (options_.more_ports.size() + 1 > kMaxPorts)
        throw std::invalid_argument("virtio-console: more than " + std::to_string(kMaxPorts) + " ports");
    auto add = [&](VirtioConsolePortOptions o) {
        for (const Port& other : ports_)
            if (other.name == o.name) throw std::invalid_argument("virtio-console: two ports named \"" + o.name + "\"");
        Port& port = ports_.emplace_back();
        port.name = std::move(o.name);
        port.output = std::move(o.output);
        port.on_guest_open = std::move(o.on_guest_open);
        port.host_connected = o.host_connected;
    };
    add({options_.port_name, std::move(output), std::move(options_.on_guest_open), options_.host_connected});
    for (auto& more : options_.more_ports) {
        if (more.name.empty() || more.name.size() > kMaxPortName)
            throw std::invalid_argument("virtio-console: a port's name must be 1 to " + std::to_string(kMaxPortName) + " bytes");
        add(std::move(more));
    }
    options_.more_ports.clear();  // moved into ports_
    offers_multiport_ = !ports_[0].is_console() || ports_.size() > 1;
    config_.max_nr_ports = static_cast<std::uint32_t>(ports_.size());
}

std::uint64_t VirtioConsole::device_features() const {
    using virtio::feature_bit;
    return feature_bit(virtio::kFeatureVersion1) | feature_bit(virtio::kFeatureIndirectDesc) |
           feature_bit(virtio::kFeatureEventIdx) | feature_bit(VIRTIO_CONSOLE_F_SIZE) |
           feature_bit(VIRTIO_CONSOLE_F_EMERG_WRITE) |
           (offers_multiport_ ? feature_bit(VIRTIO_CONSOLE_F_MULTIPORT) : 0);
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
    // §5.3.6.1: a write to emerg_wr outputs its low byte (on port 0), even before DRIVER_OK.
    if (offset == offsetof(virtio_console_config, emerg_wr) && !data.empty()) {
        std::lock_guard lock(mu_);
        if (ports_[0].output) ports_[0].output(data.first(1));
    }
}

void VirtioConsole::activate(const GuestMemory& memory, std::uint64_t features, std::vector<virtio::QueueConfig> queues,
                             std::shared_ptr<virtio::VirtioInterrupt> interrupt) {
    Signal s;
    const bool multiport = offers_multiport_ && (features & virtio::feature_bit(VIRTIO_CONSOLE_F_MULTIPORT));
    // Without MULTIPORT the driver has port 0 only (ports 1.. keep their input for a later driver).
    const std::size_t live_ports = multiport ? ports_.size() : 1;
    {
        std::lock_guard lock(mu_);
        multiport_ = multiport;
        queues.resize(multiport ? 2 * ports_.size() + 2 : 2);
        for (std::size_t p = 0; p < live_ports; ++p) {
            ports_[p].rx = virtio::VirtQueue(memory, queues[rx_queue(p)], options_.queue_size, features);
            ports_[p].tx = virtio::VirtQueue(memory, queues[rx_queue(p) + 1u], options_.queue_size, features);
        }
        if (multiport) {
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
    if (multiport) queue_notify(kControlTransmitQueue);
    for (std::size_t p = 0; p < live_ports; ++p) {
        queue_notify(static_cast<std::uint16_t>(rx_queue(p) + 1));
        queue_notify(rx_queue(p));
    }
}

void VirtioConsole::reset() {
    std::vector<std::size_t> were_open;
    {
        std::lock_guard lock(mu_);
        active_ = false;
        for (std::size_t p = 0; p < ports_.size(); ++p) {
            Port& port = ports_[p];
            if (port.guest_open) were_open.push_back(p);
            port.rx = virtio::VirtQueue{};
            port.tx = virtio::VirtQueue{};
            port.guest_open = port.ready = false;
            // Pending input is the backend's, not the driver's: it survives a reset.
        }
        control_rx_ = virtio::VirtQueue{};
        control_tx_ = virtio::VirtQueue{};
        multiport_ = false;
        control_out_.clear();
        control_broken_.clear();
        interrupt_.reset();
    }
    for (std::size_t p : were_open)
        if (ports_[p].on_guest_open) ports_[p].on_guest_open(false);
}

void VirtioConsole::run(std::function<void()> work) {
    if (executor_)
        executor_(std::move(work));
    else
        work();
}

void VirtioConsole::queue_notify(std::uint16_t queue) {
    if (queue == kControlTransmitQueue || queue == kControlReceiveQueue) {  // (rx: buffers for held messages)
        run([this] { process_control(); });
        return;
    }
    const std::size_t port = queue < 2 ? 0 : queue / 2 - 1;  // queues 2n+2, 2n+3: port n
    if (port >= ports_.size()) return;
    if (queue % 2 == 0)
        run([this, port] { process_rx(port); });
    else
        run([this, port] { process_tx(port); });
}

std::size_t VirtioConsole::feed_input(std::size_t port, std::span<const std::uint8_t> data) {
    if (port >= ports_.size()) throw std::out_of_range("virtio-console: no port " + std::to_string(port));
    std::size_t accepted;
    {
        std::lock_guard lock(mu_);
        Port& p = ports_[port];
        const std::size_t room = options_.max_pending_input - std::min(options_.max_pending_input, p.pending.size());
        accepted = std::min(room, data.size());
        p.pending.insert(p.pending.end(), data.begin(), data.begin() + static_cast<std::ptrdiff_t>(accepted));
        if (accepted < data.size()) {
            if (p.dropped == 0)
                log_->warn("port {}: input buffer full ({} bytes): dropping input", port, options_.max_pending_input);
            p.dropped += data.size() - accepted;
        }
    }
    run([this, port] { process_rx(port); });
    return accepted;
}

void VirtioConsole::set_host_connected(std::size_t port, bool connected) {
    if (port >= ports_.size()) throw std::out_of_range("virtio-console: no port " + std::to_string(port));
    {
        std::lock_guard lock(mu_);
        Port& p = ports_[port];
        if (p.host_connected == connected) return;
        p.host_connected = connected;
        if (!active_ || !multiport_ || !p.ready) return;  // told at PORT_READY
        queue_control_locked(static_cast<std::uint32_t>(port), VIRTIO_CONSOLE_PORT_OPEN, connected ? 1 : 0);
    }
    run([this] { process_control(); });  // delivers it
}

void VirtioConsole::resize(std::uint16_t cols, std::uint16_t rows) {
    std::shared_ptr<virtio::VirtioInterrupt> irq;
    bool by_control = false;
    {
        std::lock_guard lock(mu_);
        if (config_.cols == cols && config_.rows == rows) return;
        config_.cols = cols;
        config_.rows = rows;
        // A MULTIPORT driver reads no size from the config space: a console port's size comes as
        // a RESIZE control message (rows, then cols), as Linux's virtio_console takes it.
        by_control = active_ && multiport_ && ports_[0].is_console() && ports_[0].ready;
        if (by_control) {
            const std::uint16_t size[2] = {rows, cols};
            queue_control_locked(0, VIRTIO_CONSOLE_RESIZE, 0, {reinterpret_cast<const char*>(size), sizeof size});
        } else if (active_) {
            irq = interrupt_;
        }
    }
    if (by_control) run([this] { process_control(); });
    if (irq) irq->notify_config();
}

std::size_t VirtioConsole::pending_input(std::size_t port) const {
    std::lock_guard lock(mu_);
    return ports_.at(port).pending.size();
}

std::uint64_t VirtioConsole::dropped_input(std::size_t port) const {
    std::lock_guard lock(mu_);
    return ports_.at(port).dropped;
}

bool VirtioConsole::guest_open(std::size_t port) const {
    std::lock_guard lock(mu_);
    return ports_.at(port).guest_open;
}

void VirtioConsole::deliver_locked(std::size_t port, Signal& s) {
    Port& p = ports_[port];
    bool used = false;
    while (!p.pending.empty() && input_open_locked(p)) {
        auto chain = p.rx.pop();
        if (!chain) break;
        std::uint32_t n = 0;
        if (chain->ok()) {
            // Copy out of the deque in contiguous pieces, at most what the buffers hold.
            const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(chain->writable_bytes(), p.pending.size()));
            std::vector<std::uint8_t> bytes(p.pending.begin(), p.pending.begin() + static_cast<std::ptrdiff_t>(want));
            n = static_cast<std::uint32_t>(chain->write(0, bytes));
            p.pending.erase(p.pending.begin(), p.pending.begin() + n);
        }
        p.rx.add_used(chain->head(), n);
        used = true;
    }
    if (used && p.rx.needs_notification()) s.queues |= std::uint64_t{1} << rx_queue(port);
}

void VirtioConsole::process_rx(std::size_t port) {
    Signal s;
    {
        std::lock_guard lock(mu_);
        if (!active_) return;
        deliver_locked(port, s);
        check_broken_locked(s);
    }
    send(s);
}

void VirtioConsole::process_tx(std::size_t port) {
    Signal s;
    {
        std::lock_guard lock(mu_);
        if (!active_) return;
        Port& p = ports_[port];
        bool used = false;
        while (auto chain = p.tx.pop()) {
            if (p.output)
                for (const auto& b : chain->readable()) p.output(b.host);
            // The device writes nothing into a transmit buffer: used length 0 (§5.3.6.2).
            p.tx.add_used(chain->head(), 0);
            used = true;
        }
        if (used && p.tx.needs_notification()) s.queues |= std::uint64_t{1} << (rx_queue(port) + 1);
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
        if (used && control_tx_.needs_notification()) s.queues |= std::uint64_t{1} << kControlTransmitQueue;
        if (deliver_control_locked()) s.queues |= std::uint64_t{1} << kControlReceiveQueue;
        for (std::size_t p = 0; p < ports_.size(); ++p) deliver_locked(p, s);  // the guest may have just opened one
        check_broken_locked(s);
    }
    send(s);
}

void VirtioConsole::control_message_locked(const virtio_console_control& msg, Signal& s) {
    if (msg.event == VIRTIO_CONSOLE_DEVICE_READY) {
        if (msg.value == 1)
            for (std::size_t p = 0; p < ports_.size(); ++p) queue_control_locked(static_cast<std::uint32_t>(p), VIRTIO_CONSOLE_PORT_ADD, 0);
        else
            log_->warn("the driver could not set up the device (DEVICE_READY 0)");
        return;
    }
    if (msg.id >= ports_.size()) {
        if (!warned_control_) {
            warned_control_ = true;
            log_->warn("control message {} for port {}: this device has {} port(s); ignored", msg.event, msg.id, ports_.size());
        }
        return;
    }
    Port& port = ports_[msg.id];
    switch (msg.event) {
        case VIRTIO_CONSOLE_PORT_READY:
            if (msg.value != 1) {
                log_->warn("the driver could not add port {} (PORT_READY 0)", msg.id);
                return;
            }
            if (port.is_console())  // the driver makes it a console (hvc)
                queue_control_locked(msg.id, VIRTIO_CONSOLE_CONSOLE_PORT, 1);
            else  // with its NUL, as QEMU sends it (Linux copies what fits and terminates it itself)
                queue_control_locked(msg.id, VIRTIO_CONSOLE_PORT_NAME, 1, {port.name.c_str(), port.name.size() + 1});
            if (port.host_connected) queue_control_locked(msg.id, VIRTIO_CONSOLE_PORT_OPEN, 1);  // closed: the port's default
            port.ready = true;
            return;
        case VIRTIO_CONSOLE_PORT_OPEN:
            if (port.guest_open == (msg.value != 0)) return;
            port.guest_open = msg.value != 0;
            log_->info("port \"{}\" {} by the guest", port.name, port.guest_open ? "opened" : "closed");
            s.guest_open.emplace_back(msg.id, port.guest_open);
            return;
        default:
            return;  // nothing else is the driver's to send (§5.3.6.2.1)
    }
}

void VirtioConsole::queue_control_locked(std::uint32_t port, std::uint16_t event, std::uint16_t value, std::string_view payload) {
    const virtio_console_control msg{port, event, value};
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
    auto first_broken = [&](const virtio::VirtQueue& q) {
        if (reason.empty() && q.broken()) reason = q.broken_reason();
    };
    for (const Port& p : ports_) {
        first_broken(p.rx);
        first_broken(p.tx);
    }
    first_broken(control_rx_);
    first_broken(control_tx_);
    if (reason.empty()) reason = control_broken_;
    if (reason.empty()) return;
    broken_reported_ = s.broken = true;
    log_->warn("device broken: {}", reason);
}

void VirtioConsole::send(const Signal& s) const {
    for (auto [port, open] : s.guest_open)
        if (ports_[port].on_guest_open) ports_[port].on_guest_open(open);
    if (!s.irq) return;
    if (s.broken) s.irq->needs_reset();
    for (std::uint64_t q = s.queues; q; q &= q - 1) s.irq->notify_queue(static_cast<std::uint16_t>(__builtin_ctzll(q)));
}

}  // namespace vmm::virtio_console
