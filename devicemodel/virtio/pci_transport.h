// VirtioPciTransport: the modern (non-transitional) virtio-pci transport, virtio 1.2 §4.1, as a
// PciDevice wrapping one VirtioDevice.
//
// Identity: 1af4:(1040 + device type), revision 1, subsystem 1af4:1100, class per type
// (net 0x020000, block 0x010000, console 0x078000), INTA#.
//
// BAR0 (64-bit by default, non-prefetchable: the ISR is read-to-clear), sized to a power of two:
//   0x0000 common configuration (virtio_pci_common_cfg, 0x38 bytes)
//   0x1000 ISR status (1 byte, read-to-clear; deasserts INTx)
//   0x2000 device configuration (0x1000 bytes, VirtioDevice::read_config/write_config)
//   0x3000 notifications: queue q at 0x3000 + 4*q (queue_notify_off = q, multiplier 4)
//   0x4000 MSI-X table (num_queues + 1 vectors), then the PBA on the next 4 KiB page
// Capabilities: COMMON, ISR, DEVICE, NOTIFY, PCI_CFG (vendor-specific, §4.1.4) and MSI-X.
//
// Registers follow §4.1.4.3: accesses must use the field's width (64-bit queue addresses as
// one qword or two dwords); others read 0 and writes are dropped. Writing 0 to device_status
// resets the device. FEATURES_OK is refused (reads back clear) if the driver accepted a feature
// not offered or did not accept VERSION_1; DRIVER_OK without FEATURES_OK is refused. On
// DRIVER_OK every enabled queue must have a power-of-two size <= max_queue_size, otherwise the
// transport sets DEVICE_NEEDS_RESET and sends a config interrupt instead of activating.
// Queue registers are read-only once the queue is enabled or DRIVER_OK is set; queue_select
// past num_queues reads queue_size 0 and ignores writes.
//
// Interrupts: with MSI-X enabled a queue/config interrupt goes to the vector the driver chose
// (none if VIRTIO_MSI_NO_VECTOR) through pci::MsixTable and the MsiVectorSink; with MSI-X
// disabled it sets an ISR bit and raises INTx (level, until the ISR is read).
//
// Anchor wiring:
//     auto t = VirtioPciTransport::create("blk0", blk, memory, std::make_shared<KvmMsiSink>(...));
//     t->set_notify_listener([&](auto& now) { /* re-register ioeventfds: (gpa, len) -> queue */ });
//     pci.add_device(t);
//     // ioeventfd of queue q fired (I/O thread):  t->handle_notify(q);
// notify_addresses() lists the notify registers (Linux writes the queue index with iowrite16),
// each with length 0 (a write of any width, as the trapped path takes too), while BAR0 is mapped; the listener gets the new list (empty = unmapped) each time
// the bus maps, moves or unmaps BAR0, before the guest can use the new address.
//
// Threads: PCI config accesses come from PciRootBus (serialized); BAR0 accesses from vCPU
// threads; handle_notify from the anchor's I/O thread; the VirtioInterrupt from device threads.
// Two locks: control_ serializes device_status transitions and is held across
// VirtioDevice::activate/reset; regs_ guards the registers and is never held across a call
// into the VirtioDevice (which may call back into its VirtioInterrupt). A status write through
// the VIRTIO_PCI_CAP_PCI_CFG window runs activate/reset under PciRootBus's config lock.
#pragma once

#include "common/log.h"
#include "devicemodel/bus/guest_memory.h"
#include "devicemodel/pci/msix.h"
#include "devicemodel/pci/pci_config_space.h"
#include "devicemodel/pci/pci_device.h"
#include "devicemodel/virtio/virtio_device.h"


#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace vmm::virtio {

// One queue's notify register: a write of `len` bytes at guest-physical `gpa` notifies `queue`.
struct NotifyAddress {
    std::uint64_t gpa = 0;
    std::uint32_t len = 0;
    std::uint16_t queue = 0;
    bool operator==(const NotifyAddress&) const = default;
};

struct VirtioPciOptions {
    pci::PciBarKind bar_kind = pci::PciBarKind::Mem64;  // or Mem32
};

class VirtioPciTransport : public pci::PciDevice, public std::enable_shared_from_this<VirtioPciTransport> {
public:
    static constexpr std::uint16_t kVendorId = 0x1af4;
    static constexpr std::uint16_t kDeviceIdBase = 0x1040;
    static constexpr std::uint16_t kSubsystemId = 0x1100;
    static constexpr unsigned kBar = 0;
    static constexpr std::uint64_t kCommonOffset = 0x0000, kCommonLength = 0x38;
    static constexpr std::uint64_t kIsrOffset = 0x1000, kIsrLength = 1;
    static constexpr std::uint64_t kDeviceOffset = 0x2000, kDeviceLength = 0x1000;
    static constexpr std::uint64_t kNotifyOffset = 0x3000, kNotifyMultiplier = 4;
    static constexpr std::uint64_t kMsixTableOffset = 0x4000;
    static constexpr std::uint16_t kMaxQueues = 1024;  // the notify region is one 4 KiB page
    // The length an ioeventfd on a notify register matches: 0, any width. KVM then also puts it on
    // its fast MMIO bus, where on Intel (VMX) a notify's exit signals the eventfd without
    // fetching and decoding the guest's instruction (QEMU and cloud-hypervisor register theirs so).
    static constexpr std::uint32_t kNotifyEventfdLength = 0;

