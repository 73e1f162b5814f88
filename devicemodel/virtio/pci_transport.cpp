#include "devicemodel/virtio/pci_transport.h"

#include "common/error.h"
#include "common/log.h"

#include <linux/pci_regs.h>
#include <linux/virtio_pci.h>

namespace vmm::virtio {

namespace {

constexpr std::uint8_t kIsrQueue = 0x1;  // virtio 1.2 §4.1.4.5
constexpr std::uint64_t kPage = 0x1000;

std::uint64_t align_page(std::uint64_t v) { return (v + kPage - 1) & ~(kPage - 1); }

std::uint64_t pow2_at_least(std::uint64_t v) {
    std::uint64_t p = 1;
    while (p < v) p <<= 1;
    return p;
}

bool overlaps(std::uint64_t a, std::uint64_t alen, std::uint64_t b, std::uint64_t blen) {
    return a < b + blen && b < a + alen;
}

std::uint32_t class_code(DeviceType type) {
    switch (type) {
    case DeviceType::Net: return 0x020000;      // network, ethernet
    case DeviceType::Block: return 0x010000;    // mass storage, SCSI (as QEMU)
    case DeviceType::Console: return 0x078000;  // communication, other
    }
    return 0xff0000;  // unclassified
}

// BAR0 as the IoBus sees it; forwards while the transport lives.
class Bar0 : public BusDevice {
public:
    explicit Bar0(std::weak_ptr<VirtioPciTransport> t) : t_(std::move(t)) {}
    void read(std::uint64_t offset, std::span<std::uint8_t> data) override {
        if (auto t = t_.lock()) {
            t->bar_read(offset, data);
        } else {
            for (auto& b : data) b = 0xff;
        }
    }
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
        if (auto t = t_.lock()) t->bar_write(offset, data);
    }

private:
    std::weak_ptr<VirtioPciTransport> t_;
};

}  // namespace

// The VirtioInterrupt handed to the device at activation; tagged with the activation's epoch so
// that a device still signalling after a reset cannot disturb the next driver.
class VirtioPciTransport::Interrupt : public VirtioInterrupt {
public:
    Interrupt(std::weak_ptr<VirtioPciTransport> t, std::uint64_t epoch) : t_(std::move(t)), epoch_(epoch) {}
    void notify_queue(std::uint16_t queue) override {
        if (auto t = t_.lock()) t->signal_queue(epoch_, queue);
    }
    void notify_config() override {
        if (auto t = t_.lock()) t->signal_config(epoch_);
    }
    void needs_reset() override {
        if (auto t = t_.lock()) t->signal_needs_reset(epoch_);
    }

private:
    std::weak_ptr<VirtioPciTransport> t_;
    std::uint64_t epoch_;
};

std::shared_ptr<VirtioPciTransport> VirtioPciTransport::create(std::string name, std::shared_ptr<VirtioDevice> device,
                                                               const GuestMemory& memory,
                                                               std::shared_ptr<pci::MsiVectorSink> msi,
                                                               VirtioPciOptions options) {
    if (!device) throw Error(name + ": no virtio device");
    auto t = std::make_shared<VirtioPciTransport>(Token{}, std::move(name), std::move(device), memory, std::move(msi),
                                                  options);
    t->bar_device_ = std::make_shared<Bar0>(t);
    return t;
}

namespace {
std::uint16_t checked_queues(const std::string& name, const VirtioDevice& device) {
    const std::uint16_t n = device.num_queues();
    if (n > VirtioPciTransport::kMaxQueues) throw Error(name + ": too many virtqueues");
    return n;
}
}  // namespace

