// VirtioConsole: the virtio console device (virtio 1.2 §5.3): port 0, and with MULTIPORT more.
// Queue 0 (receiveq) carries input to the guest, queue 1 (transmitq) its output.
//
// Without a port name port 0 is the guest's console (hvc0), as a plain virtio console is. With
// one (VirtioConsoleOptions::port_name, e.g. "org.qemu.guest_agent.0") the device offers
// VIRTIO_CONSOLE_F_MULTIPORT, and port 0 becomes a named port, as QEMU's virtserialport: queues
// 2 and 3 are the control receiveq and transmitq. More named ports (more_ports) make it QEMU's
// virtio-serial with several virtserialports: port n >= 1 has queues 2n+2 (receive) and 2n+3
// (transmit), and max_nr_ports says how many there are. Named ports after an unnamed port 0 make
// port 0 the console port among them (QEMU's virtconsole beside virtserialports): a MULTIPORT
// driver is told so (CONSOLE_PORT instead of PORT_NAME) and makes it its console (hvc), and
// resize() reaches it as a RESIZE control message. The driver says DEVICE_READY, the
// device announces each port (PORT_ADD), and once the driver's PORT_READY for a port comes, its
// name (PORT_NAME) and whether its host side is open (PORT_OPEN: set_host_connected(), as QEMU
// follows its chardev's connection; Linux then blocks the guest's writes and reads EOF while it
// is closed). The guest then finds it as /dev/virtio-ports/<name>. A port's input is held until
// the guest opens it (its PORT_OPEN 1), since Linux drops what arrives on a port nobody has
// open. A driver that does not take MULTIPORT gets port 0 as a console, as before (the other
// ports' input waits). A control message shorter than its header, or one for a port the device
// does not have, is ignored with a warning; a control receive buffer too small for the device's
// message breaks the device (NEEDS_RESET).
//
// Each port's backend is two plain hooks so the anchor can connect a pty or a unix socket: an
// Output callback receives whatever the guest transmits on it, and feed_input() hands over what
// the backend read. Input that arrives while the guest has no receive buffers is kept (up to
// max_pending_input bytes a port; the rest is dropped and counted) and delivered when buffers
// come. Features: VERSION_1, INDIRECT_DESC, EVENT_IDX, CONSOLE_F_SIZE (resize()),
// CONSOLE_F_EMERG_WRITE (to port 0's output).
//
// Threads: read_config/write_config/activate/reset from vCPU threads; queue_notify from a vCPU or
// the I/O thread; feed_input/resize from the anchor's I/O thread. Queue work runs on the
// Executor given at construction (the anchor posts it to its io_context; without one it runs
// inline on the calling thread, as in tests); the executor must run or drop its work before the
// device is destroyed. One mutex guards the state; Output is called with it held (so output
// stays in order) and must not call back into the device; VirtioInterrupt is called without it.
#pragma once

#include "devicemodel/virtio/virtio_device.h"
#include "devicemodel/virtio/virtqueue.h"

#include <linux/virtio_console.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace spdlog {
class logger;
}

namespace vmm::virtio_console {

// A named port after port 0 (VirtioConsoleOptions::more_ports): as port 0's own settings.
struct VirtioConsolePortOptions {
    std::string name;  // required: 1..kMaxPortName bytes
    std::function<void(std::span<const std::uint8_t>)> output;
    std::function<void(bool open)> on_guest_open;
    bool host_connected = true;
};

struct VirtioConsoleOptions {
    std::string name = "console0";
    std::uint16_t queue_size = 256;
    std::size_t max_pending_input = 64 * 1024;
    std::uint16_t cols = 80, rows = 25;
    // Non-empty: port 0 is a named port (MULTIPORT), not the console. At most kMaxPortName bytes.
    std::string port_name;
    // A named port's guest side opened (true) or closed (false): the driver's PORT_OPEN, and a
    // device reset while it was open (false), as QEMU's VSERPORT_CHANGE. Called on the thread
    // doing the queue work or the reset, without the device's mutex; changes only.
    std::function<void(bool open)> on_guest_open;
    // A named port's host side at the start (set_host_connected() changes it): a pty is always
    // there; a unix socket only while a client is connected.
    bool host_connected = true;
    // Ports 1, 2, ... (each named), at most kMaxPorts in all. With port_name empty, port 0 is then
    // the console port beside them (QEMU's virtconsole with virtserialports on one virtio-serial).
    std::vector<VirtioConsolePortOptions> more_ports;
};

inline constexpr std::size_t kMaxPortName = 127;
inline constexpr std::size_t kMaxPorts = 31;  // QEMU's virtio-serial max_ports default

class VirtioConsole final : public virtio::VirtioDevice {
public:
    using Output = std::function<void(std::span<const std::uint8_t>)>;
    using Executor = std::function<void(std::function<void()>)>;

    static constexpr std::uint16_t kReceiveQueue = 0;
    static constexpr std::uint16_t kTransmitQueue = 1;
    static constexpr std::uint16_t kControlReceiveQueue = 2;   // MULTIPORT only
    static constexpr std::uint16_t kControlTransmitQueue = 3;  // MULTIPORT only

