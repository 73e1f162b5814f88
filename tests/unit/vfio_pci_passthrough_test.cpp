// The PCI passthrough model (vfio/passthrough/vfio_pci_device.h) against a fake VFIO function:
// a 256-byte config space with real capability layouts (PM, 64-bit maskable MSI, MSI-X with
// its table and PBA in BAR0), memory BARs backed by memfds (so the host mmap and the trapped
// region I/O see the same bytes), an I/O BAR, INTx; and a fake VM that records memory slots,
// MSI routes and INTx wiring. No IOMMU needed: the real-device path is the L1 test
// (tests/integration/vfio_passthrough_kvm.sh).
#include "vfio/passthrough/vfio_pci_device.h"

#include "common/error.h"
#include "common/fd.h"
#include "devicemodel/pci/pci_bus.h"
#include "tests/support/fakes.h"
#include "x86/memory_layout.h"

#include <linux/pci_regs.h>
#include <linux/vfio.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <map>
#include <stdexcept>

namespace vmm::vfio {
namespace {

constexpr std::uint64_t kBar0Size = 0x4000, kBar2Size = 0x10000, kBar4Size = 0x20;
constexpr std::uint32_t kMsiCap = 0x50, kMsixCap = 0x70, kPmCap = 0x40;
constexpr std::uint32_t kMsixTable = 0x2000, kMsixPba = 0x3000;
constexpr unsigned kMsixVectors = 8;

void put16(std::vector<std::uint8_t>& b, std::uint32_t o, std::uint16_t v) {
    b[o] = std::uint8_t(v);
    b[o + 1] = std::uint8_t(v >> 8);
}
void put32(std::vector<std::uint8_t>& b, std::uint32_t o, std::uint32_t v) {
    put16(b, o, std::uint16_t(v));
    put16(b, o + 2, std::uint16_t(v >> 16));
}
std::uint32_t get32(const std::vector<std::uint8_t>& b, std::uint32_t o) {
    return std::uint32_t(b[o] | b[o + 1] << 8 | b[o + 2] << 16 | std::uint32_t(b[o + 3]) << 24);
}

// A fake function as VFIO presents it. Enforces VFIO's rule that only one interrupt type is
// active at a time (vfio_pci_set_irqs_ioctl answers EINVAL otherwise).
class FakeFunction : public VfioDeviceIo {
public:
    explicit FakeFunction(bool with_msix = true, bool with_intx = true) : config(256, 0) {
        put16(config, PCI_VENDOR_ID, 0x8086);
        put16(config, PCI_DEVICE_ID, 0x10d3);
        config[PCI_REVISION_ID] = 3;
        config[PCI_CLASS_DEVICE + 1] = 0x02;  // network controller
        put16(config, PCI_STATUS, PCI_STATUS_CAP_LIST);
        put16(config, PCI_SUBSYSTEM_VENDOR_ID, 0x8086);
        put16(config, PCI_SUBSYSTEM_ID, 0xa01f);
        // Host addresses in the real BARs: the guest must never see or change them.
        put32(config, PCI_BASE_ADDRESS_0, 0xfebc0000);
        put32(config, PCI_BASE_ADDRESS_2, 0xfe000000 | PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH);
        put32(config, PCI_BASE_ADDRESS_3, 0x1);
        put32(config, PCI_BASE_ADDRESS_4, 0xc040 | PCI_BASE_ADDRESS_SPACE_IO);
        put32(config, PCI_ROM_ADDRESS, 0xfeb80000);
        config[PCI_INTERRUPT_LINE] = 11;
        config[PCI_INTERRUPT_PIN] = 1;
        config[PCI_CAPABILITY_LIST] = kPmCap;
        config[kPmCap] = PCI_CAP_ID_PM;
        config[kPmCap + 1] = kMsiCap;
        put16(config, kPmCap + 2, 0x0003);
        config[kMsiCap] = PCI_CAP_ID_MSI;
        config[kMsiCap + 1] = with_msix ? kMsixCap : 0;
        // 64-bit, per-vector masking, 4 vectors capable (MMC = 2); host values in the registers.
        put16(config, kMsiCap + 2, PCI_MSI_FLAGS_64BIT | PCI_MSI_FLAGS_MASKBIT | (2 << 1));
        put32(config, kMsiCap + 4, 0xfee01000);
        put16(config, kMsiCap + 12, 0x4021);
        if (with_msix) {
            config[kMsixCap] = PCI_CAP_ID_MSIX;
            config[kMsixCap + 1] = 0;
            put16(config, kMsixCap + 2, kMsixVectors - 1);
            put32(config, kMsixCap + 4, kMsixTable | 0);
            put32(config, kMsixCap + 8, kMsixPba | 0);
        }
        region_list.resize(VFIO_PCI_NUM_REGIONS);
        const std::uint32_t rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        region_list[0] = {0, rw | VFIO_REGION_INFO_FLAG_MMAP, kBar0Size, 0, {}, false};
        region_list[2] = {2, rw | VFIO_REGION_INFO_FLAG_MMAP, kBar2Size, 0, {}, false};
        region_list[4] = {4, rw, kBar4Size, 0, {}, false};
        region_list[VFIO_PCI_ROM_REGION_INDEX] = {VFIO_PCI_ROM_REGION_INDEX, VFIO_REGION_INFO_FLAG_READ, 0x8000, 0, {}, false};
        region_list[VFIO_PCI_CONFIG_REGION_INDEX] = {VFIO_PCI_CONFIG_REGION_INDEX, rw, 256, 0, {}, false};
        for (unsigned i : {0u, 2u, 4u}) {
            bar_fd[i] = Fd(::memfd_create("fake-bar", MFD_CLOEXEC));
            if (!bar_fd[i] || ::ftruncate(bar_fd[i].get(), long(region_list[i].size)) != 0)
                throw std::runtime_error("memfd for a fake BAR");
        }
        intx_count = with_intx ? 1 : 0;
    }