VirtioPciTransport::VirtioPciTransport(Token, std::string name, std::shared_ptr<VirtioDevice> device,
                                       const GuestMemory& memory, std::shared_ptr<pci::MsiVectorSink> msi,
                                       VirtioPciOptions options)
    : name_(std::move(name)),
      device_(std::move(device)),
      memory_(memory),
      num_queues_(checked_queues(name_, *device_)),
      max_queue_size_(device_->max_queue_size()),
      device_features_(device_->device_features()),
      bar_kind_(options.bar_kind),
      log_(vmm::logger(name_)),
      msix_(unsigned(num_queues_) + 1, std::move(msi)),
      config_(pci::PciIdentity{
          .vendor_id = kVendorId,
          .device_id = std::uint16_t(kDeviceIdBase + static_cast<std::uint32_t>(device_->device_type())),
          .revision = 1,  // §4.1.2.1: non-transitional devices have revision >= 1
          .class_code = class_code(device_->device_type()),
          .subsystem_vendor_id = kVendorId,
          .subsystem_id = kSubsystemId}) {
    if (bar_kind_ == pci::PciBarKind::Io) throw Error(name_ + ": virtio-pci BAR0 must be memory");
    pba_offset_ = kMsixTableOffset + align_page(msix_.table_bytes());
    bar_size_ = pow2_at_least(pba_offset_ + align_page(msix_.pba_bytes()));
    build_config_space();
    reset_registers_locked();
}

