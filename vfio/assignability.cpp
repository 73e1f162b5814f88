// Assignability report (see assignability.h).
#include "vfio/assignability.h"

#include "common/error.h"
#include "vfio/acs_isolation.h"

#include <cstdio>

namespace vmm::vfio {

namespace {

std::string hex4(std::uint16_t v) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04x", v);
    return buf;
}

}  // namespace

bool driver_keeps_group_viable(const std::string& driver) {
    return driver.empty() || driver == "vfio-pci" || driver == "pci-stub";
}

AssignabilityReport check_assignable(const PciTopology& topology, const std::string& bdf_text,
                                     const std::vector<HostUse>& host_uses) {
    const std::string bdf = normalize_bdf(bdf_text);
    const PciDeviceInfo* dev = topology.find(bdf);
    if (!dev) throw Error("no PCI device " + bdf + " under " + (topology.sysfs_root() / "bus/pci/devices").string());

    AssignabilityReport r;
    r.bdf = bdf;
    r.vendor = dev->vendor;
    r.device = dev->device;
    r.driver = dev->driver;
    r.iommu_group = dev->iommu_group;
    r.bridge = dev->is_bridge();

    if (r.bridge) {
        r.reasons.push_back(dev->describe() + " is a bridge: vfio-pci only takes endpoints");
    }

    // The group, as the kernel made it.
    std::vector<std::string> members;
    if (dev->iommu_group) {
        members = topology.group_devices(*dev->iommu_group);
        if (members.empty()) members.push_back(bdf);
        r.viable = true;
    } else {
        members.push_back(bdf);
        r.viable = false;
        r.reasons.push_back(bdf + " has no IOMMU group: the IOMMU is off or absent (enable VT-d/AMD-Vi in "
                                  "firmware and boot with intel_iommu=on or amd_iommu=on)");
    }
    for (const auto& m : members) {
        GroupMember gm;
        gm.bdf = m;
        const PciDeviceInfo* md = topology.find(m);
        if (!md) {
            gm.viable = false;
            r.viable = false;
            r.reasons.push_back("IOMMU group member " + m + " is missing from " +
                                (topology.sysfs_root() / "bus/pci/devices").string());
        } else {
            gm.driver = md->driver;
            gm.bridge = md->is_bridge();
            gm.viable = gm.bridge || driver_keeps_group_viable(md->driver);
            if (!gm.viable) {
                r.viable = false;
                r.reasons.push_back((m == bdf ? m : "IOMMU group " + std::to_string(*dev->iommu_group) +
                                                        " member " + m) +
                                    " is bound to host driver " + md->driver +
                                    " (the group is viable only when every device uses vfio-pci, pci-stub or "
                                    "no driver)");
            }
        }
        r.group_devices.push_back(std::move(gm));
    }

    const IsolationReport iso = analyse_isolation(topology, *dev);
    r.acs_isolated = iso.isolated;
    r.reasons.insert(r.reasons.end(), iso.reasons.begin(), iso.reasons.end());

    for (const auto& use : host_uses) {
        bool in_group = false;
        for (const auto& m : r.group_devices) in_group = in_group || m.bdf == use.bdf;
        if (!in_group) continue;
        const std::string who = use.bdf == bdf ? use.bdf : "IOMMU group member " + use.bdf;
        r.host_use.push_back(who + " " + use.what);
        r.reasons.push_back(who + " " + use.what + ": the host needs it (force to take it anyway)");
    }
    return r;
}

nlohmann::json to_json(const AssignabilityReport& r) {
    nlohmann::json group = nlohmann::json::array();
    for (const auto& m : r.group_devices) {
        group.push_back({{"bdf", m.bdf},
                         {"driver", m.driver.empty() ? nlohmann::json(nullptr) : nlohmann::json(m.driver)},
                         {"bridge", m.bridge},
                         {"viable", m.viable}});
    }
    return {{"bdf", r.bdf},
            {"vendor", hex4(r.vendor)},
            {"device", hex4(r.device)},
            {"driver", r.driver.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.driver)},
            {"bridge", r.bridge},
            {"iommu_group", r.iommu_group ? nlohmann::json(*r.iommu_group) : nlohmann::json(nullptr)},
            {"group_devices", group},
            {"acs_isolated", r.acs_isolated},
            {"viable", r.viable},
            {"host_use", r.host_use},
            {"reasons", r.reasons},
            {"ok", r.ok()}};
}

}  // namespace vmm::vfio
