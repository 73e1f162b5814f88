// Fuzzes the modern virtio-pci transport (devicemodel/virtio/pci_transport.h) the way a hostile
// guest driver reaches it: PCI config space accesses (including the VIRTIO_PCI_CAP_PCI_CFG
// window), BAR0 register accesses of any width and offset, BAR moves, queue notifications and
// writes to guest RAM in between. The device behind it is a small VirtioDevice that, when
// notified, pops every chain of its queue through VirtQueue and hands it back, so an activation
// with fuzzer-chosen queue addresses also walks fuzzer-written rings.
//
// Input: byte 0: RAM size ((b % 16) + 1) * 4 KiB (zeroed); then operations, each a kind byte
// and its arguments (little-endian), until the input ends:
//   0 config read   u16 offset, u8 width      1 config write  u16 offset, u8 width, u32 value
//   2 BAR0 read     u16 offset, u8 width      3 BAR0 write    u16 offset, u8 width, u64 value
//   (config accesses are aligned to their width, BAR accesses kept inside the BAR, as the
//   buses that call the transport guarantee)
//   4 notify        u8 queue                  5 map BAR0      u32 gpa (0 = unmap)
//   6 RAM write     u16 offset, u8 len, len bytes
// width = {1, 2, 4, 8}[w % 4]. fuzz/make_seeds.py writes seeds that bring the device up.
#include "devicemodel/bus/guest_memory.h"
#include "devicemodel/pci/msi.h"
#include "devicemodel/virtio/pci_transport.h"
#include "devicemodel/virtio/virtio_device.h"
#include "devicemodel/virtio/virtqueue.h"
#include "fuzz/fuzz_reader.h"
#include "tests/support/fakes.h"

#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

