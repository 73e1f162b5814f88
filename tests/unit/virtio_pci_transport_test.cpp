// The modern virtio-pci transport on a real PciRootBus, driven the way Linux's virtio_pci_modern
// driver drives it: capability walk, init sequence, MSI-X and INTx interrupts, notifications,
// reset, and hostile register accesses.
#include "devicemodel/pci/pci_bus.h"
#include "devicemodel/virtio/pci_transport.h"
#include "common/error.h"
#include "tests/support/fakes.h"

#include <linux/pci_regs.h>
#include <linux/virtio_pci.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <thread>
#include <optional>
#include <vector>

namespace vmm::virtio {
namespace {

constexpr std::uint64_t kFeatureSizeMax = 1;  // virtio-blk VIRTIO_BLK_F_SIZE_MAX

class FakeVirtioDevice : public VirtioDevice {
public:
    DeviceType device_type() const override { return DeviceType::Block; }
    std::uint64_t device_features() const override {
        return feature_bit(kFeatureVersion1) | feature_bit(kFeatureEventIdx) | feature_bit(kFeatureSizeMax);
    }
    std::uint16_t num_queues() const override { return 2; }
    std::uint16_t max_queue_size() const override { return 256; }
    void read_config(std::uint64_t offset, std::span<std::uint8_t> data) override {
        for (std::size_t i = 0; i < data.size(); ++i) data[i] = offset + i < config.size() ? config[offset + i] : 0;
    }
    void write_config(std::uint64_t offset, std::span<const std::uint8_t> data) override {
        for (std::size_t i = 0; i < data.size(); ++i)
            if (offset + i < config.size()) config[offset + i] = data[i];
    }
    void activate(const GuestMemory&, std::uint64_t features, std::vector<QueueConfig> queues,
                  std::shared_ptr<VirtioInterrupt> interrupt) override {
        ++activations;
        active_features = features;
        active_queues = std::move(queues);
        this->interrupt = std::move(interrupt);
        if (fail_activation) this->interrupt->needs_reset();
    }
    void queue_notify(std::uint16_t queue) override { notified.push_back(queue); }
    void reset() override { ++resets; }

    std::vector<std::uint8_t> config = std::vector<std::uint8_t>(16, 0);
    int activations = 0, resets = 0;
    bool fail_activation = false;
    std::uint64_t active_features = 0;
    std::vector<QueueConfig> active_queues;
    std::shared_ptr<VirtioInterrupt> interrupt;
    std::vector<std::uint16_t> notified;
};

class RecordingSink : public pci::MsiVectorSink {
public:
    void configure(unsigned vector, std::uint64_t address, std::uint32_t data, bool masked) override {
        routes[vector] = {address, data, masked};
    }
    void trigger(unsigned vector) override { triggers.push_back(vector); }
    struct Route {
        std::uint64_t address;
        std::uint32_t data;
        bool masked;
    };
    std::map<unsigned, Route> routes;
    std::vector<unsigned> triggers;
};

// What virtio_pci_modern.c's virtio_pci_find_capability returns for a cfg_type.
struct VirtioCap {
    std::uint8_t at = 0, bar = 0;
    std::uint32_t offset = 0, length = 0;
};

class VirtioPciTest : public ::testing::Test {
protected:
    static constexpr unsigned kSlot = 4;

    VirtioPciTest()
        : memory({{0, 16 << 20}}),
          bus(pio, mmio, pci::pc_pci_windows(x86::ram_layout(16 << 20)), [this](std::uint32_t gsi) {
              auto line = std::make_shared<test::FakeInterruptLine>();
              gsi_lines[gsi] = line;
              return line;
          }) {
        dev = std::make_shared<FakeVirtioDevice>();
        sink = std::make_shared<RecordingSink>();
        transport = VirtioPciTransport::create("blk0", dev, memory, sink);
        transport->set_notify_listener([this](const std::vector<NotifyAddress>& now) { notify_updates.push_back(now); });
        bus.add_device(kSlot, transport);
    }

