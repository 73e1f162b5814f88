#include "vfio/passthrough/vfio_pci_device.h"

#include "common/error.h"
#include "common/log.h"

#include <linux/pci_regs.h>
#include <linux/vfio.h>

#include <algorithm>

namespace vmm::vfio {

namespace {

constexpr std::uint32_t kConfigIndex = VFIO_PCI_CONFIG_REGION_INDEX;
constexpr std::uint64_t kPage = 4096;

std::uint16_t le16(const std::vector<std::uint8_t>& b, std::uint32_t o) {
    return std::uint16_t(b[o] | b[o + 1] << 8);
}
std::uint32_t le32(const std::vector<std::uint8_t>& b, std::uint32_t o) {
    return std::uint32_t(le16(b, o)) | std::uint32_t(le16(b, o + 2)) << 16;
}

std::vector<std::uint8_t> read_config_bytes(const VfioDeviceIo& d, std::uint64_t& size) {
    const auto& regions = d.regions();
    if (regions.size() <= kConfigIndex || regions[kConfigIndex].size < 64)
        throw Error(d.name() + ": VFIO offers no PCI configuration space region");
    size = std::min<std::uint64_t>(regions[kConfigIndex].size, pci::kConfigSpaceSize);
    std::vector<std::uint8_t> bytes(pci::kConfigSpaceSize, 0);
    d.read_region(kConfigIndex, 0, std::span(bytes.data(), size));
    return bytes;
}

pci::PciIdentity identity_of(const std::vector<std::uint8_t>& b) {
    pci::PciIdentity id;
    id.vendor_id = le16(b, PCI_VENDOR_ID);
    id.device_id = le16(b, PCI_DEVICE_ID);
    id.revision = b[PCI_REVISION_ID];
    id.class_code = std::uint32_t(b[PCI_CLASS_PROG]) | std::uint32_t(b[PCI_CLASS_DEVICE]) << 8 |
                    std::uint32_t(b[PCI_CLASS_DEVICE + 1]) << 16;
    id.subsystem_vendor_id = le16(b, PCI_SUBSYSTEM_VENDOR_ID);
    id.subsystem_id = le16(b, PCI_SUBSYSTEM_ID);
    return id;
}

std::uint64_t round_up_pow2(std::uint64_t v) {
    std::uint64_t p = 1;
    while (p < v) p <<= 1;
    return p;
}

bool overlaps(std::uint64_t a, std::uint64_t alen, std::uint64_t b, std::uint64_t blen) {
    return a < b + blen && b < a + alen;
}

}  // namespace

const char* to_string(IrqMode mode) {
    switch (mode) {
        case IrqMode::None: return "none";
        case IrqMode::Intx: return "INTx";
        case IrqMode::Msi: return "MSI";
        case IrqMode::Msix: return "MSI-X";
    }
    return "?";
}

// Accesses to a BAR that are not mapped into the guest: the MSI-X table and PBA are emulated,
// everything else goes to the function through the VFIO region.
class VfioPciDevice::BarTrap : public BusDevice {
public:
    BarTrap(std::shared_ptr<VfioDeviceIo> device, unsigned bar, std::shared_ptr<pci::MsixTable> msix,
            std::optional<std::uint64_t> table, std::optional<std::uint64_t> pba)
        : device_(std::move(device)), bar_(bar), msix_(std::move(msix)), table_(table), pba_(pba) {}

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override {
        if (table_ && in(offset, *table_, msix_->table_bytes())) return msix_->table_read(offset - *table_, data);
        if (pba_ && in(offset, *pba_, msix_->pba_bytes())) return msix_->pba_read(offset - *pba_, data);
        try {
            device_->read_region(bar_, offset, data);
        } catch (const std::exception& e) {
            std::fill(data.begin(), data.end(), 0xff);
            logger("vfio")->warn("{}: BAR{} read at {:#x}: {}", device_->name(), bar_, offset, e.what());
        }
    }
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
        if (table_ && in(offset, *table_, msix_->table_bytes())) return msix_->table_write(offset - *table_, data);
        if (pba_ && in(offset, *pba_, msix_->pba_bytes())) return;  // read-only
        try {
            device_->write_region(bar_, offset, data);
        } catch (const std::exception& e) {
            logger("vfio")->warn("{}: BAR{} write at {:#x}: {}", device_->name(), bar_, offset, e.what());
        }
    }

private:
    static bool in(std::uint64_t offset, std::uint64_t start, std::uint64_t len) {
        return offset >= start && offset - start < len;
    }
    std::shared_ptr<VfioDeviceIo> device_;
    unsigned bar_;
    std::shared_ptr<pci::MsixTable> msix_;
    std::optional<std::uint64_t> table_, pba_;
};