namespace {

using namespace vmm::virtio;

class NullSink : public vmm::pci::MsiVectorSink {
public:
    void configure(unsigned, std::uint64_t, std::uint32_t, bool) override {}
    void trigger(unsigned) override {}
};

// Two queues of at most 64 entries; serves each chain by writing one byte back.
class LoopDevice : public VirtioDevice {
public:
    DeviceType device_type() const override { return DeviceType::Block; }
    std::uint64_t device_features() const override {
        return feature_bit(kFeatureVersion1) | feature_bit(kFeatureEventIdx) | feature_bit(kFeatureIndirectDesc) | 1;
    }
    std::uint16_t num_queues() const override { return 2; }
    std::uint16_t max_queue_size() const override { return 64; }
    void read_config(std::uint64_t offset, std::span<std::uint8_t> data) override {
        for (std::size_t i = 0; i < data.size(); ++i) data[i] = offset + i < sizeof config_ ? config_[offset + i] : 0;
    }
    void write_config(std::uint64_t offset, std::span<const std::uint8_t> data) override {
        for (std::size_t i = 0; i < data.size(); ++i)
            if (offset + i < sizeof config_) config_[offset + i] = data[i];
    }
    void activate(const vmm::GuestMemory& memory, std::uint64_t features, std::vector<QueueConfig> queues,
                  std::shared_ptr<VirtioInterrupt> interrupt) override {
        interrupt_ = std::move(interrupt);
        queues_.clear();
        for (const auto& q : queues) queues_.emplace_back(memory, q, max_queue_size(), features);
        for (const auto& q : queues_)
            if (q.broken()) interrupt_->needs_reset();
    }
    void queue_notify(std::uint16_t index) override {
        if (index >= queues_.size()) return;
        VirtQueue& q = queues_[index];
        for (unsigned i = 0; i < 2u * q.size() + 2; ++i) {
            auto chain = q.pop();
            if (!chain) break;
            std::uint8_t status = 0;
            const std::size_t n = chain->ok() ? chain->write(chain->writable_bytes() ? chain->writable_bytes() - 1 : 0,
                                                            std::span(&status, 1))
                                              : 0;
            if (!q.add_used(chain->head(), static_cast<std::uint32_t>(n))) break;
        }
        if (q.broken()) {
            interrupt_->needs_reset();
        } else if (q.needs_notification()) {
            interrupt_->notify_queue(index);
        }
    }
    void reset() override {
        queues_.clear();
        interrupt_.reset();
    }

private:
    std::uint8_t config_[24] = {};
    std::vector<VirtQueue> queues_;
    std::shared_ptr<VirtioInterrupt> interrupt_;
};

// 1, 2, 4 or 8 bytes.
std::size_t access_width(vmm::fuzz::FuzzReader& in) { return std::size_t{1} << (in.le(1) % 4); }

// What PciRootBus passes on: 1, 2 or 4 bytes inside one dword of the 4 KiB config space.
std::uint32_t config_offset(std::uint64_t raw, std::size_t width) {
    return static_cast<std::uint32_t>(raw % 4096) & ~static_cast<std::uint32_t>(width - 1);
}

// What IoBus passes on: any alignment, but the access lies inside the BAR.
std::uint64_t bar_offset(std::uint64_t raw, std::size_t width, std::uint64_t bar_size) {
    const std::uint64_t offset = raw % bar_size;
    return offset + width > bar_size ? bar_size - width : offset;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    spdlog::set_level(spdlog::level::off);  // the transport logs hostile accesses
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    vmm::fuzz::FuzzReader in(data + 1, size - 1);
    std::vector<std::uint8_t> ram((data[0] % 16 + 1) * std::size_t{4096}, 0);
    const vmm::GuestMemory memory({{0, ram.size(), ram.data()}});

    auto device = std::make_shared<LoopDevice>();
    auto transport = VirtioPciTransport::create("fuzz0", device, memory, std::make_shared<NullSink>());
    transport->attach_intx(std::make_shared<vmm::test::FakeInterruptLine>());
    const std::uint64_t bar_size = transport->bar_size();
    // The anchor re-registers ioeventfds from this list: each must be a queue's notify register.
    transport->set_notify_listener([&](const std::vector<NotifyAddress>& now) {
        for (const auto& a : now) {
            if (a.queue >= device->num_queues() || a.len != VirtioPciTransport::kNotifyEventfdLength) std::abort();
        }
    });
    std::uint8_t buf[8];

    while (!in.empty()) {
        switch (in.le(1) % 7) {
        case 0: {
            const auto raw = in.le(2);
            const std::size_t width = std::min<std::size_t>(access_width(in), 4);
            transport->config_read(config_offset(raw, width), std::span(buf, width));
            break;
        }
        case 1: {
            const auto raw = in.le(2);
            const std::size_t width = std::min<std::size_t>(access_width(in), 4);
            vmm::set_bus_value(std::span(buf, width), in.le(4));
            transport->config_write(config_offset(raw, width), std::span<const std::uint8_t>(buf, width));
            break;
        }
        case 2: {
            const auto raw = in.le(2);
            const std::size_t width = access_width(in);
            transport->bar_read(bar_offset(raw, width, bar_size), std::span(buf, width));
            break;
        }
        case 3: {
            const auto raw = in.le(2);
            const std::size_t width = access_width(in);
            vmm::set_bus_value(std::span(buf, width), in.le(8));
            transport->bar_write(bar_offset(raw, width, bar_size), std::span<const std::uint8_t>(buf, width));
            break;
        }
        case 4:
            transport->handle_notify(static_cast<std::uint16_t>(in.le(1) % 4));
            (void)transport->device_status();
            break;
        case 5: {
            const std::uint64_t gpa = in.le(4);
            transport->bar_mapped(0, gpa ? std::optional<std::uint64_t>(gpa & ~(bar_size - 1)) : std::nullopt);
            break;
        }
        case 6: {
            const std::uint64_t offset = in.le(2);
            std::size_t got = 0;
            const std::uint8_t* bytes = in.take(in.le(1), got);
            (void)memory.write(offset, bytes, got);
            break;
        }
        }
    }
    return 0;
}