    // ---- config space ----
    std::uint32_t cfg(std::uint32_t offset, std::size_t width) {
        std::uint8_t b[4] = {};
        bus.config_read({0, kSlot, 0}, offset, std::span(b, width));
        return std::uint32_t(bus_value(std::span<const std::uint8_t>(b, width)));
    }
    void cfg_write(std::uint32_t offset, std::uint32_t v, std::size_t width) {
        std::uint8_t b[4];
        set_bus_value(std::span(b, width), v);
        bus.config_write({0, kSlot, 0}, offset, std::span<const std::uint8_t>(b, width));
    }
    // pci_find_capability + virtio_pci_find_capability, as Linux walks the list.
    std::optional<std::uint8_t> find_capability(std::uint8_t id, std::uint8_t start = 0) {
        if (!(cfg(PCI_STATUS, 2) & PCI_STATUS_CAP_LIST)) return std::nullopt;
        std::uint8_t pos = start ? cfg(start + PCI_CAP_LIST_NEXT, 1) : cfg(PCI_CAPABILITY_LIST, 1);
        for (int ttl = 48; ttl-- > 0;) {  // PCI_FIND_CAP_TTL
            if (pos < 0x40) break;
            pos &= ~3;
            const std::uint16_t ent = std::uint16_t(cfg(pos, 2));
            const std::uint8_t cap_id = ent & 0xff;
            if (cap_id == 0xff) break;
            if (cap_id == id) return pos;
            pos = std::uint8_t(ent >> 8);
        }
        return std::nullopt;
    }
    std::optional<VirtioCap> find_virtio_cap(std::uint8_t cfg_type) {
        for (auto pos = find_capability(PCI_CAP_ID_VNDR); pos; pos = find_capability(PCI_CAP_ID_VNDR, *pos)) {
            const std::uint8_t type = cfg(*pos + VIRTIO_PCI_CAP_CFG_TYPE, 1);
            const std::uint8_t bar = cfg(*pos + VIRTIO_PCI_CAP_BAR, 1);
            if (type == cfg_type && bar < pci::kNumBars && resource_len(bar) > 0)
                return VirtioCap{*pos, bar, cfg(*pos + VIRTIO_PCI_CAP_OFFSET, 4), cfg(*pos + VIRTIO_PCI_CAP_LENGTH, 4)};
        }
        return std::nullopt;
    }
    // pci_resource_len: sized once at enumeration, with decoding off (as __pci_read_base does).
    std::uint64_t resource_len(unsigned bar) {
        if (!bar_sizes.count(bar)) {
            const std::uint32_t cmd = cfg(PCI_COMMAND, 2);
            cfg_write(PCI_COMMAND, cmd & ~(PCI_COMMAND_MEMORY | PCI_COMMAND_IO), 2);
            bar_sizes[bar] = bar_size(bar);
            cfg_write(PCI_COMMAND, cmd, 2);
        }
        return bar_sizes[bar];
    }
    std::uint64_t bar_size(unsigned bar) {
        const std::uint32_t reg = PCI_BASE_ADDRESS_0 + 4 * bar;
        const std::uint32_t l = cfg(reg, 4);
        cfg_write(reg, 0xffffffff, 4);
        std::uint64_t mask = cfg(reg, 4) & PCI_BASE_ADDRESS_MEM_MASK;
        cfg_write(reg, l, 4);
        if ((l & PCI_BASE_ADDRESS_MEM_TYPE_MASK) == PCI_BASE_ADDRESS_MEM_TYPE_64) {
            const std::uint32_t h = cfg(reg + 4, 4);
            cfg_write(reg + 4, 0xffffffff, 4);
            mask |= std::uint64_t(cfg(reg + 4, 4)) << 32;
            cfg_write(reg + 4, h, 4);
        } else if (mask) {
            mask |= 0xffffffff00000000ull;
        }
        return mask & ~(mask - 1);
    }
    std::uint64_t bar0() {
        return (cfg(PCI_BASE_ADDRESS_0, 4) & PCI_BASE_ADDRESS_MEM_MASK) | std::uint64_t(cfg(PCI_BASE_ADDRESS_1, 4)) << 32;
    }

    // ---- BAR0 through the MMIO bus ----
    void enable_decoding() { cfg_write(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2); }
    std::uint64_t rd(std::uint64_t offset, std::size_t width) {
        std::uint8_t b[8] = {};
        EXPECT_TRUE(mmio.read(bar0() + offset, std::span(b, width))) << std::hex << offset;
        return bus_value(std::span<const std::uint8_t>(b, width));
    }
    void wr(std::uint64_t offset, std::uint64_t v, std::size_t width) {
        std::uint8_t b[8];
        set_bus_value(std::span(b, width), v);
        EXPECT_TRUE(mmio.write(bar0() + offset, std::span<const std::uint8_t>(b, width))) << std::hex << offset;
    }
    std::uint64_t common(unsigned field, std::size_t width) { return rd(VirtioPciTransport::kCommonOffset + field, width); }
    void set_common(unsigned field, std::uint64_t v, std::size_t width) { wr(VirtioPciTransport::kCommonOffset + field, v, width); }
    std::uint8_t status() { return std::uint8_t(common(VIRTIO_PCI_COMMON_STATUS, 1)); }
    void add_status(std::uint8_t bits) { set_common(VIRTIO_PCI_COMMON_STATUS, status() | bits, 1); }

    // vp_modern MSI-X setup: enable (function masked), program each vector, unmask, unmask function.
    void enable_msix() {
        const auto cap = find_capability(PCI_CAP_ID_MSIX);
        ASSERT_TRUE(cap);
        cfg_write(*cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL, 2);
        const std::uint32_t table = cfg(*cap + PCI_MSIX_TABLE, 4) & PCI_MSIX_TABLE_OFFSET;
        const unsigned n = (cfg(*cap + PCI_MSIX_FLAGS, 2) & PCI_MSIX_FLAGS_QSIZE) + 1;
        for (unsigned v = 0; v < n; ++v) {
            wr(table + v * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_LOWER_ADDR, 0xfee00000, 4);
            wr(table + v * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_UPPER_ADDR, 0, 4);
            wr(table + v * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_DATA, 0x40 + v, 4);
            wr(table + v * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL, 0, 4);
        }
        cfg_write(*cap + PCI_MSIX_FLAGS, PCI_MSIX_FLAGS_ENABLE, 2);
    }