VfioPciDevice::VfioPciDevice(std::shared_ptr<VfioDeviceIo> device, PassthroughVm& vm)
    : device_(std::move(device)),
      vm_(vm),
      name_(device_ ? device_->name() : std::string()),
      initial_config_(device_ ? read_config_bytes(*device_, config_size_) : throw Error("vfio-pci: no device")),
      shadow_(identity_of(initial_config_)) {
    if ((initial_config_[PCI_HEADER_TYPE] & 0x7f) != PCI_HEADER_TYPE_NORMAL)
        throw Error(name_ + ": header type " + std::to_string(initial_config_[PCI_HEADER_TYPE] & 0x7f) +
                    " (a bridge): only endpoint functions can be passed through");
    for (std::uint32_t o = PCI_BASE_ADDRESS_0; o <= PCI_BASE_ADDRESS_5 + 3; ++o) emulated_.set(o);
    for (std::uint32_t o = PCI_ROM_ADDRESS; o < PCI_ROM_ADDRESS + 4; ++o) emulated_.set(o);
    emulated_.set(PCI_INTERRUPT_LINE);
    emulated_.set(PCI_INTERRUPT_PIN);

    const VfioIrqInfo intx = device_->irq_info(VFIO_PCI_INTX_IRQ_INDEX);
    const std::uint8_t pin = initial_config_[PCI_INTERRUPT_PIN];
    pin_ = (intx.count > 0 && pin >= 1 && pin <= 4) ? pin : 0;
    shadow_.set_interrupt_pin(pin_);

    read_capabilities();

    const auto& regions = device_->regions();
    for (unsigned i = 0; i < pci::kNumBars; ++i) {
        if (i > 0 && bars_[i - 1] && bars_[i - 1]->desc.kind == pci::PciBarKind::Mem64) continue;
        if (i >= regions.size() || regions[i].size == 0) continue;
        const std::uint32_t raw = le32(initial_config_, PCI_BASE_ADDRESS_0 + 4 * i);
        Bar bar;
        if (raw & PCI_BASE_ADDRESS_SPACE_IO) {
            bar.desc.kind = pci::PciBarKind::Io;
            bar.desc.size = std::max<std::uint64_t>(round_up_pow2(regions[i].size), 4);
        } else {
            const bool is64 = (raw & PCI_BASE_ADDRESS_MEM_TYPE_MASK) == PCI_BASE_ADDRESS_MEM_TYPE_64;
            if (is64 && i == pci::kNumBars - 1) throw Error(name_ + ": BAR5 claims to be 64-bit");
            bar.desc.kind = is64 ? pci::PciBarKind::Mem64 : pci::PciBarKind::Mem32;
            bar.desc.prefetchable = raw & PCI_BASE_ADDRESS_MEM_PREFETCH;
            bar.desc.size = std::max<std::uint64_t>(round_up_pow2(regions[i].size), 16);
        }
        shadow_.add_bar(i, bar.desc);
        const bool has_table = msix_ && msix_table_bar_ == i;
        const bool has_pba = msix_ && msix_pba_bar_ == i;
        bar.trap = std::make_shared<BarTrap>(device_, i, msix_,
                                             has_table ? std::optional(msix_table_offset_) : std::nullopt,
                                             has_pba ? std::optional(msix_pba_offset_) : std::nullopt);
        bars_[i] = std::move(bar);
        if (bars_[i]->desc.kind != pci::PciBarKind::Io && regions[i].mappable()) plan_bar_maps(i);
    }
    if (msix_ && (!bars_[msix_table_bar_] || !bars_[msix_pba_bar_] ||
                  bars_[msix_table_bar_]->desc.kind == pci::PciBarKind::Io ||
                  msix_table_offset_ + msix_->table_bytes() > bars_[msix_table_bar_]->desc.size ||
                  msix_pba_offset_ + msix_->pba_bytes() > bars_[msix_pba_bar_]->desc.size))
        throw Error(name_ + ": the MSI-X table or PBA lies outside its BAR");
    logger("vfio")->info("{}: {:04x}:{:04x}, {} config bytes, pin {}, MSI {}, MSI-X {}", name_,
                         le16(initial_config_, 0), le16(initial_config_, 2), config_size_, pin_,
                         msi_cap_ ? std::to_string(msi_max_vectors_) + " vectors" : std::string("no"),
                         msix_ ? std::to_string(msix_->vectors()) + " vectors" : std::string("no"));
}

