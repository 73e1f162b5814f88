// check_assignable: may this host PCI function be given to a guest through VFIO? One report
// combining the kernel's IOMMU group, group viability as VFIO defines it, the ACS analysis
// and the host's own use of the device or its group. Shared by `vmctl pci check`, `vmctl pci
// list` and vmmd (before it reserves devices for a domain).
//
// Viability (drivers/vfio: a group can be opened only when every member is bound to vfio-pci,
// bound to pci-stub, or unbound; devices with a bridge header keep their driver). A device
// bound to a host driver makes the group not viable until `PciDriverBinder::reserve` rebinds it.
//
// Pure on a PciTopology snapshot; any thread.
#pragma once

#include "vfio/host_usage.h"
#include "vfio/pci_topology.h"

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace vmm::vfio {

struct GroupMember {
    std::string bdf;
    std::string driver;  // empty: none
    bool bridge = false;
    bool viable = false;  // this member does not stop the group from being opened
};

struct AssignabilityReport {
    std::string bdf;
    std::uint16_t vendor = 0, device = 0;
    std::string driver;
    bool bridge = false;  // bridges are never assigned
    std::optional<unsigned> iommu_group;
    std::vector<GroupMember> group_devices;  // the whole group, the device itself included
    bool acs_isolated = false;
    bool viable = false;
    std::vector<std::string> host_use;  // the host needs this device or a group member
    std::vector<std::string> reasons;   // every problem, each naming the device or bridge

    // Ready to hand to a guest as it stands: an endpoint, viable, isolated, not used by the host.
    bool ok() const { return !bridge && viable && acs_isolated && host_use.empty(); }
};

// Whether `driver` lets a group stay viable (empty, vfio-pci, pci-stub).
bool driver_keeps_group_viable(const std::string& driver);

// Throws vmm::Error when `bdf` is not a PCI address or not present in `topology`. `host_uses`
// is find_host_devices()'s answer (empty: the host-use check is skipped).
AssignabilityReport check_assignable(const PciTopology& topology, const std::string& bdf,
                                     const std::vector<HostUse>& host_uses = {});

// {"bdf", "vendor", "device", "driver", "bridge", "iommu_group" (number or null), "group_devices":
//  [{"bdf", "driver" (string or null), "bridge", "viable"}], "acs_isolated", "viable",
//  "host_use": [..], "reasons": [..], "ok"}
nlohmann::json to_json(const AssignabilityReport& report);

}  // namespace vmm::vfio