    struct QueueSetup {
        std::uint16_t size;
        std::uint64_t desc, driver, device;
    };
    // vp_modern_find_vqs / setup_vq for each queue; returns what the driver programmed.
    std::vector<QueueSetup> negotiate_and_setup(bool msix) {
        enable_decoding();
        set_common(VIRTIO_PCI_COMMON_STATUS, 0, 1);
        EXPECT_EQ(status(), 0);
        add_status(kStatusAcknowledge);
        add_status(kStatusDriver);
        set_common(VIRTIO_PCI_COMMON_DFSELECT, 0, 4);
        std::uint64_t offered = common(VIRTIO_PCI_COMMON_DF, 4);
        set_common(VIRTIO_PCI_COMMON_DFSELECT, 1, 4);
        offered |= common(VIRTIO_PCI_COMMON_DF, 4) << 32;
        EXPECT_EQ(offered, dev->device_features());
        const std::uint64_t accept = offered & (feature_bit(kFeatureVersion1) | feature_bit(kFeatureSizeMax));
        set_common(VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
        set_common(VIRTIO_PCI_COMMON_GF, std::uint32_t(accept), 4);
        set_common(VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
        set_common(VIRTIO_PCI_COMMON_GF, std::uint32_t(accept >> 32), 4);
        add_status(kStatusFeaturesOk);
        EXPECT_TRUE(status() & kStatusFeaturesOk);
        if (msix) {
            enable_msix();
            set_common(VIRTIO_PCI_COMMON_MSIX, 0, 2);
            EXPECT_EQ(common(VIRTIO_PCI_COMMON_MSIX, 2), 0u);
        }
        std::vector<QueueSetup> out;
        const auto n = common(VIRTIO_PCI_COMMON_NUMQ, 2);
        for (std::uint16_t q = 0; q < n; ++q) {
            set_common(VIRTIO_PCI_COMMON_Q_SELECT, q, 2);
            EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_SIZE, 2), dev->max_queue_size());
            EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0u);
            QueueSetup s{std::uint16_t(64 << q), 0x10000u + q * 0x4000u, 0x11000u + q * 0x4000u, 0x12000u + q * 0x4000u};
            set_common(VIRTIO_PCI_COMMON_Q_SIZE, s.size, 2);
            set_common(VIRTIO_PCI_COMMON_Q_DESCLO, std::uint32_t(s.desc), 4);
            set_common(VIRTIO_PCI_COMMON_Q_DESCHI, std::uint32_t(s.desc >> 32), 4);
            set_common(VIRTIO_PCI_COMMON_Q_AVAILLO, std::uint32_t(s.driver), 4);
            set_common(VIRTIO_PCI_COMMON_Q_AVAILHI, 0, 4);
            set_common(VIRTIO_PCI_COMMON_Q_USEDLO, s.device, 8);  // one qword access
            if (msix) {
                set_common(VIRTIO_PCI_COMMON_Q_MSIX, q + 1, 2);
                EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_MSIX, 2), q + 1u);
            }
            set_common(VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
            out.push_back(s);
        }
        return out;
    }
    std::uint64_t notify_offset(std::uint16_t q) {
        const auto cap = find_virtio_cap(VIRTIO_PCI_CAP_NOTIFY_CFG);
        EXPECT_TRUE(cap);
        const std::uint32_t mult = cfg(cap->at + sizeof(virtio_pci_cap), 4);
        set_common(VIRTIO_PCI_COMMON_Q_SELECT, q, 2);
        return cap->offset + common(VIRTIO_PCI_COMMON_Q_NOFF, 2) * mult;
    }
    std::shared_ptr<test::FakeInterruptLine> intx() { return gsi_lines.at(x86::pci_intx_gsi(kSlot, 0)); }

    test::FakeGuestMemory memory;
    IoBus pio{"pio"}, mmio{"mmio"};
    std::map<std::uint32_t, std::shared_ptr<test::FakeInterruptLine>> gsi_lines;
    pci::PciRootBus bus;
    std::shared_ptr<FakeVirtioDevice> dev;
    std::shared_ptr<RecordingSink> sink;
    std::shared_ptr<VirtioPciTransport> transport;
    std::vector<std::vector<NotifyAddress>> notify_updates;
    std::map<unsigned, std::uint64_t> bar_sizes;
};

TEST_F(VirtioPciTest, Identity) {
    EXPECT_EQ(cfg(PCI_VENDOR_ID, 2), 0x1af4u);
    EXPECT_EQ(cfg(PCI_DEVICE_ID, 2), 0x1040u + 2);  // 0x1040 + VIRTIO_ID_BLOCK
    EXPECT_EQ(cfg(PCI_REVISION_ID, 1), 1u);
    EXPECT_EQ(cfg(PCI_CLASS_REVISION, 4) >> 8, 0x010000u);
    EXPECT_EQ(cfg(PCI_SUBSYSTEM_VENDOR_ID, 2), 0x1af4u);
    EXPECT_GE(cfg(PCI_SUBSYSTEM_ID, 2), 0x40u);  // §4.1.2.1
    EXPECT_EQ(cfg(PCI_INTERRUPT_PIN, 1), 1u);
    EXPECT_EQ(cfg(PCI_INTERRUPT_LINE, 1), x86::pci_intx_gsi(kSlot, 0));
    EXPECT_EQ(cfg(PCI_BASE_ADDRESS_0, 4) & PCI_BASE_ADDRESS_MEM_TYPE_MASK, unsigned(PCI_BASE_ADDRESS_MEM_TYPE_64));
}