VfioPciDevice::~VfioPciDevice() {
    std::lock_guard lock(mutex_);
    set_mode_locked(IrqMode::None);
    for (auto& bar : bars_)
        if (bar) unmap_bar_locked(*bar);
    if (device_->can_reset()) {
        try {
            device_->reset();
        } catch (const std::exception& e) {
            logger("vfio")->warn("{}: reset on release: {}", name_, e.what());
        }
    }
}

void VfioPciDevice::read_capabilities() {
    if (!(le16(initial_config_, PCI_STATUS) & PCI_STATUS_CAP_LIST)) return;
    std::uint32_t ptr = initial_config_[PCI_CAPABILITY_LIST] & 0xfc;
    for (unsigned hops = 0; ptr >= 0x40 && ptr < 0x100 && hops < 48; ++hops) {
        const std::uint8_t id = initial_config_[ptr];
        if (id == PCI_CAP_ID_MSI && !msi_cap_) {
            msi_cap_ = std::uint8_t(ptr);
            setup_msi_shadow();
        } else if (id == PCI_CAP_ID_MSIX && !msix_cap_) {
            msix_cap_ = std::uint8_t(ptr);
            setup_msix();
        }
        ptr = initial_config_[ptr + 1] & 0xfc;
    }
}

// MSI capability layout (PCI 3.0 §6.8.1): control at +2; address at +4; with 64-bit
// addressing the upper address at +8 and data at +12, else data at +8; with per-vector masking
// the mask bits after the data (dword aligned), then the pending bits.
void VfioPciDevice::setup_msi_shadow() {
    const std::uint32_t c = msi_cap_;
    const std::uint16_t control = le16(initial_config_, c + PCI_MSI_FLAGS);
    msi_64bit_ = control & PCI_MSI_FLAGS_64BIT;
    msi_maskable_ = control & PCI_MSI_FLAGS_MASKBIT;
    msi_max_vectors_ = 1u << std::min<unsigned>((control & PCI_MSI_FLAGS_QMASK) >> 1, 5);
    const std::uint32_t data = c + (msi_64bit_ ? PCI_MSI_DATA_64 : PCI_MSI_DATA_32);
    msi_end_ = msi_maskable_ ? data + 12 : data + 2;
    if (msi_end_ > 0x100) throw Error(name_ + ": MSI capability overruns the config header");
    for (std::uint32_t o = c + PCI_MSI_FLAGS; o < msi_end_; ++o) {
        emulated_.set(o);
        shadow_.store8(o, 0);
    }
    // Guest-visible reset state: disabled, one vector enabled, no address/data/mask.
    shadow_.store16(c + PCI_MSI_FLAGS, control & ~(PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE));
    const std::uint8_t ctl_mask[2] = {std::uint8_t(PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE), 0};
    shadow_.set_writable(c + PCI_MSI_FLAGS, ctl_mask);
    const std::uint8_t addr_lo[4] = {0xfc, 0xff, 0xff, 0xff};
    shadow_.set_writable(c + PCI_MSI_ADDRESS_LO, addr_lo);
    const std::uint8_t all[4] = {0xff, 0xff, 0xff, 0xff};
    if (msi_64bit_) shadow_.set_writable(c + PCI_MSI_ADDRESS_HI, all);
    shadow_.set_writable(data, std::span(all, 2));
    if (msi_maskable_) {
        const std::uint32_t bits = msi_max_vectors_ == 32 ? 0xffffffffu : (1u << msi_max_vectors_) - 1;
        const std::uint8_t m[4] = {std::uint8_t(bits), std::uint8_t(bits >> 8), std::uint8_t(bits >> 16),
                                   std::uint8_t(bits >> 24)};
        shadow_.set_writable(data + 4, m);
    }
    msi_sink_ = vm_.msi_vectors(msi_max_vectors_);
}

