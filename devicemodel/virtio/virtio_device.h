// VirtioDevice: the seam between a virtio transport (devicemodel/virtio/pci_transport, the
// modern virtio-pci transport) and a device type (virtio-blk, virtio-net, virtio-console).
// Same split as Firecracker's VirtioDevice trait and cloud-hypervisor's virtio-devices crate:
// the transport owns the registers (status, feature windows, queue addresses, MSI-X vectors,
// ISR); the device owns its configuration space and serves its queues.
//
// A device never knows about PCI or KVM. It sees guest memory, the queue layouts the driver
// chose, and a VirtioInterrupt through which it signals used buffers, config changes and
// NEEDS_RESET.
//
// Threads: read_config/write_config come from vCPU threads. queue_notify comes from whichever
// thread observed the driver's notification: a vCPU thread (trapped notify write) or the
// anchor's I/O thread (ioeventfd). activate/reset come from a vCPU thread (the driver writing
// the status register). Implementations guard their own state.
#pragma once

#include "devicemodel/bus/guest_memory.h"

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace vmm::virtio {

// virtio 1.2 §5: device IDs.
enum class DeviceType : std::uint32_t { Net = 1, Block = 2, Console = 3 };

// virtio 1.2 §2.1: device status bits.
inline constexpr std::uint8_t kStatusAcknowledge = 1;
inline constexpr std::uint8_t kStatusDriver = 2;
inline constexpr std::uint8_t kStatusDriverOk = 4;
inline constexpr std::uint8_t kStatusFeaturesOk = 8;
inline constexpr std::uint8_t kStatusNeedsReset = 64;
inline constexpr std::uint8_t kStatusFailed = 128;

// virtio 1.2 §6: reserved feature bits every device type may offer.
inline constexpr unsigned kFeatureIndirectDesc = 28;
inline constexpr unsigned kFeatureEventIdx = 29;
inline constexpr unsigned kFeatureVersion1 = 32;
inline constexpr unsigned kFeatureAccessPlatform = 33;

constexpr std::uint64_t feature_bit(unsigned bit) { return std::uint64_t{1} << bit; }

// One queue as the driver configured it through the transport (virtio 1.2 §4.1.4.3).
struct QueueConfig {
    std::uint16_t size = 0;  // negotiated queue size (power of two, <= max_queue_size)
    std::uint64_t desc = 0, avail = 0, used = 0;  // guest-physical addresses of the three areas
    bool enabled = false;                          // queue_enable was written 1
};

// How a device signals the driver. The transport implements it (MSI-X vector per queue and for
// config changes, or INTx + ISR status); tests implement it with counters.
class VirtioInterrupt {
public:
    virtual ~VirtioInterrupt() = default;
    // Used buffers were added to queue `queue` (the device already applied event-idx /
    // VIRTQ_AVAIL_F_NO_INTERRUPT suppression when it decided to call this).
    virtual void notify_queue(std::uint16_t queue) = 0;
    // The device configuration space changed (virtio 1.2 §2.5.1).
    virtual void notify_config() = 0;
    // The device hit an error it cannot recover from without a reset (a broken queue): the
    // transport sets DEVICE_NEEDS_RESET in device_status and sends a config-change interrupt.
    virtual void needs_reset() = 0;
};

class VirtioDevice {
public:
    virtual ~VirtioDevice() = default;

    virtual DeviceType device_type() const = 0;
    // Offered feature bits (device-specific | VERSION_1 | ...). Stable for the device's life.
    virtual std::uint64_t device_features() const = 0;
    virtual std::uint16_t num_queues() const = 0;
    virtual std::uint16_t max_queue_size() const = 0;

    // Device configuration space (virtio 1.2 §4.1.4.6); offsets past its end read as zero and
    // ignore writes.
    virtual void read_config(std::uint64_t offset, std::span<std::uint8_t> data) = 0;
    virtual void write_config(std::uint64_t offset, std::span<const std::uint8_t> data) = 0;

    // The driver set DRIVER_OK: start serving. `features` is what the driver accepted (a subset
    // of device_features()); `queues` has num_queues() entries, disabled ones with enabled=false.
    // Invalid queue layouts (size not a power of two, areas outside guest memory) are the
    // device's to reject: it calls interrupt->needs_reset() and serves nothing, never throws.
    virtual void activate(const GuestMemory& memory, std::uint64_t features, std::vector<QueueConfig> queues,
                          std::shared_ptr<VirtioInterrupt> interrupt) = 0;
    // The driver made buffers available on `queue`.
    virtual void queue_notify(std::uint16_t queue) = 0;
    // An eventfd the device's own thread waits on for `queue`'s notifications, or -1 (the
    // default: notifications come through queue_notify only). Where there is one, the VMM
    // points the queue's ioeventfd straight at it, and a guest's notify wakes the device thread
    // without a relay through another thread (which costs a wake-up per kick). A signal on it
    // means exactly what queue_notify(queue) means; the device ignores it while not activated.
    virtual int queue_kick_fd(std::uint16_t /*queue*/) const { return -1; }
    // The driver wrote 0 to device_status: stop serving, drop queue state, finish or cancel
    // in-flight requests (never touch guest memory after this returns), back to pre-activate.
    virtual void reset() = 0;
};

}  // namespace vmm::virtio