TEST_F(VirtioPciTest, CapabilityChainAsLinuxWalksIt) {
    const std::uint64_t size = resource_len(0);
    ASSERT_GT(size, 0u);
    EXPECT_EQ(size, transport->bar_size());
    // Linux: common, notify, ISR required; device config optional; PCI_CFG for the window.
    struct Want {
        std::uint8_t type;
        std::uint32_t min_len;
    };
    std::vector<std::pair<std::uint64_t, std::uint64_t>> regions;
    for (Want w : {Want{VIRTIO_PCI_CAP_COMMON_CFG, sizeof(virtio_pci_common_cfg)}, Want{VIRTIO_PCI_CAP_ISR_CFG, 1},
                   Want{VIRTIO_PCI_CAP_DEVICE_CFG, 1}, Want{VIRTIO_PCI_CAP_NOTIFY_CFG, 2}}) {
        const auto cap = find_virtio_cap(w.type);
        ASSERT_TRUE(cap) << int(w.type);
        EXPECT_EQ(cap->bar, 0);
        EXPECT_GE(cap->length, w.min_len);
        EXPECT_LE(std::uint64_t(cap->offset) + cap->length, size);  // vp_modern_map_capability checks this
        EXPECT_GE(cfg(cap->at + PCI_CAP_LIST_NEXT + 1, 1), sizeof(virtio_pci_cap));  // cap_len
        regions.emplace_back(cap->offset, cap->length);
    }
    const auto notify = find_virtio_cap(VIRTIO_PCI_CAP_NOTIFY_CFG);
    EXPECT_EQ(cfg(notify->at + PCI_CAP_LIST_NEXT + 1, 1), sizeof(virtio_pci_notify_cap));
    EXPECT_EQ(cfg(notify->at + sizeof(virtio_pci_cap), 4), 4u);  // notify_off_multiplier
    const auto pcicfg = find_virtio_cap(VIRTIO_PCI_CAP_PCI_CFG);
    ASSERT_TRUE(pcicfg);
    EXPECT_EQ(cfg(pcicfg->at + PCI_CAP_LIST_NEXT + 1, 1), sizeof(virtio_pci_cfg_cap));
    // MSI-X: a table for each queue + config, inside BAR0, clear of the virtio regions.
    const auto msix = find_capability(PCI_CAP_ID_MSIX);
    ASSERT_TRUE(msix);
    const unsigned vectors = (cfg(*msix + PCI_MSIX_FLAGS, 2) & PCI_MSIX_FLAGS_QSIZE) + 1;
    EXPECT_EQ(vectors, dev->num_queues() + 1u);
    const std::uint32_t table = cfg(*msix + PCI_MSIX_TABLE, 4), pba = cfg(*msix + PCI_MSIX_PBA, 4);
    EXPECT_EQ(table & PCI_MSIX_TABLE_BIR, 0u);
    EXPECT_EQ(pba & PCI_MSIX_PBA_BIR, 0u);
    regions.emplace_back(table & PCI_MSIX_TABLE_OFFSET, vectors * PCI_MSIX_ENTRY_SIZE);
    regions.emplace_back(pba & PCI_MSIX_PBA_OFFSET, 8);
    for (std::size_t i = 0; i < regions.size(); ++i) {
        EXPECT_LE(regions[i].first + regions[i].second, size);
        for (std::size_t j = i + 1; j < regions.size(); ++j)
            EXPECT_FALSE(regions[i].first < regions[j].first + regions[j].second &&
                         regions[j].first < regions[i].first + regions[i].second)
                << i << " overlaps " << j;
    }
    // The chain terminates and every pointer is dword-aligned inside the standard space.
    int count = 0;
    for (std::uint8_t pos = cfg(PCI_CAPABILITY_LIST, 1); pos; pos = cfg(pos + 1, 1)) {
        EXPECT_EQ(pos % 4, 0);
        EXPECT_GE(pos, 0x40);
        ASSERT_LT(++count, 48);
    }
    EXPECT_EQ(count, 6);
}