void VfioPciDevice::setup_msix() {
    const std::uint32_t c = msix_cap_;
    const std::uint16_t control = le16(initial_config_, c + PCI_MSIX_FLAGS);
    const unsigned vectors = (control & PCI_MSIX_FLAGS_QSIZE) + 1;
    const std::uint32_t table = le32(initial_config_, c + PCI_MSIX_TABLE);
    const std::uint32_t pba = le32(initial_config_, c + PCI_MSIX_PBA);
    msix_table_bar_ = table & PCI_MSIX_TABLE_BIR;
    msix_table_offset_ = table & PCI_MSIX_TABLE_OFFSET;
    msix_pba_bar_ = pba & PCI_MSIX_PBA_BIR;
    msix_pba_offset_ = pba & PCI_MSIX_PBA_OFFSET;
    if (msix_table_bar_ >= pci::kNumBars || msix_pba_bar_ >= pci::kNumBars)
        throw Error(name_ + ": MSI-X table/PBA in BAR index >= 6");
    msix_sink_ = vm_.msi_vectors(vectors);
    msix_ = std::make_shared<pci::MsixTable>(vectors, msix_sink_);
    msix_->attach_capability(std::uint8_t(c));
    emulated_.set(c + PCI_MSIX_FLAGS);
    emulated_.set(c + PCI_MSIX_FLAGS + 1);
    shadow_.store16(c + PCI_MSIX_FLAGS, control & ~(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL));
    const std::uint8_t wmask[2] = {0, std::uint8_t((PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL) >> 8)};
    shadow_.set_writable(c + PCI_MSIX_FLAGS, wmask);
}

// The parts of a BAR's host mappings that go to the guest: whole pages, minus the pages that
// hold the MSI-X table or PBA (those must trap).
void VfioPciDevice::plan_bar_maps(unsigned index) {
    Bar& bar = *bars_[index];
    bar.mappings = device_->map_region(index);
    std::vector<std::pair<std::uint64_t, std::uint64_t>> holes;
    auto page_span = [](std::uint64_t off, std::uint64_t len) {
        const std::uint64_t start = off & ~(kPage - 1);
        return std::pair(start, ((off + len + kPage - 1) & ~(kPage - 1)) - start);
    };
    if (msix_ && msix_table_bar_ == index) holes.push_back(page_span(msix_table_offset_, msix_->table_bytes()));
    if (msix_ && msix_pba_bar_ == index) holes.push_back(page_span(msix_pba_offset_, msix_->pba_bytes()));
    for (const auto& m : bar.mappings) {
        const std::uint64_t end = m.offset + m.mapping.size();
        for (std::uint64_t p = m.offset; p < end; p += kPage) {
            const bool hole = std::any_of(holes.begin(), holes.end(),
                                          [&](const auto& h) { return overlaps(p, kPage, h.first, h.second); });
            if (hole) continue;
            if (!bar.map_areas.empty() && bar.map_areas.back().first + bar.map_areas.back().second == p &&
                p != m.offset)
                bar.map_areas.back().second += kPage;
            else
                bar.map_areas.emplace_back(p, kPage);
        }
    }
}

std::optional<pci::PciBar> VfioPciDevice::bar(unsigned index) const {
    if (index >= pci::kNumBars || !bars_[index]) return std::nullopt;
    return bars_[index]->desc;
}

std::shared_ptr<BusDevice> VfioPciDevice::bar_device(unsigned index) {
    if (index >= pci::kNumBars || !bars_[index]) return nullptr;
    return bars_[index]->trap;
}

std::string VfioPciDevice::name() const { return "vfio-" + name_; }

void VfioPciDevice::unmap_bar_locked(Bar& bar) {
    for (std::uint32_t slot : bar.slots) {
        try {
            vm_.unmap_bar(slot);
        } catch (const std::exception& e) {
            logger("vfio")->error("{}: unmapping a BAR slot: {}", name_, e.what());
        }
    }
    bar.slots.clear();
}