    explicit VirtioConsole(Output output, VirtioConsoleOptions options = {}, Executor executor = {});

    virtio::DeviceType device_type() const override { return virtio::DeviceType::Console; }
    std::uint64_t device_features() const override;
    std::uint16_t num_queues() const override {
        return static_cast<std::uint16_t>(offers_multiport_ ? 2 * ports_.size() + 2 : 2);
    }
    std::uint16_t max_queue_size() const override { return options_.queue_size; }
    void read_config(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write_config(std::uint64_t offset, std::span<const std::uint8_t> data) override;
    void activate(const GuestMemory& memory, std::uint64_t features, std::vector<virtio::QueueConfig> queues,
                  std::shared_ptr<virtio::VirtioInterrupt> interrupt) override;
    void queue_notify(std::uint16_t queue) override;
    void reset() override;

    // Backend input for the guest on `port`. Returns the bytes accepted: all of them unless the
    // port's pending buffer is full (the rest is dropped). Delivery happens now if the guest has
    // RX buffers on it (and, a named port, has it open).
    std::size_t feed_input(std::span<const std::uint8_t> data) { return feed_input(0, data); }
    std::size_t feed_input(std::size_t port, std::span<const std::uint8_t> data);
    // Terminal size (CONSOLE_F_SIZE): updates the config space and sends a config interrupt.
    void resize(std::uint16_t cols, std::uint16_t rows);
    // A named port's host side came or went (the socket's client): PORT_OPEN to the driver once
    // it has the port (its PORT_READY). Any thread.
    void set_host_connected(bool connected) { set_host_connected(0, connected); }
    void set_host_connected(std::size_t port, bool connected);

    std::size_t ports() const noexcept { return ports_.size(); }
    std::size_t pending_input(std::size_t port = 0) const;
    std::uint64_t dropped_input(std::size_t port = 0) const;
    // MULTIPORT: whether the guest has the port open (its last PORT_OPEN for it).
    bool guest_open(std::size_t port = 0) const;

private:
    struct Port {
        std::string name;  // empty: port 0 as the console
        // The console port (VIRTIO_CONSOLE_CONSOLE_PORT, the driver's hvc): the unnamed one; only
        // port 0 can be (the constructor refuses other ports without a name).
        bool is_console() const noexcept { return name.empty(); }
        Output output;
        std::function<void(bool open)> on_guest_open;
        virtio::VirtQueue rx, tx;
        std::deque<std::uint8_t> pending;  // input the guest has not taken yet
        std::uint64_t dropped = 0;
        bool guest_open = false, ready = false;  // the driver's PORT_OPEN, its PORT_READY
        bool host_connected = true;              // the backend's side (set_host_connected())
    };
    struct Signal {
        std::uint64_t queues = 0;  // bit q: notify queue q (at most 2 * kMaxPorts + 2 = 64 queues)
        bool broken = false;
        std::vector<std::pair<std::size_t, bool>> guest_open;  // (port, opened) changes: on_guest_open
        std::shared_ptr<virtio::VirtioInterrupt> irq;
    };
    static std::uint16_t rx_queue(std::size_t port) { return static_cast<std::uint16_t>(port == 0 ? 0 : 2 * port + 2); }
    void run(std::function<void()> work);
    void process_rx(std::size_t port);
    void process_tx(std::size_t port);
    // The control queues: the driver's messages, then the device's waiting ones into its buffers.
    void process_control();
    // Handles one control message from the driver. mu_ held.
    void control_message_locked(const virtio_console_control& msg, Signal& s);
    // Queues a control message for the driver (header, then `payload`). mu_ held.
    void queue_control_locked(std::uint32_t port, std::uint16_t event, std::uint16_t value, std::string_view payload = {});
    // Delivers queued control messages into control RX buffers; returns whether to notify. mu_ held.
    bool deliver_control_locked();
    // Whether a port's input may go to the guest now (a named port: only while the guest has it open).
    bool input_open_locked(const Port& p) const { return !multiport_ || p.guest_open; }
    // Delivers the port's pending input into its RX buffers; sets its queue in s when the driver
    // wants an interrupt. mu_ held.
    void deliver_locked(std::size_t port, Signal& s);
    void check_broken_locked(Signal& s);
    void send(const Signal& s) const;

    VirtioConsoleOptions options_;
    Executor executor_;
    std::shared_ptr<spdlog::logger> log_;

    mutable std::mutex mu_;
    virtio_console_config config_{};
    bool active_ = false, broken_reported_ = false;
    std::vector<Port> ports_;  // fixed at construction
    // MULTIPORT (negotiated): control queues, messages waiting for control RX buffers, and a
    // device-level fault (a control buffer too small).
    bool multiport_ = false, warned_control_ = false;
    bool offers_multiport_ = false;  // a named port, or more than one port
    virtio::VirtQueue control_rx_, control_tx_;
    std::deque<std::vector<std::uint8_t>> control_out_;
    std::string control_broken_;
    std::shared_ptr<virtio::VirtioInterrupt> interrupt_;
};

}  // namespace vmm::virtio_console