TEST_F(VirtioPciTest, FullInitSequenceWithMsix) {
    const auto setup = negotiate_and_setup(true);
    EXPECT_EQ(dev->activations, 0);
    add_status(kStatusDriverOk);
    EXPECT_EQ(status(), kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk);
    ASSERT_EQ(dev->activations, 1);
    EXPECT_EQ(dev->active_features, feature_bit(kFeatureVersion1) | feature_bit(kFeatureSizeMax));
    ASSERT_EQ(dev->active_queues.size(), setup.size());
    for (std::size_t q = 0; q < setup.size(); ++q) {
        const auto& c = dev->active_queues[q];
        EXPECT_TRUE(c.enabled);
        EXPECT_EQ(c.size, setup[q].size);
        EXPECT_EQ(c.desc, setup[q].desc);
        EXPECT_EQ(c.avail, setup[q].driver);
        EXPECT_EQ(c.used, setup[q].device);
    }
    // Queue notification: a 16-bit write of the queue index at its notify address. These
    // trapped (a VMM with ioeventfds never sees them); handle_notify (an ioeventfd) does not count.
    EXPECT_EQ(transport->trapped_notifies(), 0u);
    wr(notify_offset(1), 1, 2);
    wr(notify_offset(0), 0, 2);
    EXPECT_EQ(dev->notified, (std::vector<std::uint16_t>{1, 0}));
    EXPECT_EQ(transport->trapped_notifies(), 2u);
    transport->handle_notify(0);
    EXPECT_EQ(dev->notified, (std::vector<std::uint16_t>{1, 0, 0}));
    EXPECT_EQ(transport->trapped_notifies(), 2u);
    // Used-buffer interrupts go to the queue's vector; config changes to msix_config.
    dev->interrupt->notify_queue(1);
    dev->interrupt->notify_queue(0);
    const auto gen = common(VIRTIO_PCI_COMMON_CFGGENERATION, 1);
    dev->interrupt->notify_config();
    EXPECT_EQ(sink->triggers, (std::vector<unsigned>{2, 1, 0}));
    EXPECT_NE(common(VIRTIO_PCI_COMMON_CFGGENERATION, 1), gen);
    EXPECT_EQ(sink->routes.at(2).data, 0x42u);
    EXPECT_FALSE(sink->routes.at(2).masked);
    EXPECT_FALSE(intx()->level);
    EXPECT_EQ(rd(VirtioPciTransport::kIsrOffset, 1), 0u);  // ISR unused with MSI-X
}

TEST_F(VirtioPciTest, DeviceConfigRegion) {
    enable_decoding();
    const auto cap = find_virtio_cap(VIRTIO_PCI_CAP_DEVICE_CFG);
    ASSERT_TRUE(cap);
    dev->config = {1, 2, 3, 4, 5, 6, 7, 8};
    EXPECT_EQ(rd(cap->offset, 4), 0x04030201u);
    EXPECT_EQ(rd(cap->offset + 6, 2), 0x0807u);
    wr(cap->offset + 1, 0xaa, 1);
    EXPECT_EQ(dev->config[1], 0xaa);
    EXPECT_EQ(rd(cap->offset + 0x100, 4), 0u);  // past the device's config: zero
}