void VfioPciDevice::bar_mapped(unsigned index, std::optional<std::uint64_t> gpa) {
    if (index >= pci::kNumBars || !bars_[index]) return;
    std::lock_guard lock(mutex_);
    Bar& bar = *bars_[index];
    unmap_bar_locked(bar);
    if (!gpa) return;
    for (const auto& [offset, size] : bar.map_areas) {
        if ((*gpa + offset) % kPage != 0) continue;  // trapped instead
        std::uint8_t* host = nullptr;
        for (const auto& m : bar.mappings)
            if (offset >= m.offset && offset + size <= m.offset + m.mapping.size())
                host = m.mapping.data() + (offset - m.offset);
        if (!host) continue;
        try {
            bar.slots.push_back(vm_.map_bar(*gpa + offset, host, size));
        } catch (const std::exception& e) {
            // The trap still serves the range, through VM exits.
            logger("vfio")->error("{}: mapping BAR{} +{:#x} at {:#x}: {}", name_, index, offset, *gpa + offset,
                                  e.what());
        }
    }
}

std::size_t VfioPciDevice::mapped_bar_slots() const {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& bar : bars_)
        if (bar) n += bar->slots.size();
    return n;
}

void VfioPciDevice::read_device_config(std::uint32_t offset, std::span<std::uint8_t> out) const {
    std::fill(out.begin(), out.end(), 0);
    if (offset >= config_size_) return;  // no extended space: reads 0 (Linux then sees none)
    const std::size_t n = std::min<std::uint64_t>(out.size(), config_size_ - offset);
    try {
        device_->read_region(kConfigIndex, offset, out.first(n));
    } catch (const std::exception& e) {
        std::fill(out.begin(), out.end(), 0xff);
        logger("vfio")->warn("{}: config read at {:#x}: {}", name_, offset, e.what());
    }
}

void VfioPciDevice::write_device_config(std::uint32_t offset, std::span<const std::uint8_t> in) {
    if (offset >= config_size_) return;
    const std::size_t n = std::min<std::uint64_t>(in.size(), config_size_ - offset);
    try {
        device_->write_region(kConfigIndex, offset, in.first(n));
    } catch (const std::exception& e) {
        logger("vfio")->warn("{}: config write at {:#x}: {}", name_, offset, e.what());
    }
}

void VfioPciDevice::config_read(std::uint32_t offset, std::span<std::uint8_t> data) {
    if (offset >= pci::kConfigSpaceSize || data.size() > pci::kConfigSpaceSize - offset) {
        std::fill(data.begin(), data.end(), 0xff);
        return;
    }
    bool any_device = false;
    for (std::size_t i = 0; i < data.size(); ++i) any_device |= !emulated_.test(offset + i);
    if (any_device) read_device_config(offset, data);
    for (std::size_t i = 0; i < data.size(); ++i)
        if (emulated_.test(offset + i)) shadow_.read(std::uint32_t(offset + i), data.subspan(i, 1));
}

void VfioPciDevice::config_write(std::uint32_t offset, std::span<const std::uint8_t> data) {
    if (offset >= pci::kConfigSpaceSize || data.size() > pci::kConfigSpaceSize - offset) return;
    std::size_t i = 0;
    while (i < data.size()) {
        const bool emu = emulated_.test(offset + i);
        std::size_t j = i;
        while (j < data.size() && emulated_.test(offset + j) == emu) ++j;
        if (emu)
            shadow_.write(std::uint32_t(offset + i), data.subspan(i, j - i));
        else
            write_device_config(std::uint32_t(offset + i), data.subspan(i, j - i));
        i = j;
    }
    const auto touches = [&](std::uint32_t start, std::uint32_t len) {
        return len && overlaps(offset, data.size(), start, len);
    };
    if (msi_cap_ && touches(msi_cap_ + PCI_MSI_FLAGS, msi_end_ - (msi_cap_ + PCI_MSI_FLAGS))) after_msi_write();
    if (msix_cap_ && touches(msix_cap_ + PCI_MSIX_FLAGS, 2)) after_msix_write();
}

