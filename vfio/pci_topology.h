// PciTopology: a snapshot of the host's PCI devices as sysfs shows them under a configurable
// root (`/sys` on a host, a temporary tree in tests): each function's IDs, class, driver,
// driver_override, IOMMU group, boot_vga flag, parsed config space, and the bridges between it
// and the root bus (from the device's place under /sys/devices/pciDDDD:BB/...).
//
// Read-only and cheap to rebuild: take a fresh snapshot before every decision, since drivers
// bind and unbind behind our back. Built on whichever thread asks (vmctl's main thread, vmmd's
// API thread); a snapshot is immutable after scan() and may be shared between threads.
#pragma once

#include "vfio/pci_address.h"
#include "vfio/pci_config.h"

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace vmm::vfio {

struct PciDeviceInfo {
    PciAddress address;
    std::string bdf;  // address.to_string()
    std::uint16_t vendor = 0, device = 0;
    std::uint32_t class_code = 0;  // 24 bits: base class, subclass, prog-if
    std::string driver;            // bound driver's name, empty when unbound
    std::string driver_override;   // empty when unset
    std::optional<unsigned> iommu_group;
    bool boot_vga = false;
    // Bridges (and ports) from the nearest one up to the one on the root bus.
    std::vector<std::string> upstream;
    std::filesystem::path sysfs_path;  // canonical /sys/devices/pci.../BDF
    PciConfigInfo config;

    // Type 1/2 header (or bridge class when the header is unreadable): vfio-pci does not take
    // bridges, and the kernel lets them keep their driver (pcieport) in a viable group.
    bool is_bridge() const;
    // "0000:00:1c.0 (root port)" for messages.
    std::string describe() const;
};

class PciTopology {
public:
    // Reads <sysfs_root>/bus/pci/devices and <sysfs_root>/kernel/iommu_groups. Throws
    // std::system_error when the PCI directory cannot be read; a device whose individual files
    // are unreadable is kept with what could be read.
    static PciTopology scan(const std::filesystem::path& sysfs_root = "/sys");

    const std::filesystem::path& sysfs_root() const { return root_; }
    // Sorted by address.
    const std::vector<PciDeviceInfo>& devices() const { return devices_; }
    // nullptr if there is no such device. `bdf` must be normalized (normalize_bdf).
    const PciDeviceInfo* find(const std::string& bdf) const;
    // The members of IOMMU group `group` as the kernel lists them, sorted; empty if unknown.
    std::vector<std::string> group_devices(unsigned group) const;
    // The PCI device that `path` (any sysfs path, e.g. a block or net device) sits below:
    // the last PCI function in its canonical path. nullopt for virtual devices.
    std::optional<std::string> owning_device(const std::filesystem::path& path) const;

private:
    std::filesystem::path root_;
    std::vector<PciDeviceInfo> devices_;
    std::map<unsigned, std::vector<std::string>> groups_;
};

// Small sysfs helpers shared by the vfio host code.
// Contents of a sysfs attribute without the trailing newline; nullopt if it cannot be read.
std::optional<std::string> read_sysfs_attr(const std::filesystem::path& path);
// The final component of a symlink's target (e.g. driver → "nvme"); empty if not a link.
std::string symlink_basename(const std::filesystem::path& link);

}  // namespace vmm::vfio
