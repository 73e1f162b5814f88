#include "anchor/vfio_passthrough.h"

#include "anchor/kvm_msi_sink.h"
#include "common/error.h"
#include "common/log.h"
#include "kvm/kvm_vm.h"
#include "vfio/assignability.h"
#include "vfio/passthrough/vfio_pci_device.h"
#include "vfio/pci_selector.h"
#include "vfio/pci_topology.h"
#include "vfio/vfio_container.h"
#include "vfio/vfio_device.h"
#include "x86/memory_layout.h"

namespace vmm::anchor {

namespace {
// BARs get at most this many slots per domain (KVM offers 509 on x86; RAM uses two).
constexpr std::uint32_t kBarSlots = 64;
}  // namespace

KvmPassthroughVm::KvmPassthroughVm(KvmVm& vm, std::uint32_t first_slot, std::uint32_t slot_count)
    : vm_(vm), used_(slot_count, false), first_slot_(first_slot), gpa_of_(slot_count, 0) {}

void KvmPassthroughVm::set_intx_source(unsigned slot, unsigned pin) {
    std::lock_guard lock(mutex_);
    if (pin < 1 || pin > 4) return;  // no INTx
    gsi_ = x86::pci_intx_gsi(slot, pin - 1);  // pin 1 = INTA#
    has_gsi_ = true;
}

std::uint32_t KvmPassthroughVm::map_bar(std::uint64_t gpa, void* host, std::uint64_t size) {
    std::lock_guard lock(mutex_);
    for (std::uint32_t i = 0; i < used_.size(); ++i) {
        if (used_[i]) continue;
        vm_.set_memory_region(first_slot_ + i, gpa, size, host);
        used_[i] = true;
        gpa_of_[i] = gpa;
        return i;
    }
    throw Error("no free KVM memory slot for a passed-through BAR (" + std::to_string(used_.size()) + " in use)");
}

void KvmPassthroughVm::unmap_bar(std::uint32_t handle) {
    std::lock_guard lock(mutex_);
    if (handle >= used_.size() || !used_[handle]) return;
    vm_.set_memory_region(first_slot_ + handle, gpa_of_[handle], 0, nullptr);  // size 0 deletes the slot
    used_[handle] = false;
}

std::shared_ptr<pci::MsiEventfdSink> KvmPassthroughVm::msi_vectors(unsigned count) {
    return std::make_shared<KvmMsiSink>(vm_, count, /*hold_masked=*/true);
}

void KvmPassthroughVm::connect_intx(int trigger, int resample) {
    std::lock_guard lock(mutex_);
    if (!has_gsi_) throw Error("INTx of a passed-through function before it is on the bus");
    vm_.add_irqfd(trigger, gsi_, resample);
}

void KvmPassthroughVm::disconnect_intx(int trigger) {
    std::lock_guard lock(mutex_);
    if (has_gsi_) vm_.remove_irqfd(trigger, gsi_);
}

struct VfioPassthrough::Entry {
    std::string bdf;
    std::unique_ptr<KvmPassthroughVm> hooks;
    std::shared_ptr<vfio::VfioPciDevice> device;
    ~Entry() {
        device.reset();  // releases the function while its hooks still exist
    }
};

VfioPassthrough::VfioPassthrough(KvmVm& vm, const GuestMemory& memory, std::uint32_t first_slot,
                                 std::string sysfs_root, std::string vfio_dev_dir)
    : vm_(vm),
      memory_(memory),
      next_slot_(first_slot),
      sysfs_root_(std::move(sysfs_root)),
      vfio_dev_dir_(std::move(vfio_dev_dir)) {}

VfioPassthrough::~VfioPassthrough() {
    devices_.clear();
    groups_.clear();
    container_.reset();
}

vfio::VfioGroup& VfioPassthrough::group(unsigned id) {
    for (auto& g : groups_)
        if (g->id() == id) return *g;
    auto g = std::make_unique<vfio::VfioGroup>(id, vfio_dev_dir_);
    if (!g->viable())
        throw Error("IOMMU group " + std::to_string(id) +
                    " is not viable: every device in it must be bound to vfio-pci, pci-stub or no driver");
    const bool first = !container_;
    if (first) container_ = std::make_unique<vfio::VfioContainer>(vfio_dev_dir_ + "/vfio");
    container_->attach(*g);
    if (first) {
        // The whole of guest RAM, IOVA = guest-physical: a DMA address the guest programs into
        // the device is what the device uses. Pinned until the container closes.
        for (const auto& r : memory_.regions()) container_->map_dma(r.gpa, r.host, r.size);
    }
    groups_.push_back(std::move(g));
    return *groups_.back();
}

void VfioPassthrough::add(const std::vector<PciSpec>& specs, pci::PciRootBus& bus) {
    if (specs.empty()) return;
    const auto topology = vfio::PciTopology::scan(sysfs_root_);
    for (std::size_t i = 0; i < specs.size(); ++i) {
        const std::string where = "pci[" + std::to_string(i) + "]";
        try {
            vfio::PciSelector sel;
            if (!specs[i].bdf.empty())
                sel.bdf = specs[i].bdf;
            else
                sel = {std::nullopt, specs[i].vendor, specs[i].device, specs[i].index};
            const std::string bdf = vfio::resolve_pci_selector(topology, sel);
            const auto report = vfio::check_assignable(topology, bdf);
            if (report.bridge) throw Error(bdf + " is a bridge: only endpoints can be passed through");
            if (report.driver != "vfio-pci")
                throw Error(bdf + " is bound to " + (report.driver.empty() ? std::string("no driver") : report.driver) +
                            ", not vfio-pci (vmmd binds it when it reserves the device; by hand: "
                            "echo vfio-pci > " + sysfs_root_ + "/bus/pci/devices/" + bdf +
                            "/driver_override, unbind, then echo " + bdf + " > " + sysfs_root_ +
                            "/bus/pci/drivers_probe)");
            if (!report.iommu_group) throw Error(bdf + " has no IOMMU group (is the IOMMU on?)");
            if (!report.acs_isolated)
                for (const auto& r : report.reasons) logger("anchor")->warn("{} {}: {}", where, bdf, r);
            for (const auto& e : devices_)
                if (e->bdf == bdf) throw Error(bdf + " is listed twice");

            vfio::VfioGroup& g = group(*report.iommu_group);
            auto entry = std::make_unique<Entry>();
            entry->bdf = bdf;
            entry->hooks = std::make_unique<KvmPassthroughVm>(vm_, next_slot_, kBarSlots);
            next_slot_ += kBarSlots;
            auto io = std::make_shared<vfio::VfioDevice>(g.open_device(bdf));
            entry->device = std::make_shared<vfio::VfioPciDevice>(io, *entry->hooks);
            const unsigned slot = bus.add_device(entry->device);
            entry->hooks->set_intx_source(slot, entry->device->interrupt_pin());
            logger("anchor")->info("pci 00:{:02x}.0: {} passed through (IOMMU group {})", slot, bdf,
                                   *report.iommu_group);
            devices_.push_back(std::move(entry));
        } catch (const std::exception& e) {
            throw Error("manifest field \"" + where + "\": " + e.what());
        }
    }
}

void VfioPassthrough::start() {
    for (auto& e : devices_) e->device->start();
}

}  // namespace vmm::anchor