void VirtioPciTransport::build_config_space() {
    config_.add_bar(kBar, pci::PciBar{bar_kind_, bar_size_, false});
    config_.set_interrupt_pin(interrupt_pin());
    // struct virtio_pci_cap after cap_vndr/cap_next (virtio 1.2 §4.1.4).
    auto virtio_cap = [&](std::uint8_t type, std::uint32_t offset, std::uint32_t length,
                          std::span<const std::uint8_t> extra) {
        std::vector<std::uint8_t> body = {std::uint8_t(sizeof(virtio_pci_cap) + extra.size()), type, kBar, 0, 0, 0};
        for (unsigned i = 0; i < 4; ++i) body.push_back(std::uint8_t(offset >> (8 * i)));
        for (unsigned i = 0; i < 4; ++i) body.push_back(std::uint8_t(length >> (8 * i)));
        body.insert(body.end(), extra.begin(), extra.end());
        return config_.add_capability(PCI_CAP_ID_VNDR, body);
    };
    virtio_cap(VIRTIO_PCI_CAP_COMMON_CFG, kCommonOffset, kCommonLength, {});
    virtio_cap(VIRTIO_PCI_CAP_ISR_CFG, kIsrOffset, kIsrLength, {});
    virtio_cap(VIRTIO_PCI_CAP_DEVICE_CFG, kDeviceOffset, kDeviceLength, {});
    const std::uint8_t mult[4] = {std::uint8_t(kNotifyMultiplier), 0, 0, 0};
    virtio_cap(VIRTIO_PCI_CAP_NOTIFY_CFG, kNotifyOffset,
               std::uint32_t(std::max<std::uint16_t>(num_queues_, 1) * kNotifyMultiplier), mult);
    const std::uint8_t window[4] = {};
    pci_cfg_cap_ = virtio_cap(VIRTIO_PCI_CAP_PCI_CFG, 0, 0, window);
    // §4.1.4.9: cap.bar, cap.offset, cap.length and pci_cfg_data are writable by the driver.
    const std::uint8_t rw[16] = {0xff, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    config_.set_writable(pci_cfg_cap_ + VIRTIO_PCI_CAP_BAR, rw);
    msix_.add_capability(config_, kBar, std::uint32_t(kMsixTableOffset), kBar, std::uint32_t(pba_offset_));
}

// ---- PCI side ----

void VirtioPciTransport::config_read(std::uint32_t offset, std::span<std::uint8_t> data) {
    if (overlaps(offset, data.size(), pci_cfg_cap_ + sizeof(virtio_pci_cap), 4)) pci_cfg_access(false);
    std::lock_guard lock(regs_);
    config_.read(offset, data);
}

void VirtioPciTransport::config_write(std::uint32_t offset, std::span<const std::uint8_t> data) {
    {
        std::lock_guard lock(regs_);
        config_.write(offset, data);
        msix_.config_written(config_);
        update_intx_locked();  // MSI-X enable and INTx disable decide whether the line is driven
    }
    if (overlaps(offset, data.size(), pci_cfg_cap_ + sizeof(virtio_pci_cap), 4)) pci_cfg_access(true);
}

// VIRTIO_PCI_CAP_PCI_CFG (§4.1.4.9): an access to pci_cfg_data is an access of cap.length
// bytes at cap.offset in BAR cap.bar. Invalid windows do nothing.
void VirtioPciTransport::pci_cfg_access(bool is_write) {
    const std::uint32_t data_at = pci_cfg_cap_ + sizeof(virtio_pci_cap);
    std::uint8_t bar = 0;
    std::uint32_t offset = 0, length = 0;
    std::uint8_t buf[4] = {};
    {
        std::lock_guard lock(regs_);
        bar = config_.read8(pci_cfg_cap_ + VIRTIO_PCI_CAP_BAR);
        offset = config_.read32(pci_cfg_cap_ + VIRTIO_PCI_CAP_OFFSET);
        length = config_.read32(pci_cfg_cap_ + VIRTIO_PCI_CAP_LENGTH);
        for (unsigned i = 0; i < 4; ++i) buf[i] = config_.read8(data_at + i);
    }
    if (bar != kBar || (length != 1 && length != 2 && length != 4) || offset % length != 0 ||
        std::uint64_t(offset) + length > bar_size_)
        return;
    if (is_write) {
        bar_write(offset, std::span<const std::uint8_t>(buf, length));
        return;
    }
    bar_read(offset, std::span<std::uint8_t>(buf, length));
    std::lock_guard lock(regs_);
    for (unsigned i = 0; i < length; ++i) config_.store8(data_at + i, buf[i]);
}

std::optional<pci::PciBar> VirtioPciTransport::bar(unsigned index) const {
    std::lock_guard lock(regs_);
    return config_.bar(index);
}

std::shared_ptr<BusDevice> VirtioPciTransport::bar_device(unsigned index) {
    return index == kBar ? bar_device_ : nullptr;
}

void VirtioPciTransport::attach_intx(std::shared_ptr<InterruptLine> line) {
    std::lock_guard lock(regs_);
    intx_ = std::move(line);
    intx_level_ = false;
    update_intx_locked();
}

void VirtioPciTransport::bar_mapped(unsigned index, std::optional<std::uint64_t> gpa) {
    if (index != kBar) return;
    NotifyListener listener;
    {
        std::lock_guard lock(regs_);
        bar_base_ = gpa;
        listener = notify_listener_;
    }
    if (listener) listener(notify_addresses());
}

void VirtioPciTransport::set_notify_listener(NotifyListener listener) {
    std::lock_guard lock(regs_);
    notify_listener_ = std::move(listener);
}

std::vector<NotifyAddress> VirtioPciTransport::notify_addresses() const {
    std::lock_guard lock(regs_);
    std::vector<NotifyAddress> out;
    if (!bar_base_) return out;
    for (std::uint16_t q = 0; q < num_queues_; ++q)
        out.push_back({*bar_base_ + kNotifyOffset + q * kNotifyMultiplier, kNotifyEventfdLength, q});
    return out;
}

std::uint8_t VirtioPciTransport::device_status() const {
    std::lock_guard lock(regs_);
    return status_;
}

// ---- BAR0 ----

void VirtioPciTransport::bar_read(std::uint64_t offset, std::span<std::uint8_t> data) {
    for (auto& b : data) b = 0;
    const std::uint64_t len = data.size();
    if (overlaps(offset, len, kCommonOffset, kPage)) {
        if (offset + len > kCommonOffset + kPage) return;
        std::lock_guard lock(regs_);
        set_bus_value(data, common_read_locked(offset - kCommonOffset, len));
    } else if (overlaps(offset, len, kIsrOffset, kPage)) {
        if (offset != kIsrOffset) return;
        std::lock_guard lock(regs_);
        data[0] = isr_;  // §4.1.4.5: reading the ISR clears it and deasserts INTx
        isr_ = 0;
        update_intx_locked();
    } else if (overlaps(offset, len, kDeviceOffset, kDeviceLength)) {
        if (offset + len > kDeviceOffset + kDeviceLength) return;
        device_->read_config(offset - kDeviceOffset, data);
    } else if (overlaps(offset, len, kMsixTableOffset, msix_.table_bytes())) {
        msix_.table_read(offset - kMsixTableOffset, data);
    } else if (overlaps(offset, len, pba_offset_, msix_.pba_bytes())) {
        msix_.pba_read(offset - pba_offset_, data);
    }
}

void VirtioPciTransport::bar_write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    const std::uint64_t len = data.size();
    const std::uint64_t value = bus_value(data);
    if (overlaps(offset, len, kCommonOffset, kPage)) {
        if (offset + len > kCommonOffset + kPage) return;
        if (offset == VIRTIO_PCI_COMMON_STATUS && len == 1) {
            write_status(std::uint8_t(value));
            return;
        }
        std::lock_guard lock(regs_);
        common_write_locked(offset - kCommonOffset, len, value);
    } else if (overlaps(offset, len, kDeviceOffset, kDeviceLength)) {
        if (offset + len > kDeviceOffset + kDeviceLength) return;
        device_->write_config(offset - kDeviceOffset, data);
    } else if (overlaps(offset, len, kNotifyOffset, kPage)) {
        const std::uint64_t rel = offset - kNotifyOffset;
        if (rel % kNotifyMultiplier == 0 && rel / kNotifyMultiplier < num_queues_) {
            trapped_notifies_.fetch_add(1, std::memory_order_relaxed);
            handle_notify(std::uint16_t(rel / kNotifyMultiplier));
        }
    } else if (overlaps(offset, len, kMsixTableOffset, msix_.table_bytes())) {
        msix_.table_write(offset - kMsixTableOffset, data);
    }
}