TEST_F(VirtioPciTest, FeaturesOkRefusedForUnofferedFeaturesOrWithoutVersion1) {
    enable_decoding();
    for (std::uint64_t accept : {feature_bit(kFeatureVersion1) | feature_bit(5), feature_bit(kFeatureSizeMax)}) {
        set_common(VIRTIO_PCI_COMMON_STATUS, 0, 1);
        add_status(kStatusAcknowledge | kStatusDriver);
        set_common(VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
        set_common(VIRTIO_PCI_COMMON_GF, std::uint32_t(accept), 4);
        set_common(VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
        set_common(VIRTIO_PCI_COMMON_GF, std::uint32_t(accept >> 32), 4);
        add_status(kStatusFeaturesOk);
        EXPECT_FALSE(status() & kStatusFeaturesOk) << std::hex << accept;
        add_status(kStatusDriverOk);  // refused too: no FEATURES_OK
        EXPECT_FALSE(status() & kStatusDriverOk);
    }
    EXPECT_EQ(dev->activations, 0);
}

TEST_F(VirtioPciTest, DriverFeaturesAreFrozenAfterFeaturesOk) {
    negotiate_and_setup(false);
    set_common(VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
    set_common(VIRTIO_PCI_COMMON_GF, 0xffffffff, 4);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_GF, 4), std::uint32_t(feature_bit(kFeatureSizeMax)));
}

TEST_F(VirtioPciTest, IntxAndIsrReadToClear) {
    negotiate_and_setup(false);
    add_status(kStatusDriverOk);
    ASSERT_EQ(dev->activations, 1);
    EXPECT_FALSE(intx()->level);
    dev->interrupt->notify_queue(0);
    EXPECT_TRUE(intx()->level);
    EXPECT_TRUE(cfg(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
    dev->interrupt->notify_config();
    EXPECT_EQ(rd(VirtioPciTransport::kIsrOffset, 1), 1u | VIRTIO_PCI_ISR_CONFIG);
    EXPECT_FALSE(intx()->level);
    EXPECT_FALSE(cfg(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
    EXPECT_EQ(rd(VirtioPciTransport::kIsrOffset, 1), 0u);
    EXPECT_TRUE(sink->triggers.empty());
    // INTx disabled in the command register: the ISR bit is set, the line stays low.
    cfg_write(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_INTX_DISABLE, 2);
    dev->interrupt->notify_queue(1);
    EXPECT_FALSE(intx()->level);
    EXPECT_TRUE(cfg(PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
    cfg_write(PCI_COMMAND, PCI_COMMAND_MEMORY, 2);
    EXPECT_TRUE(intx()->level);
    EXPECT_EQ(rd(VirtioPciTransport::kIsrOffset, 1), 1u);
    EXPECT_FALSE(intx()->level);
}

TEST_F(VirtioPciTest, NoVectorMeansNoInterrupt) {
    enable_decoding();
    negotiate_and_setup(true);
    set_common(VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1u);
    add_status(kStatusDriverOk);
    set_common(VIRTIO_PCI_COMMON_MSIX, VIRTIO_MSI_NO_VECTOR, 2);
    dev->interrupt->notify_config();
    EXPECT_TRUE(sink->triggers.empty());
    EXPECT_FALSE(intx()->level);
}

TEST_F(VirtioPciTest, ResetMidRun) {
    negotiate_and_setup(true);
    add_status(kStatusDriverOk);
    ASSERT_EQ(dev->activations, 1);
    auto old_interrupt = dev->interrupt;
    set_common(VIRTIO_PCI_COMMON_STATUS, 0, 1);
    EXPECT_EQ(dev->resets, 1);
    EXPECT_EQ(status(), 0);
    // Registers are back to their reset values.
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
    set_common(VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_GF, 4), 0u);
    for (std::uint16_t q = 0; q < 2; ++q) {
        set_common(VIRTIO_PCI_COMMON_Q_SELECT, q, 2);
        EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_SIZE, 2), dev->max_queue_size());
        EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0u);
        EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
        EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_DESCLO, 8), 0u);
    }
    // The old activation's interrupt and queue notifications are dead.
    old_interrupt->notify_queue(0);
    old_interrupt->needs_reset();
    EXPECT_TRUE(sink->triggers.empty());
    EXPECT_EQ(status(), 0);
    wr(VirtioPciTransport::kNotifyOffset, 0, 2);
    transport->handle_notify(0);
    EXPECT_TRUE(dev->notified.empty());
    // And the driver can start over.
    negotiate_and_setup(true);
    add_status(kStatusDriverOk);
    EXPECT_EQ(dev->activations, 2);
    dev->interrupt->notify_queue(0);
    EXPECT_EQ(sink->triggers, std::vector<unsigned>{1});
}

TEST_F(VirtioPciTest, NeedsResetSetsTheBitAndSendsAConfigInterrupt) {
    negotiate_and_setup(true);
    add_status(kStatusDriverOk);
    dev->interrupt->needs_reset();
    EXPECT_TRUE(status() & kStatusNeedsReset);
    EXPECT_EQ(sink->triggers, std::vector<unsigned>{0});
    add_status(kStatusFailed);  // the driver cannot clear NEEDS_RESET by writing status
    set_common(VIRTIO_PCI_COMMON_STATUS, kStatusAcknowledge, 1);
    EXPECT_TRUE(status() & kStatusNeedsReset);
    set_common(VIRTIO_PCI_COMMON_STATUS, 0, 1);
    EXPECT_EQ(status(), 0);
}

TEST_F(VirtioPciTest, NeedsResetDuringActivationWithIntx) {
    dev->fail_activation = true;
    negotiate_and_setup(false);
    add_status(kStatusDriverOk);
    EXPECT_EQ(dev->activations, 1);
    EXPECT_TRUE(status() & kStatusNeedsReset);
    EXPECT_TRUE(intx()->level);
    EXPECT_EQ(rd(VirtioPciTransport::kIsrOffset, 1), unsigned(VIRTIO_PCI_ISR_CONFIG));
}

TEST_F(VirtioPciTest, QueueSizeNotAPowerOfTwoIsRefusedAtDriverOk) {
    negotiate_and_setup(false);
    set_common(VIRTIO_PCI_COMMON_Q_SELECT, 1, 2);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1u);
    // Fresh start with a bad size on queue 1.
    set_common(VIRTIO_PCI_COMMON_STATUS, 0, 1);
    add_status(kStatusAcknowledge | kStatusDriver);
    set_common(VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
    set_common(VIRTIO_PCI_COMMON_GF, 1, 4);  // VERSION_1
    add_status(kStatusFeaturesOk);
    set_common(VIRTIO_PCI_COMMON_Q_SELECT, 1, 2);
    set_common(VIRTIO_PCI_COMMON_Q_SIZE, 100, 2);
    set_common(VIRTIO_PCI_COMMON_Q_DESCLO, 0x10000, 8);
    set_common(VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
    add_status(kStatusDriverOk);
    EXPECT_EQ(dev->activations, 0);
    EXPECT_TRUE(status() & kStatusNeedsReset);
    EXPECT_FALSE(status() & kStatusDriverOk);
    EXPECT_TRUE(intx()->level);  // config interrupt through INTx
    // Larger than the maximum: refused the same way.
    set_common(VIRTIO_PCI_COMMON_STATUS, 0, 1);
    add_status(kStatusAcknowledge | kStatusDriver);
    set_common(VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
    set_common(VIRTIO_PCI_COMMON_GF, 1, 4);
    add_status(kStatusFeaturesOk);
    set_common(VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
    set_common(VIRTIO_PCI_COMMON_Q_SIZE, 512, 2);
    set_common(VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
    add_status(kStatusDriverOk);
    EXPECT_EQ(dev->activations, 0);
    EXPECT_TRUE(status() & kStatusNeedsReset);
}

TEST_F(VirtioPciTest, QueueSelectBeyondNumQueues) {
    enable_decoding();
    set_common(VIRTIO_PCI_COMMON_Q_SELECT, 7, 2);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_SELECT, 2), 7u);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_SIZE, 2), 0u);  // no such queue
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
    set_common(VIRTIO_PCI_COMMON_Q_SIZE, 16, 2);
    set_common(VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
    set_common(VIRTIO_PCI_COMMON_Q_DESCLO, 0x1000, 4);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_SIZE, 2), 0u);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 0u);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_DESCLO, 4), 0u);
    set_common(VIRTIO_PCI_COMMON_Q_SELECT, 0xffff, 2);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_SIZE, 2), 0u);
    // Other queues untouched.
    set_common(VIRTIO_PCI_COMMON_Q_SELECT, 1, 2);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_SIZE, 2), dev->max_queue_size());
    // Notifications and interrupts for queues that do not exist are ignored.
    negotiate_and_setup(false);
    add_status(kStatusDriverOk);
    wr(VirtioPciTransport::kNotifyOffset + 4 * 2, 2, 2);
    wr(VirtioPciTransport::kNotifyOffset + 4 * 1000, 0, 2);
    transport->handle_notify(2);
    transport->handle_notify(0xffff);
    EXPECT_TRUE(dev->notified.empty());
    dev->interrupt->notify_queue(9);
    EXPECT_FALSE(intx()->level);
}