void VfioPciDevice::after_msi_write() {
    const std::uint32_t c = msi_cap_;
    const std::uint16_t control = shadow_.read16(c + PCI_MSI_FLAGS);
    const bool enabled = control & PCI_MSI_FLAGS_ENABLE;
    const unsigned nvec = std::min(1u << ((control & PCI_MSI_FLAGS_QSIZE) >> 4), msi_max_vectors_);
    std::uint64_t address = shadow_.read32(c + PCI_MSI_ADDRESS_LO);
    if (msi_64bit_) address |= std::uint64_t(shadow_.read32(c + PCI_MSI_ADDRESS_HI)) << 32;
    const std::uint32_t data_off = c + (msi_64bit_ ? PCI_MSI_DATA_64 : PCI_MSI_DATA_32);
    const std::uint32_t data = shadow_.read16(data_off);
    const std::uint32_t mask = msi_maskable_ ? shadow_.read32(data_off + 4) : 0;
    std::lock_guard lock(mutex_);
    for (unsigned v = 0; v < msi_max_vectors_; ++v) {
        const bool masked = !enabled || v >= nvec || ((mask >> v) & 1);
        msi_sink_->configure(v, address, (data & ~(nvec - 1)) | v, masked);
    }
    if (enabled && (mode_ != IrqMode::Msi || msi_enabled_vectors_ != nvec))
        set_mode_locked(IrqMode::Msi, nvec);
    else if (!enabled && mode_ == IrqMode::Msi)
        set_mode_locked(pin_ ? IrqMode::Intx : IrqMode::None);
}

void VfioPciDevice::after_msix_write() {
    msix_->config_written(shadow_);
    const bool enabled = shadow_.read16(msix_cap_ + PCI_MSIX_FLAGS) & PCI_MSIX_FLAGS_ENABLE;
    std::lock_guard lock(mutex_);
    if (enabled && mode_ != IrqMode::Msix)
        set_mode_locked(IrqMode::Msix);
    else if (!enabled && mode_ == IrqMode::Msix)
        set_mode_locked(pin_ ? IrqMode::Intx : IrqMode::None);
}

IrqMode VfioPciDevice::irq_mode() const {
    std::lock_guard lock(mutex_);
    return mode_;
}

void VfioPciDevice::set_mode_locked(IrqMode mode, unsigned msi_vectors) {
    try {
        switch (mode_) {
            case IrqMode::None: break;
            case IrqMode::Intx:
                device_->disable_irq(VFIO_PCI_INTX_IRQ_INDEX);
                vm_.disconnect_intx(intx_trigger_.get());
                break;
            case IrqMode::Msi: device_->disable_irq(VFIO_PCI_MSI_IRQ_INDEX); break;
            case IrqMode::Msix: device_->disable_irq(VFIO_PCI_MSIX_IRQ_INDEX); break;
        }
    } catch (const std::exception& e) {
        logger("vfio")->error("{}: disabling {}: {}", name_, to_string(mode_), e.what());
    }
    mode_ = IrqMode::None;
    msi_enabled_vectors_ = 0;
    if (mode == IrqMode::None) return;
    try {
        std::vector<std::int32_t> fds;
        switch (mode) {
            case IrqMode::None: break;
            case IrqMode::Intx:
                if (!intx_trigger_) {
                    intx_trigger_ = make_eventfd();
                    intx_resample_ = make_eventfd();
                }
                vm_.connect_intx(intx_trigger_.get(), intx_resample_.get());
                try {
                    device_->enable_intx(intx_trigger_.get(), intx_resample_.get());
                } catch (...) {
                    vm_.disconnect_intx(intx_trigger_.get());
                    throw;
                }
                break;
            case IrqMode::Msi:
                for (unsigned v = 0; v < msi_vectors; ++v) fds.push_back(msi_sink_->vector_eventfd(v));
                device_->enable_msi(fds);
                msi_enabled_vectors_ = msi_vectors;
                break;
            case IrqMode::Msix:
                for (unsigned v = 0; v < msix_sink_->vector_count(); ++v) fds.push_back(msix_sink_->vector_eventfd(v));
                device_->enable_msix(fds);
                break;
        }
        mode_ = mode;
        logger("vfio")->debug("{}: interrupts now {}", name_, to_string(mode));
    } catch (const std::exception& e) {
        logger("vfio")->error("{}: cannot switch interrupts to {}: {}", name_, to_string(mode), e.what());
    }
}

void VfioPciDevice::start() {
    if (device_->can_reset()) {
        try {
            device_->reset();
        } catch (const std::exception& e) {
            logger("vfio")->warn("{}: reset before start: {}", name_, e.what());
        }
    }
    std::lock_guard lock(mutex_);
    if (pin_) set_mode_locked(IrqMode::Intx);
}

}  // namespace vmm::vfio