std::uint64_t VirtioPciTransport::common_read_locked(std::uint64_t offset, std::size_t len) {
    const Queue* q = queue_select_ < num_queues_ ? &queues_[queue_select_] : nullptr;
    auto is = [&](std::uint64_t at, std::size_t width) { return offset == at && len == width; };
    auto half = [](std::uint64_t v, unsigned which) { return which ? v >> 32 : v & 0xffffffffu; };
    if (is(VIRTIO_PCI_COMMON_DFSELECT, 4)) return device_feature_select_;
    if (is(VIRTIO_PCI_COMMON_DF, 4)) return device_feature_select_ < 2 ? half(device_features_, device_feature_select_) : 0;
    if (is(VIRTIO_PCI_COMMON_GFSELECT, 4)) return driver_feature_select_;
    if (is(VIRTIO_PCI_COMMON_GF, 4)) return driver_feature_select_ < 2 ? half(driver_features_, driver_feature_select_) : 0;
    if (is(VIRTIO_PCI_COMMON_MSIX, 2)) return msix_config_;
    if (is(VIRTIO_PCI_COMMON_NUMQ, 2)) return num_queues_;
    if (is(VIRTIO_PCI_COMMON_STATUS, 1)) return status_;
    if (is(VIRTIO_PCI_COMMON_CFGGENERATION, 1)) return config_generation_;
    if (is(VIRTIO_PCI_COMMON_Q_SELECT, 2)) return queue_select_;
    if (is(VIRTIO_PCI_COMMON_Q_MSIX, 2)) return q ? q->msix_vector : VIRTIO_MSI_NO_VECTOR;
    if (!q) return 0;  // §4.1.4.3: queue_size 0 = no such queue
    if (is(VIRTIO_PCI_COMMON_Q_SIZE, 2)) return q->size;
    if (is(VIRTIO_PCI_COMMON_Q_ENABLE, 2)) return q->enabled;
    if (is(VIRTIO_PCI_COMMON_Q_NOFF, 2)) return queue_select_;
    const std::pair<std::uint64_t, std::uint64_t> addrs[] = {
        {VIRTIO_PCI_COMMON_Q_DESCLO, q->desc}, {VIRTIO_PCI_COMMON_Q_AVAILLO, q->driver}, {VIRTIO_PCI_COMMON_Q_USEDLO, q->device}};
    for (auto [at, v] : addrs) {
        if (is(at, 8)) return v;
        if (is(at, 4)) return half(v, 0);
        if (is(at + 4, 4)) return half(v, 1);
    }
    return 0;
}