TEST_F(VirtioPciTest, QueueRegistersFreezeOnceEnabled) {
    const auto setup = negotiate_and_setup(false);
    set_common(VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
    set_common(VIRTIO_PCI_COMMON_Q_SIZE, 8, 2);
    set_common(VIRTIO_PCI_COMMON_Q_DESCLO, 0x5000, 4);
    set_common(VIRTIO_PCI_COMMON_Q_ENABLE, 0, 2);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_SIZE, 2), setup[0].size);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_DESCLO, 4), setup[0].desc);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_ENABLE, 2), 1u);
}

TEST_F(VirtioPciTest, OddWidthsAndOffsets) {
    enable_decoding();
    // Wrong widths on common fields: reads 0, writes dropped.
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_NUMQ, 4), 0u);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_DF, 2), 0u);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_DF + 1, 1), 0u);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_NUMQ, 2), 2u);
    set_common(VIRTIO_PCI_COMMON_Q_SELECT, 1, 1);
    set_common(VIRTIO_PCI_COMMON_Q_SELECT, 1, 4);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_SELECT, 2), 0u);
    set_common(VIRTIO_PCI_COMMON_STATUS, kStatusAcknowledge, 2);  // status is a byte
    EXPECT_EQ(status(), 0);
    set_common(VIRTIO_PCI_COMMON_Q_DESCLO + 2, 0xffffffff, 4);  // misaligned dword
    set_common(VIRTIO_PCI_COMMON_Q_SELECT, 0, 2);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_DESCLO, 8), 0u);
    // Past the common structure, in the gaps, in notify reads, past the BAR's regions.
    EXPECT_EQ(common(0x38, 4), 0u);
    EXPECT_EQ(common(0xffc, 4), 0u);
    EXPECT_EQ(rd(VirtioPciTransport::kIsrOffset + 1, 1), 0u);
    EXPECT_EQ(rd(VirtioPciTransport::kNotifyOffset, 2), 0u);
    EXPECT_EQ(rd(transport->bar_size() - 8, 8), 0u);
    wr(transport->bar_size() - 4, 0xffffffff, 4);
    // Direct calls past the BAR and straddling regions are harmless.
    std::uint8_t b[8];
    transport->bar_read(transport->bar_size(), b);
    transport->bar_read(~std::uint64_t{0} - 3, b);
    transport->bar_read(0xffc, b);  // straddles common and ISR
    EXPECT_EQ(bus_value(b), 0u);
    transport->bar_write(0xffe, b);
    EXPECT_EQ(status(), 0);
    // Out-of-range MSI-X vectors read back as NO_VECTOR.
    set_common(VIRTIO_PCI_COMMON_MSIX, 3, 2);  // 3 vectors: 0..2
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
    set_common(VIRTIO_PCI_COMMON_Q_MSIX, 0x1234, 2);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_Q_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
    // Feature windows past the 64 bits read 0.
    set_common(VIRTIO_PCI_COMMON_DFSELECT, 2, 4);
    EXPECT_EQ(common(VIRTIO_PCI_COMMON_DF, 4), 0u);
}

TEST_F(VirtioPciTest, NotifyAddressesFollowTheBar) {
    EXPECT_TRUE(transport->notify_addresses().empty());
    resource_len(0);  // enumeration, before the driver enables decoding
    EXPECT_TRUE(notify_updates.empty());
    enable_decoding();
    const std::uint64_t base = bar0();
    const std::vector<NotifyAddress> expected = {
        {base + notify_offset(0), 0, 0},  // length 0: KVM's fast MMIO bus (any width)
        {base + notify_offset(1), 0, 1},
    };
    EXPECT_EQ(transport->notify_addresses(), expected);
    ASSERT_EQ(notify_updates.size(), 1u);
    EXPECT_EQ(notify_updates[0], expected);
    // Linux moves the BAR with decoding off.
    cfg_write(PCI_COMMAND, 0, 2);
    ASSERT_EQ(notify_updates.size(), 2u);
    EXPECT_TRUE(notify_updates[1].empty());
    cfg_write(PCI_BASE_ADDRESS_0, 0xd0000000, 4);
    cfg_write(PCI_BASE_ADDRESS_1, 0, 4);
    enable_decoding();
    ASSERT_EQ(notify_updates.size(), 3u);
    EXPECT_EQ(notify_updates[2][1].gpa, 0xd0000000u + VirtioPciTransport::kNotifyOffset + 4);
    EXPECT_EQ(transport->notify_addresses(), notify_updates[2]);
    // The ioeventfd path: handle_notify is ignored before DRIVER_OK, forwarded after.
    transport->handle_notify(1);
    EXPECT_TRUE(dev->notified.empty());
    negotiate_and_setup(true);
    add_status(kStatusDriverOk);
    transport->handle_notify(1);
    EXPECT_EQ(dev->notified, std::vector<std::uint16_t>{1});
}