    // Throws vmm::Error if the device has more than kMaxQueues queues or msi is null.
    static std::shared_ptr<VirtioPciTransport> create(std::string name, std::shared_ptr<VirtioDevice> device,
                                                      const GuestMemory& memory,
                                                      std::shared_ptr<pci::MsiVectorSink> msi,
                                                      VirtioPciOptions options = {});

    // PciDevice.
    std::string name() const override { return name_; }
    void config_read(std::uint32_t offset, std::span<std::uint8_t> data) override;
    void config_write(std::uint32_t offset, std::span<const std::uint8_t> data) override;
    std::optional<pci::PciBar> bar(unsigned index) const override;
    std::shared_ptr<BusDevice> bar_device(unsigned index) override;
    void bar_mapped(unsigned index, std::optional<std::uint64_t> gpa) override;
    std::uint8_t interrupt_pin() const override { return 1; }
    void attach_intx(std::shared_ptr<InterruptLine> line) override;

    // Notifications through KVM ioeventfd (see the header comment).
    using NotifyListener = std::function<void(const std::vector<NotifyAddress>& now)>;
    void set_notify_listener(NotifyListener listener);
    std::vector<NotifyAddress> notify_addresses() const;
    // The driver notified `queue` (ioeventfd fired, or a trapped write): forwarded to the device
    // if it is live and the queue enabled.
    void handle_notify(std::uint16_t queue);
    // Notifications that came as a trapped BAR0 write (not through an ioeventfd): where the VMM
    // keeps ioeventfds on every notify address, a guest's kick should never be one.
    std::uint64_t trapped_notifies() const noexcept { return trapped_notifies_.load(std::memory_order_relaxed); }

    std::uint8_t device_status() const;
    std::uint64_t bar_size() const { return bar_size_; }

    // BAR0 accesses (what bar_device(0) forwards to; also reached through VIRTIO_PCI_CAP_PCI_CFG).
    void bar_read(std::uint64_t offset, std::span<std::uint8_t> data);
    void bar_write(std::uint64_t offset, std::span<const std::uint8_t> data);

    struct Token {};  // create() only
    VirtioPciTransport(Token, std::string name, std::shared_ptr<VirtioDevice> device, const GuestMemory& memory,
                       std::shared_ptr<pci::MsiVectorSink> msi, VirtioPciOptions options);

private:
    struct Queue {
        std::uint16_t size = 0;
        std::uint16_t msix_vector = 0xffff;
        bool enabled = false;
        std::uint64_t desc = 0, driver = 0, device = 0;
    };
    class Interrupt;

    void build_config_space();
    std::uint64_t common_read_locked(std::uint64_t offset, std::size_t len);
    void common_write_locked(std::uint64_t offset, std::size_t len, std::uint64_t value);
    void write_status(std::uint8_t value);
    void reset_registers_locked();
    void update_intx_locked();
    void signal_config_locked();
    void pci_cfg_access(bool is_write);

    // Called by Interrupt (the device's VirtioInterrupt), ignored for stale epochs.
    void signal_queue(std::uint64_t epoch, std::uint16_t queue);
    void signal_config(std::uint64_t epoch);
    void signal_needs_reset(std::uint64_t epoch);

    const std::string name_;
    std::atomic<std::uint64_t> trapped_notifies_{0};
    const std::shared_ptr<VirtioDevice> device_;
    const GuestMemory& memory_;
    const std::uint16_t num_queues_;
    const std::uint16_t max_queue_size_;
    const std::uint64_t device_features_;
    const pci::PciBarKind bar_kind_;
    std::shared_ptr<spdlog::logger> log_;
    pci::MsixTable msix_;
    std::uint64_t pba_offset_ = 0;
    std::uint64_t bar_size_ = 0;
    std::uint8_t pci_cfg_cap_ = 0;
    std::shared_ptr<BusDevice> bar_device_;

    std::mutex control_;
    mutable std::mutex regs_;
    pci::PciConfigSpace config_;
    std::shared_ptr<InterruptLine> intx_;
    bool intx_level_ = false;
    std::uint32_t device_feature_select_ = 0, driver_feature_select_ = 0;
    std::uint64_t driver_features_ = 0;
    std::uint16_t msix_config_ = 0xffff;
    std::uint8_t status_ = 0;
    std::uint8_t config_generation_ = 0;
    std::uint16_t queue_select_ = 0;
    std::vector<Queue> queues_;
    std::uint8_t isr_ = 0;
    bool live_ = false;        // activated and not reset since
    std::uint64_t epoch_ = 0;  // bumped on every reset: interrupts of older activations are dropped
    std::optional<std::uint64_t> bar_base_;
    NotifyListener notify_listener_;
};

}  // namespace vmm::virtio