void VirtioPciTransport::common_write_locked(std::uint64_t offset, std::size_t len, std::uint64_t value) {
    auto is = [&](std::uint64_t at, std::size_t width) { return offset == at && len == width; };
    auto valid_vector = [&](std::uint64_t v) {
        return std::uint16_t(v < msix_.vectors() ? v : VIRTIO_MSI_NO_VECTOR);  // §4.1.5.1.2: failure reads NO_VECTOR
    };
    if (is(VIRTIO_PCI_COMMON_DFSELECT, 4)) {
        device_feature_select_ = std::uint32_t(value);
    } else if (is(VIRTIO_PCI_COMMON_GFSELECT, 4)) {
        driver_feature_select_ = std::uint32_t(value);
    } else if (is(VIRTIO_PCI_COMMON_GF, 4)) {
        // §3.1.1: features are fixed once FEATURES_OK is set.
        if ((status_ & kStatusFeaturesOk) || driver_feature_select_ >= 2) return;
        const unsigned shift = 32 * driver_feature_select_;
        driver_features_ = (driver_features_ & ~(std::uint64_t{0xffffffff} << shift)) | (value & 0xffffffff) << shift;
    } else if (is(VIRTIO_PCI_COMMON_MSIX, 2)) {
        msix_config_ = valid_vector(value);
    } else if (is(VIRTIO_PCI_COMMON_Q_SELECT, 2)) {
        queue_select_ = std::uint16_t(value);
    } else {
        if (queue_select_ >= num_queues_) return;
        Queue& q = queues_[queue_select_];
        if (is(VIRTIO_PCI_COMMON_Q_MSIX, 2)) {
            q.msix_vector = valid_vector(value);
            return;
        }
        // §4.1.4.3.2: the driver must not change a queue once enabled or after DRIVER_OK.
        if (q.enabled || (status_ & kStatusDriverOk)) return;
        if (is(VIRTIO_PCI_COMMON_Q_SIZE, 2)) {
            q.size = std::uint16_t(value);
        } else if (is(VIRTIO_PCI_COMMON_Q_ENABLE, 2)) {
            q.enabled = value == 1;
        } else {
            std::uint64_t* fields[] = {&q.desc, &q.driver, &q.device};
            const std::uint64_t at[] = {VIRTIO_PCI_COMMON_Q_DESCLO, VIRTIO_PCI_COMMON_Q_AVAILLO, VIRTIO_PCI_COMMON_Q_USEDLO};
            for (unsigned i = 0; i < 3; ++i) {
                std::uint64_t& f = *fields[i];
                if (is(at[i], 8)) f = value;
                else if (is(at[i], 4)) f = (f & ~std::uint64_t{0xffffffff}) | (value & 0xffffffff);
                else if (is(at[i] + 4, 4)) f = (f & 0xffffffff) | (value & 0xffffffff) << 32;
            }
        }
    }
}

// ---- device status (§2.1, §3.1) ----