    const std::string& name() const override { return name_; }
    const std::vector<VfioRegionInfo>& regions() const override { return region_list; }
    VfioIrqInfo irq_info(std::uint32_t index) const override {
        const std::uint32_t count = index == VFIO_PCI_INTX_IRQ_INDEX ? intx_count
                                    : index == VFIO_PCI_MSI_IRQ_INDEX ? 4
                                    : index == VFIO_PCI_MSIX_IRQ_INDEX ? kMsixVectors : 0;
        return {index, 0, count};
    }
    void read_region(std::uint32_t index, std::uint64_t offset, std::span<std::uint8_t> out) const override {
        check(index, offset, out.size());
        if (index == VFIO_PCI_CONFIG_REGION_INDEX) {
            std::copy_n(config.begin() + long(offset), out.size(), out.begin());
            return;
        }
        if (::pread(bar_fd[index].get(), out.data(), out.size(), long(offset)) != ssize_t(out.size()))
            throw std::runtime_error("pread");
    }
    void write_region(std::uint32_t index, std::uint64_t offset, std::span<const std::uint8_t> in) const override {
        check(index, offset, in.size());
        if (index == VFIO_PCI_CONFIG_REGION_INDEX) {
            config_writes.push_back({std::uint32_t(offset), std::vector<std::uint8_t>(in.begin(), in.end())});
            std::copy(in.begin(), in.end(), config.begin() + long(offset));
            return;
        }
        bar_writes.push_back({index, offset});
        if (::pwrite(bar_fd[index].get(), in.data(), in.size(), long(offset)) != ssize_t(in.size()))
            throw std::runtime_error("pwrite");
    }
    std::vector<VfioRegionMapping> map_region(std::uint32_t index) const override {
        std::vector<VfioRegionMapping> out;
        if (!region_list[index].mappable()) return out;
        out.push_back({0, Mapping::of_fd(bar_fd[index].get(), region_list[index].size, PROT_READ | PROT_WRITE, 0)});
        return out;
    }
    void enable_msi(std::span<const std::int32_t> fds) override { enable(VFIO_PCI_MSI_IRQ_INDEX, fds); }
    void enable_msix(std::span<const std::int32_t> fds) override {
        if (fail_msix) throw std::system_error(EINVAL, std::generic_category(), "VFIO_DEVICE_SET_IRQS MSI-X");
        enable(VFIO_PCI_MSIX_IRQ_INDEX, fds);
    }
    void enable_intx(std::int32_t trigger, std::int32_t unmask) override {
        const std::int32_t fds[] = {trigger, unmask};
        enable(VFIO_PCI_INTX_IRQ_INDEX, fds);
    }
    void disable_irq(std::uint32_t index) override {
        if (active != int(index)) throw std::system_error(EINVAL, std::generic_category(), "disable of an inactive type");
        active = -1;
        active_fds.clear();
        log.push_back("disable " + std::to_string(index));
    }
    bool can_reset() const override { return true; }
    void reset() override { ++resets; }

