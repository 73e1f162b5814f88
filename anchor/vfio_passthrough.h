// VfioPassthrough: the manifest's `pci` devices handed to the guest (issue #6, guest side).
// For each entry: resolve the selector against sysfs, check that its IOMMU group is viable and
// the device is bound to vfio-pci (vmmd's pci reserve, or `vmctl pci`, binds it), open the VFIO
// container and group, DMA-map all guest RAM (IOVA = guest-physical address), open the device
// and put a vfio::VfioPciDevice on the root bus. KvmPassthroughVm (below) gives the model what
// it needs from KVM: memory slots for the mappable BAR parts, MSI routes + irqfds that hold
// masked vectors, and a resampling irqfd on the function's INTx GSI.
//
// Threads: built on the main thread before the vCPUs run (and before the jail); map_bar /
// unmap_bar and the MSI routes are then driven from vCPU threads under the root bus's lock.
// Destroyed after the vCPUs stop: devices are released (interrupts off, reset), then groups and
// the container (which drops the DMA mappings).
#pragma once

#include "devicemodel/bus/guest_memory.h"
#include "devicemodel/pci/pci_bus.h"
#include "manifest/domain_manifest.h"
#include "vfio/passthrough/passthrough_vm.h"

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace vmm {
class KvmVm;
}
namespace vmm::vfio {
class VfioContainer;
class VfioGroup;
class VfioPciDevice;
}  // namespace vmm::vfio

namespace vmm::anchor {

class KvmPassthroughVm : public vfio::PassthroughVm {
public:
    // Memory slots for BARs are taken from [first_slot, first_slot + slot_count).
    KvmPassthroughVm(KvmVm& vm, std::uint32_t first_slot, std::uint32_t slot_count);
    // The function's place on the bus, for its INTx GSI (x86::pci_intx_gsi); set once added.
    void set_intx_source(unsigned slot, unsigned pin);

    std::uint32_t map_bar(std::uint64_t gpa, void* host, std::uint64_t size) override;
    void unmap_bar(std::uint32_t handle) override;
    std::shared_ptr<pci::MsiEventfdSink> msi_vectors(unsigned count) override;
    void connect_intx(int trigger, int resample) override;
    void disconnect_intx(int trigger) override;

private:
    KvmVm& vm_;
    std::mutex mutex_;
    std::vector<bool> used_;
    std::uint32_t first_slot_;
    std::vector<std::uint64_t> gpa_of_;
    std::uint32_t gsi_ = 0;
    bool has_gsi_ = false;
};

class VfioPassthrough {
public:
    // Memory slots from `first_slot` on are free for BAR mappings.
    VfioPassthrough(KvmVm& vm, const GuestMemory& memory, std::uint32_t first_slot,
                    std::string sysfs_root = "/sys", std::string vfio_dev_dir = "/dev/vfio");
    ~VfioPassthrough();

    // Adds every entry (throws vmm::Error naming "pci[i]" and the device on any problem).
    void add(const std::vector<PciSpec>& specs, pci::PciRootBus& bus);
    // Arms the functions' interrupts; call once every device is on the bus.
    void start();
    std::size_t size() const { return devices_.size(); }

private:
    struct Entry;
    vfio::VfioGroup& group(unsigned id);

    KvmVm& vm_;
    const GuestMemory& memory_;
    std::uint32_t next_slot_;
    std::string sysfs_root_, vfio_dev_dir_;
    std::unique_ptr<vfio::VfioContainer> container_;
    std::vector<std::unique_ptr<vfio::VfioGroup>> groups_;
    std::vector<std::unique_ptr<Entry>> devices_;  // destroyed first (declared last)
};

}  // namespace vmm::anchor