void VirtioPciTransport::write_status(std::uint8_t value) {
    std::lock_guard control(control_);
    std::unique_lock regs(regs_);
    if (value == 0) {
        const bool was_live = live_;
        reset_registers_locked();
        regs.unlock();
        if (was_live) device_->reset();
        log_->debug("reset by the driver");
        return;
    }
    // The driver sets bits, it never clears them (except by reset); NEEDS_RESET is the device's.
    std::uint8_t next = std::uint8_t((value | status_) & ~kStatusNeedsReset) | (status_ & kStatusNeedsReset);
    if ((next & kStatusFeaturesOk) && !(status_ & kStatusFeaturesOk)) {
        const std::uint64_t unknown = driver_features_ & ~device_features_;
        if (unknown || !(driver_features_ & feature_bit(kFeatureVersion1))) {
            log_->warn("FEATURES_OK refused: driver features {:#x} (offered {:#x})", driver_features_, device_features_);
            next &= std::uint8_t(~kStatusFeaturesOk);
        }
    }
    bool activate = false;
    if ((next & kStatusDriverOk) && !(status_ & kStatusDriverOk)) {
        if (!(next & kStatusFeaturesOk) || (next & kStatusNeedsReset)) {
            next &= std::uint8_t(~kStatusDriverOk);
        } else {
            for (std::uint16_t i = 0; i < num_queues_; ++i) {
                const Queue& q = queues_[i];
                // §2.7: split-queue size is a power of two; ring areas are 16/2/4-byte aligned.
                const bool bad = q.enabled && (q.size == 0 || q.size > max_queue_size_ || (q.size & (q.size - 1)) ||
                                               q.desc % 16 || q.driver % 2 || q.device % 4);
                if (bad) {
                    log_->warn("queue {} set up wrongly (size {}): device needs reset", i, q.size);
                    status_ = std::uint8_t((next & ~kStatusDriverOk) | kStatusNeedsReset);
                    signal_config_locked();
                    return;
                }
            }
            activate = true;
        }
    }
    status_ = next;
    if (!activate) return;
    std::vector<QueueConfig> queues;
    for (const Queue& q : queues_) queues.push_back({q.size, q.desc, q.driver, q.device, q.enabled});
    const std::uint64_t features = driver_features_;
    const std::uint64_t epoch = epoch_;
    regs.unlock();
    device_->activate(memory_, features, std::move(queues), std::make_shared<Interrupt>(weak_from_this(), epoch));
    regs.lock();
    if (epoch_ == epoch) live_ = true;
}

void VirtioPciTransport::reset_registers_locked() {
    device_feature_select_ = driver_feature_select_ = 0;
    driver_features_ = 0;
    msix_config_ = VIRTIO_MSI_NO_VECTOR;
    status_ = 0;
    queue_select_ = 0;
    queues_.assign(num_queues_, Queue{.size = max_queue_size_});
    isr_ = 0;
    live_ = false;
    ++epoch_;
    update_intx_locked();
}

// ---- interrupts ----

void VirtioPciTransport::update_intx_locked() {
    const bool pending = isr_ != 0 && !msix_.enabled();
    config_.set_interrupt_status(pending);
    const bool level = pending && !(config_.command() & PCI_COMMAND_INTX_DISABLE);
    if (intx_ && level != intx_level_) intx_->set_level(level);
    intx_level_ = level;
}

void VirtioPciTransport::signal_config_locked() {
    if (msix_.enabled()) {
        if (msix_config_ != VIRTIO_MSI_NO_VECTOR) msix_.trigger(msix_config_);
        return;
    }
    isr_ |= VIRTIO_PCI_ISR_CONFIG;
    update_intx_locked();
}

void VirtioPciTransport::signal_queue(std::uint64_t epoch, std::uint16_t queue) {
    std::lock_guard lock(regs_);
    if (epoch != epoch_ || queue >= num_queues_) return;
    if (msix_.enabled()) {
        if (queues_[queue].msix_vector != VIRTIO_MSI_NO_VECTOR) msix_.trigger(queues_[queue].msix_vector);
        return;
    }
    isr_ |= kIsrQueue;
    update_intx_locked();
}

void VirtioPciTransport::signal_config(std::uint64_t epoch) {
    std::lock_guard lock(regs_);
    if (epoch != epoch_) return;
    ++config_generation_;  // §4.1.4.3: changes whenever the device configuration changes
    signal_config_locked();
}

void VirtioPciTransport::signal_needs_reset(std::uint64_t epoch) {
    std::lock_guard lock(regs_);
    if (epoch != epoch_) return;
    status_ |= kStatusNeedsReset;
    signal_config_locked();
}

void VirtioPciTransport::handle_notify(std::uint16_t queue) {
    {
        std::lock_guard lock(regs_);
        if (!live_ || queue >= num_queues_ || !queues_[queue].enabled) return;
    }
    device_->queue_notify(queue);
}

}  // namespace vmm::virtio