    // The config bytes the function itself holds (what the host sees).
    mutable std::vector<std::uint8_t> config;
    std::vector<VfioRegionInfo> region_list;
    Fd bar_fd[6];
    std::uint32_t intx_count = 1;
    bool fail_msix = false;
    mutable std::vector<std::pair<std::uint32_t, std::vector<std::uint8_t>>> config_writes;
    mutable std::vector<std::pair<std::uint32_t, std::uint64_t>> bar_writes;
    int active = -1;  // VFIO irq index, -1: none
    std::vector<std::int32_t> active_fds;
    std::vector<std::string> log;
    int resets = 0;

private:
    void enable(std::uint32_t index, std::span<const std::int32_t> fds) {
        if (active != -1) throw std::system_error(EINVAL, std::generic_category(), "another irq type is active");
        active = int(index);
        active_fds.assign(fds.begin(), fds.end());
        log.push_back("enable " + std::to_string(index) + " x" + std::to_string(fds.size()));
    }
    void check(std::uint32_t index, std::uint64_t offset, std::size_t len) const {
        if (index >= region_list.size() || offset + len > region_list[index].size)
            throw Error("fake: access outside region " + std::to_string(index));
    }
    std::string name_ = "0000:03:00.0";
};

class RecordingVectors : public pci::MsiEventfdSink {
public:
    explicit RecordingVectors(unsigned n) {
        for (unsigned i = 0; i < n; ++i) fds.push_back(make_eventfd());
        state.resize(n);
    }
    struct State {
        std::uint64_t address = 0;
        std::uint32_t data = 0;
        bool masked = true;
    };
    void configure(unsigned v, std::uint64_t address, std::uint32_t data, bool masked) override {
        state.at(v) = {address, data, masked};
    }
    void trigger(unsigned) override {}
    unsigned vector_count() const override { return unsigned(fds.size()); }
    int vector_eventfd(unsigned v) const override { return fds.at(v).get(); }
    std::vector<Fd> fds;
    std::vector<State> state;
};

class FakeVm : public PassthroughVm {
public:
    std::uint32_t map_bar(std::uint64_t gpa, void* host, std::uint64_t size) override {
        slots[next] = {gpa, size, static_cast<std::uint8_t*>(host)};
        return next++;
    }
    void unmap_bar(std::uint32_t handle) override {
        if (!slots.erase(handle)) throw std::runtime_error("unmap of an unknown slot");
    }
    std::shared_ptr<pci::MsiEventfdSink> msi_vectors(unsigned count) override {
        auto v = std::make_shared<RecordingVectors>(count);
        sinks.push_back(v);
        return v;
    }
    void connect_intx(int trigger, int resample) override { intx = {trigger, resample}; }
    void disconnect_intx(int trigger) override {
        if (trigger != intx.first) throw std::runtime_error("disconnect of an unknown INTx");
        intx = {-1, -1};
    }
    struct Slot {
        std::uint64_t gpa, size;
        std::uint8_t* host;
    };
    std::map<std::uint32_t, Slot> slots;
    std::uint32_t next = 100;
    std::vector<std::shared_ptr<RecordingVectors>> sinks;
    std::pair<int, int> intx{-1, -1};
};

class PassthroughTest : public ::testing::Test {
protected:
    std::uint32_t read32(std::uint32_t off) {
        std::uint8_t b[4];
        dev->config_read(off, b);
        return std::uint32_t(bus_value(b));
    }
    std::uint16_t read16(std::uint32_t off) {
        std::uint8_t b[2];
        dev->config_read(off, b);
        return std::uint16_t(bus_value(b));
    }
    void write32(std::uint32_t off, std::uint32_t v) {
        std::uint8_t b[4];
        set_bus_value(b, v);
        dev->config_write(off, b);
    }
    void write16(std::uint32_t off, std::uint16_t v) {
        std::uint8_t b[2];
        set_bus_value(b, v);
        dev->config_write(off, b);
    }
    void make(bool with_msix = true, bool with_intx = true) {
        fn = std::make_shared<FakeFunction>(with_msix, with_intx);
        dev = std::make_shared<VfioPciDevice>(fn, vm);
    }
    RecordingVectors& msi_sink() { return *vm.sinks.at(0); }
    RecordingVectors& msix_sink() { return *vm.sinks.at(1); }