TEST_F(VirtioPciTest, PciCfgWindowReachesBar0) {
    const auto cap = find_virtio_cap(VIRTIO_PCI_CAP_PCI_CFG);
    ASSERT_TRUE(cap);
    const std::uint32_t data = cap->at + sizeof(virtio_pci_cap);
    // No memory decoding needed: this is how firmware without BAR mappings talks to virtio.
    auto window = [&](std::uint32_t offset, std::uint32_t length) {
        cfg_write(cap->at + VIRTIO_PCI_CAP_BAR, 0, 1);
        cfg_write(cap->at + VIRTIO_PCI_CAP_OFFSET, offset, 4);
        cfg_write(cap->at + VIRTIO_PCI_CAP_LENGTH, length, 4);
    };
    window(VIRTIO_PCI_COMMON_NUMQ, 2);
    EXPECT_EQ(cfg(data, 2), 2u);
    window(VIRTIO_PCI_COMMON_STATUS, 1);
    cfg_write(data, kStatusAcknowledge, 1);
    EXPECT_EQ(cfg(data, 1), unsigned(kStatusAcknowledge));
    EXPECT_EQ(transport->device_status(), kStatusAcknowledge);
    window(VIRTIO_PCI_COMMON_DF, 4);
    EXPECT_EQ(cfg(data, 4), std::uint32_t(dev->device_features()));
    // Bad windows reach nothing: bad length, misaligned, past the BAR, wrong BAR.
    window(VIRTIO_PCI_COMMON_STATUS, 3);
    cfg_write(data, 0, 1);
    EXPECT_EQ(transport->device_status(), kStatusAcknowledge);
    window(VIRTIO_PCI_COMMON_Q_SELECT + 1, 2);
    cfg_write(data, 0x0101, 2);
    window(std::uint32_t(transport->bar_size()), 4);
    cfg_write(data, 0xffffffff, 4);
    cfg(data, 4);
    window(VIRTIO_PCI_COMMON_Q_SELECT, 2);
    EXPECT_EQ(cfg(data, 2), 0u);
    cfg_write(cap->at + VIRTIO_PCI_CAP_BAR, 2, 1);
    cfg_write(cap->at + VIRTIO_PCI_CAP_OFFSET, VIRTIO_PCI_COMMON_STATUS, 4);
    cfg_write(cap->at + VIRTIO_PCI_CAP_LENGTH, 1, 4);
    cfg_write(data, 0, 1);
    EXPECT_EQ(transport->device_status(), kStatusAcknowledge);
}

// Device threads signal while a vCPU works the registers: every message is delivered exactly
// once (the sink sees serialized calls, as msi.h promises) and nothing deadlocks.
TEST_F(VirtioPciTest, InterruptsFromDeviceThreadsWhileTheDriverRuns) {
    negotiate_and_setup(true);
    add_status(kStatusDriverOk);
    constexpr int kPerThread = 2000;
    std::vector<std::thread> threads;
    for (std::uint16_t q = 0; q < 2; ++q)
        threads.emplace_back([&, q] {
            for (int i = 0; i < kPerThread; ++i) dev->interrupt->notify_queue(q);
        });
    for (int i = 0; i < 500; ++i) {
        set_common(VIRTIO_PCI_COMMON_Q_SELECT, i % 2, 2);
        common(VIRTIO_PCI_COMMON_Q_MSIX, 2);
        cfg(PCI_COMMAND, 2);
        transport->handle_notify(std::uint16_t(i % 2));
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(sink->triggers.size(), 2u * kPerThread);
    EXPECT_EQ(std::count(sink->triggers.begin(), sink->triggers.end(), 1u), kPerThread);
    EXPECT_EQ(dev->notified.size(), 500u);
}

TEST_F(VirtioPciTest, Mem32BarOption) {
    auto t = VirtioPciTransport::create("blk1", std::make_shared<FakeVirtioDevice>(), memory, sink,
                                        VirtioPciOptions{pci::PciBarKind::Mem32});
    const unsigned slot = bus.add_device(t);
    std::uint8_t b[4];
    bus.config_read({0, slot, 0}, PCI_BASE_ADDRESS_0, b);
    const std::uint32_t bar = std::uint32_t(bus_value(b));
    EXPECT_EQ(bar & PCI_BASE_ADDRESS_MEM_TYPE_MASK, unsigned(PCI_BASE_ADDRESS_MEM_TYPE_32));
    EXPECT_GE(bar & PCI_BASE_ADDRESS_MEM_MASK, x86::kPciMmio32Start);
    EXPECT_THROW(VirtioPciTransport::create("x", std::make_shared<FakeVirtioDevice>(), memory, sink,
                                            VirtioPciOptions{pci::PciBarKind::Io}),
                 Error);
    EXPECT_THROW(VirtioPciTransport::create("x", std::make_shared<FakeVirtioDevice>(), memory, nullptr), Error);
}

}  // namespace
}  // namespace vmm::virtio
