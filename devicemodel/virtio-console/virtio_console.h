// VirtioConsole: the virtio console device (virtio 1.2 §5.3), port 0 only (no MULTIPORT).
// Queue 0 (receiveq) carries input to the guest, queue 1 (transmitq) its output.
//
// The backend is two plain hooks so the anchor can connect a pty or a unix socket: an Output
// callback receives whatever the guest transmits, and feed_input() hands over what the backend
// read. Input that arrives while the guest has no receive buffers is kept (up to
// max_pending_input bytes; the rest is dropped and counted) and delivered when buffers come.
// Features: VERSION_1, INDIRECT_DESC, EVENT_IDX, CONSOLE_F_SIZE (resize()), CONSOLE_F_EMERG_WRITE.
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
#include <span>
#include <string>

namespace spdlog {
class logger;
}

namespace vmm::virtio_console {

struct VirtioConsoleOptions {
    std::string name = "console0";
    std::uint16_t queue_size = 256;
    std::size_t max_pending_input = 64 * 1024;
    std::uint16_t cols = 80, rows = 25;
};

class VirtioConsole final : public virtio::VirtioDevice {
public:
    using Output = std::function<void(std::span<const std::uint8_t>)>;
    using Executor = std::function<void(std::function<void()>)>;

    static constexpr std::uint16_t kReceiveQueue = 0;
    static constexpr std::uint16_t kTransmitQueue = 1;

    explicit VirtioConsole(Output output, VirtioConsoleOptions options = {}, Executor executor = {});

    virtio::DeviceType device_type() const override { return virtio::DeviceType::Console; }
    std::uint64_t device_features() const override;
    std::uint16_t num_queues() const override { return 2; }
    std::uint16_t max_queue_size() const override { return options_.queue_size; }
    void read_config(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write_config(std::uint64_t offset, std::span<const std::uint8_t> data) override;
    void activate(const GuestMemory& memory, std::uint64_t features, std::vector<virtio::QueueConfig> queues,
                  std::shared_ptr<virtio::VirtioInterrupt> interrupt) override;
    void queue_notify(std::uint16_t queue) override;
    void reset() override;

    // Backend input for the guest. Returns the bytes accepted: all of them unless the pending
    // buffer is full (the rest is dropped). Delivery happens now if the guest has RX buffers.
    std::size_t feed_input(std::span<const std::uint8_t> data);
    // Terminal size (CONSOLE_F_SIZE): updates the config space and sends a config interrupt.
    void resize(std::uint16_t cols, std::uint16_t rows);

    std::size_t pending_input() const;
    std::uint64_t dropped_input() const;

private:
    void run(std::function<void()> work);
    void process_rx();
    void process_tx();
    // Delivers pending input into RX buffers; returns whether to notify. mu_ held.
    bool deliver_locked();
    struct Signal {
        bool rx = false, tx = false, broken = false;
        std::shared_ptr<virtio::VirtioInterrupt> irq;
    };
    void check_broken_locked(Signal& s);
    static void send(const Signal& s);

    Output output_;
    VirtioConsoleOptions options_;
    Executor executor_;
    std::shared_ptr<spdlog::logger> log_;

    mutable std::mutex mu_;
    virtio_console_config config_{};
    bool active_ = false, broken_reported_ = false;
    virtio::VirtQueue rx_, tx_;
    std::shared_ptr<virtio::VirtioInterrupt> interrupt_;
    std::deque<std::uint8_t> pending_;
    std::uint64_t dropped_ = 0;
};

}  // namespace vmm::virtio_console