    FakeVm vm;
    std::shared_ptr<FakeFunction> fn;
    std::shared_ptr<VfioPciDevice> dev;
};

TEST_F(PassthroughTest, IdentityAndUnownedRegistersComeFromTheFunction) {
    make();
    EXPECT_EQ(read32(PCI_VENDOR_ID), 0x10d38086u);
    EXPECT_EQ(read32(PCI_CLASS_REVISION), 0x02000003u);
    EXPECT_EQ(read32(PCI_SUBSYSTEM_VENDOR_ID), 0xa01f8086u);
    EXPECT_EQ(read16(PCI_STATUS) & PCI_STATUS_CAP_LIST, PCI_STATUS_CAP_LIST);
    EXPECT_EQ(dev->msi_capability(), kMsiCap);
    EXPECT_EQ(dev->msix_capability(), kMsixCap);
    // The command register and the PM capability's control are the function's own.
    write16(PCI_COMMAND, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    EXPECT_EQ(fn->config[PCI_COMMAND], PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    EXPECT_EQ(read16(PCI_COMMAND), PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    write16(kPmCap + 4, 0x0003);  // D3hot
    EXPECT_EQ(fn->config[kPmCap + 4], 3);
}

TEST_F(PassthroughTest, BarsAreSizedByTheModelAndNeverReachTheFunction) {
    make();
    ASSERT_TRUE(dev->bar(0));
    EXPECT_EQ(dev->bar(0)->kind, pci::PciBarKind::Mem32);
    EXPECT_EQ(dev->bar(0)->size, kBar0Size);
    ASSERT_TRUE(dev->bar(2));
    EXPECT_EQ(dev->bar(2)->kind, pci::PciBarKind::Mem64);
    EXPECT_TRUE(dev->bar(2)->prefetchable);
    EXPECT_FALSE(dev->bar(3));  // upper half of BAR2
    ASSERT_TRUE(dev->bar(4));
    EXPECT_EQ(dev->bar(4)->kind, pci::PciBarKind::Io);
    EXPECT_FALSE(dev->bar(1));
    EXPECT_FALSE(dev->bar(5));

    // Linux's sizing dance on BAR0 and BAR4, then a guest address.
    write32(PCI_BASE_ADDRESS_0, 0xffffffff);
    EXPECT_EQ(read32(PCI_BASE_ADDRESS_0), ~std::uint32_t(kBar0Size - 1));
    write32(PCI_BASE_ADDRESS_4, 0xffffffff);
    EXPECT_EQ(read32(PCI_BASE_ADDRESS_4) & 0xffff, (~std::uint32_t(kBar4Size - 1) & 0xffff) | PCI_BASE_ADDRESS_SPACE_IO);
    write32(PCI_BASE_ADDRESS_2, 0xffffffff);
    EXPECT_EQ(read32(PCI_BASE_ADDRESS_2),
              (~std::uint32_t(kBar2Size - 1)) | PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH);
    write32(PCI_BASE_ADDRESS_0, 0xc0004000);
    EXPECT_EQ(read32(PCI_BASE_ADDRESS_0), 0xc0004000u);
    // The function's own BARs still hold the host addresses.
    EXPECT_EQ(get32(fn->config, PCI_BASE_ADDRESS_0), 0xfebc0000u);
    EXPECT_EQ(get32(fn->config, PCI_BASE_ADDRESS_4), 0xc041u);
    for (const auto& [off, bytes] : fn->config_writes) EXPECT_TRUE(off < PCI_BASE_ADDRESS_0 || off > PCI_BASE_ADDRESS_5 + 3) << off;
    // The ROM is not exposed; the interrupt pin is the function's.
    write32(PCI_ROM_ADDRESS, 0xffffffff);
    EXPECT_EQ(read32(PCI_ROM_ADDRESS), 0u);
    EXPECT_EQ(get32(fn->config, PCI_ROM_ADDRESS), 0xfeb80000u);
    EXPECT_EQ(dev->interrupt_pin(), 1);
    EXPECT_EQ(read32(PCI_INTERRUPT_LINE) >> 8 & 0xff, 1u);
}

TEST_F(PassthroughTest, MappableBarsBecomeSlotsExceptTheMsixPages) {
    make();
    dev->bar_mapped(0, 0xc0000000);
    // BAR0 is 4 pages; the table (page 2) and PBA (page 3) trap: one slot for pages 0-1.
    ASSERT_EQ(vm.slots.size(), 1u);
    EXPECT_EQ(vm.slots.begin()->second.gpa, 0xc0000000u);
    EXPECT_EQ(vm.slots.begin()->second.size, 0x2000u);
    // What the guest writes through the slot is what the function holds.
    vm.slots.begin()->second.host[0x10] = 0x5a;
    std::uint8_t b[1];
    fn->read_region(0, 0x10, b);
    EXPECT_EQ(b[0], 0x5a);

    dev->bar_mapped(2, 0x800000000ull);
    EXPECT_EQ(vm.slots.size(), 2u);
    EXPECT_EQ(dev->mapped_bar_slots(), 2u);
    // Moving BAR0 replaces its slot; disabling decode removes it.
    dev->bar_mapped(0, 0xd0000000);
    EXPECT_EQ(vm.slots.size(), 2u);
    bool found = false;
    for (auto& [h, s] : vm.slots) found |= s.gpa == 0xd0000000;
    EXPECT_TRUE(found);
    dev->bar_mapped(0, std::nullopt);
    dev->bar_mapped(2, std::nullopt);
    EXPECT_TRUE(vm.slots.empty());
    // The I/O BAR is never a slot.
    dev->bar_mapped(4, 0xc000);
    EXPECT_TRUE(vm.slots.empty());
}

TEST_F(PassthroughTest, TrappedAccessesGoToTheFunctionButTheMsixTableIsEmulated) {
    make();
    auto bar0 = dev->bar_device(0);
    ASSERT_TRUE(bar0);
    std::uint8_t v[4];
    set_bus_value(v, 0x11223344);
    bar0->write(0x2800, v);  // same page as the table, past it: the function's register
    std::uint8_t back[4];
    fn->read_region(0, 0x2800, back);
    EXPECT_EQ(bus_value(back), 0x11223344u);
    bar0->read(0x2800, back);
    EXPECT_EQ(bus_value(back), 0x11223344u);

    // Table entry 1's message data: kept by the model, the function's table untouched.
    set_bus_value(v, 0x4055);
    bar0->write(kMsixTable + 16 + 8, v);
    bar0->read(kMsixTable + 16 + 8, back);
    EXPECT_EQ(bus_value(back), 0x4055u);
    fn->read_region(0, kMsixTable + 16 + 8, back);
    EXPECT_EQ(bus_value(back), 0u);
    for (const auto& [bar, off] : fn->bar_writes) EXPECT_FALSE(off >= kMsixTable && off < kMsixTable + 16 * kMsixVectors);
    // The PBA is read-only.
    set_bus_value(v, 0xffffffff);
    bar0->write(kMsixPba, v);
    bar0->read(kMsixPba, back);
    EXPECT_EQ(bus_value(back), 0u);

    // The I/O BAR traps to the function.
    auto bar4 = dev->bar_device(4);
    std::uint8_t w[2];
    set_bus_value(w, 0xbeef);
    bar4->write(4, w);
    std::uint8_t r[2];
    fn->read_region(4, 4, r);
    EXPECT_EQ(bus_value(r), 0xbeefu);
}

TEST_F(PassthroughTest, StartResetsAndArmsIntxThroughTheVm) {
    make();
    EXPECT_EQ(dev->irq_mode(), IrqMode::None);
    dev->start();
    EXPECT_EQ(fn->resets, 1);
    EXPECT_EQ(dev->irq_mode(), IrqMode::Intx);
    EXPECT_EQ(fn->active, int(VFIO_PCI_INTX_IRQ_INDEX));
    ASSERT_EQ(fn->active_fds.size(), 2u);
    EXPECT_EQ(vm.intx.first, fn->active_fds[0]);
    EXPECT_EQ(vm.intx.second, fn->active_fds[1]);
    EXPECT_GE(vm.intx.first, 0);
}

TEST_F(PassthroughTest, NoIntxWithoutAVfioIntxInterrupt) {
    make(true, /*with_intx=*/false);
    EXPECT_EQ(dev->interrupt_pin(), 0);
    EXPECT_EQ(read32(PCI_INTERRUPT_LINE) >> 8 & 0xff, 0u);
    dev->start();
    EXPECT_EQ(dev->irq_mode(), IrqMode::None);
    EXPECT_EQ(vm.intx.first, -1);
}

TEST_F(PassthroughTest, MsixEnableSwitchesFromIntxAndRoutesTheGuestsTable) {
    make();
    dev->start();
    auto bar0 = dev->bar_device(0);
    // Entry 3: address 0xfee00000, data 0x4031, unmasked.
    std::uint8_t v[4];
    set_bus_value(v, 0xfee00000);
    bar0->write(kMsixTable + 3 * 16, v);
    set_bus_value(v, 0);
    bar0->write(kMsixTable + 3 * 16 + 4, v);
    set_bus_value(v, 0x4031);
    bar0->write(kMsixTable + 3 * 16 + 8, v);
    set_bus_value(v, 0);
    bar0->write(kMsixTable + 3 * 16 + 12, v);
    EXPECT_TRUE(msix_sink().state[3].masked);  // MSI-X still off

    // The guest sees the function's table size with enable/mask clear, and enables.
    EXPECT_EQ(read16(kMsixCap + 2), kMsixVectors - 1);
    write16(kMsixCap + 2, PCI_MSIX_FLAGS_ENABLE);
    EXPECT_EQ(dev->irq_mode(), IrqMode::Msix);
    EXPECT_EQ(fn->active, int(VFIO_PCI_MSIX_IRQ_INDEX));
    ASSERT_EQ(fn->active_fds.size(), kMsixVectors);
    for (unsigned i = 0; i < kMsixVectors; ++i) EXPECT_EQ(fn->active_fds[i], msix_sink().vector_eventfd(i));
    EXPECT_EQ(vm.intx.first, -1);  // INTx was disconnected first
    EXPECT_FALSE(msix_sink().state[3].masked);
    EXPECT_EQ(msix_sink().state[3].address, 0xfee00000u);
    EXPECT_EQ(msix_sink().state[3].data, 0x4031u);
    EXPECT_TRUE(msix_sink().state[0].masked);
    // The function's own control word was never written by the guest.
    for (const auto& [off, bytes] : fn->config_writes) EXPECT_FALSE(off >= kMsixCap + 2 && off < kMsixCap + 4);

    // Function mask: every vector held; unmask: delivered again.
    write16(kMsixCap + 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    EXPECT_TRUE(msix_sink().state[3].masked);
    EXPECT_EQ(dev->irq_mode(), IrqMode::Msix);
    write16(kMsixCap + 2, PCI_MSIX_FLAGS_ENABLE);
    EXPECT_FALSE(msix_sink().state[3].masked);

    write16(kMsixCap + 2, 0);
    EXPECT_EQ(dev->irq_mode(), IrqMode::Intx);
    EXPECT_EQ(fn->active, int(VFIO_PCI_INTX_IRQ_INDEX));
    EXPECT_TRUE(msix_sink().state[3].masked);
}

TEST_F(PassthroughTest, MsiIsEmulatedWithMultipleVectorsAndMasks) {
    make();
    dev->start();
    // The guest sees a clean capability: disabled, no host address/data.
    EXPECT_EQ(read16(kMsiCap + 2), PCI_MSI_FLAGS_64BIT | PCI_MSI_FLAGS_MASKBIT | (2 << 1));
    EXPECT_EQ(read32(kMsiCap + 4), 0u);
    EXPECT_EQ(read16(kMsiCap + 12), 0u);
    write32(kMsiCap + 4, 0xfee02000);
    write32(kMsiCap + 8, 0);
    write16(kMsiCap + 12, 0x4060);
    write32(kMsiCap + 16, 0x2);  // vector 1 masked
    write16(kMsiCap + 2, PCI_MSI_FLAGS_ENABLE | (2 << 4));  // 4 vectors
    EXPECT_EQ(dev->irq_mode(), IrqMode::Msi);
    EXPECT_EQ(fn->active, int(VFIO_PCI_MSI_IRQ_INDEX));
    ASSERT_EQ(fn->active_fds.size(), 4u);
    EXPECT_FALSE(msi_sink().state[0].masked);
    EXPECT_EQ(msi_sink().state[0].address, 0xfee02000u);
    EXPECT_EQ(msi_sink().state[0].data, 0x4060u);
    EXPECT_TRUE(msi_sink().state[1].masked);
    EXPECT_EQ(msi_sink().state[2].data, 0x4062u);
    EXPECT_EQ(msi_sink().state[3].data, 0x4063u);
    // The function's own MSI registers keep the host's values.
    EXPECT_EQ(get32(fn->config, kMsiCap + 4), 0xfee01000u);
    // Asking for more vectors than the function has is capped at what it has (4).
    write16(kMsiCap + 2, PCI_MSI_FLAGS_ENABLE | (5 << 4));
    EXPECT_EQ(fn->active_fds.size(), 4u);
    // One vector: re-enabled with one eventfd.
    write16(kMsiCap + 2, PCI_MSI_FLAGS_ENABLE);
    EXPECT_EQ(fn->active_fds.size(), 1u);
    EXPECT_TRUE(msi_sink().state[2].masked);
    write16(kMsiCap + 2, 0);
    EXPECT_EQ(dev->irq_mode(), IrqMode::Intx);
}

TEST_F(PassthroughTest, AHostFailureToSwitchLeavesNoModeAndDoesNotThrow) {
    make();
    dev->start();
    fn->fail_msix = true;
    EXPECT_NO_THROW(write16(kMsixCap + 2, PCI_MSIX_FLAGS_ENABLE));
    EXPECT_EQ(dev->irq_mode(), IrqMode::None);
    EXPECT_EQ(fn->active, -1);
    fn->fail_msix = false;
    write16(kMsixCap + 2, 0);
    write16(kMsixCap + 2, PCI_MSIX_FLAGS_ENABLE);
    EXPECT_EQ(dev->irq_mode(), IrqMode::Msix);
}

TEST_F(PassthroughTest, ReleaseDisablesInterruptsUnmapsAndResets) {
    make();
    dev->start();
    dev->bar_mapped(0, 0xc0000000);
    write16(kMsixCap + 2, PCI_MSIX_FLAGS_ENABLE);
    const int resets = fn->resets;
    dev.reset();
    EXPECT_EQ(fn->active, -1);
    EXPECT_TRUE(vm.slots.empty());
    EXPECT_EQ(fn->resets, resets + 1);
}

TEST_F(PassthroughTest, HostileConfigAccessesStayInBounds) {
    make();
    std::uint8_t b[4] = {1, 2, 3, 4};
    dev->config_read(0xffe, b);  // crosses the end of config space
    EXPECT_EQ(bus_value(b), 0xffffffffu);
    EXPECT_NO_THROW(dev->config_write(0xffe, b));
    // Extended space of a 256-byte function reads 0 (Linux: no extended capabilities).
    dev->config_read(0x100, b);
    EXPECT_EQ(bus_value(b), 0u);
    EXPECT_NO_THROW(dev->config_write(0x100, b));
    // BAR accesses past the region read all-ones and are dropped, never thrown.
    std::uint8_t r[4];
    dev->bar_device(4)->read(kBar4Size + 8, r);
    EXPECT_EQ(bus_value(r), 0xffffffffu);
}

TEST(PassthroughSetup, RefusesBridgesAndBadMsixPlacement) {
    FakeVm vm;
    auto bridge = std::make_shared<FakeFunction>();
    bridge->config[PCI_HEADER_TYPE] = PCI_HEADER_TYPE_BRIDGE;
    EXPECT_THROW(VfioPciDevice(bridge, vm), Error);
    auto bad = std::make_shared<FakeFunction>();
    put32(bad->config, kMsixCap + 4, 0x8000 | 0);  // table past BAR0's 16 KiB
    EXPECT_THROW(VfioPciDevice(bad, vm), Error);
    auto no_config = std::make_shared<FakeFunction>();
    no_config->region_list[VFIO_PCI_CONFIG_REGION_INDEX].size = 0;
    EXPECT_THROW(VfioPciDevice(no_config, vm), Error);
}

// On the root bus: BAR placement, the guest enabling memory decode maps BAR0 into the VM, and
// moving the BAR moves the slot.
TEST_F(PassthroughTest, OnTheRootBusDecodeMapsTheBars) {
    make();
    IoBus pio("pio"), mmio("mmio");
    const auto ram = x86::ram_layout(256ull << 20);
    pci::PciRootBus bus(pio, mmio, pci::pc_pci_windows(ram),
                        [](std::uint32_t) { return std::make_shared<test::FakeInterruptLine>(); });
    const unsigned slot = bus.add_device(dev);
    std::uint8_t b[4];
    bus.config_read({0, slot, 0}, PCI_BASE_ADDRESS_0, b);
    const std::uint32_t bar0 = std::uint32_t(bus_value(b)) & ~0xfu;
    EXPECT_NE(bar0, 0u);
    EXPECT_EQ(bar0 % kBar0Size, 0u);
    EXPECT_TRUE(vm.slots.empty());
    std::uint8_t cmd[2];
    set_bus_value(cmd, PCI_COMMAND_MEMORY | PCI_COMMAND_IO);
    bus.config_write({0, slot, 0}, PCI_COMMAND, cmd);
    bool found = false;
    for (auto& [h, s] : vm.slots) found |= s.gpa == bar0 && s.size == 0x2000;
    EXPECT_TRUE(found);
    // The trapped part of BAR0 (the MSI-X page) is on the MMIO bus.
    std::uint8_t v[4];
    set_bus_value(v, 0x4077);
    EXPECT_TRUE(mmio.write(bar0 + kMsixTable + 8, v));
    EXPECT_TRUE(mmio.read(bar0 + kMsixTable + 8, b));
    EXPECT_EQ(bus_value(b), 0x4077u);
    set_bus_value(cmd, 0);
    bus.config_write({0, slot, 0}, PCI_COMMAND, cmd);
    EXPECT_TRUE(vm.slots.empty());
}

}  // namespace
}  // namespace vmm::vfio
