// ACS isolation analysis (see acs_isolation.h).
#include "vfio/acs_isolation.h"

#include <cstdio>

namespace vmm::vfio {
namespace {

std::string hex16(std::uint16_t v) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "0x%04x", v);
    return buf;
}

// pci_acs_flags_enabled(): the ACS capability must exist, and every requested control that it
// implements must be on. Unimplemented controls are hard-wired on, except Egress Control.
std::optional<std::string> flags_problem(const PciDeviceInfo& dev, std::uint16_t flags) {
    if (!dev.config.extended_readable) {
        return dev.describe() + ": cannot read its extended config space to find ACS (run as root; "
                                "the host needs ECAM/MMCONFIG)";
    }
    if (!dev.config.acs) {
        return dev.describe() + " has no ACS capability: functions below or beside it can reach each other "
                                "without passing the IOMMU";
    }
    const AcsCapability& acs = *dev.config.acs;
    const std::uint16_t wanted = flags & (acs.capability | PCI_ACS_EC);
    const std::uint16_t missing = wanted & static_cast<std::uint16_t>(~acs.control);
    if (missing == 0) return std::nullopt;
    return dev.describe() + " has ACS (at " + hex16(acs.offset) + ") but " + acs_flag_names(missing) +
           " disabled (ACS capability " + hex16(acs.capability) + ", control " + hex16(acs.control) + ")";
}

}  // namespace

std::string acs_flag_names(std::uint16_t flags) {
    static constexpr struct {
        std::uint16_t bit;
        const char* name;
    } kNames[] = {{PCI_ACS_SV, "Source Validation"},      {PCI_ACS_TB, "Translation Blocking"},
                  {PCI_ACS_RR, "P2P Request Redirect"},   {PCI_ACS_CR, "P2P Completion Redirect"},
                  {PCI_ACS_UF, "Upstream Forwarding"},    {PCI_ACS_EC, "P2P Egress Control"},
                  {PCI_ACS_DT, "Direct Translated P2P"}};
    std::string out;
    for (const auto& n : kNames) {
        if (!(flags & n.bit)) continue;
        if (!out.empty()) out += ", ";
        out += n.name;
    }
    return out;
}

std::optional<std::string> acs_problem(const PciDeviceInfo& dev, std::uint16_t flags) {
    if (!dev.config.header_readable) {
        return dev.bdf + ": cannot read its config space (run as root)";
    }
    if (!dev.config.pcie_type) {
        if (!dev.config.caps_readable) {
            return dev.describe() + ": cannot read its capability list to tell PCIe from PCI (run as root)";
        }
        // The shared bus of conventional PCI lets any device snoop or target any other.
        return dev.describe() + " is conventional PCI: no ACS, devices on its bus share DMA visibility";
    }
    switch (*dev.config.pcie_type) {
    case PCI_EXP_TYPE_PCIE_BRIDGE:
    case PCI_EXP_TYPE_PCI_BRIDGE:
    case PCI_EXP_TYPE_RC_EC:
        // PCIe 5.0 §6.12.1: these never implement ACS; the kernel treats them as not isolating.
        return dev.describe() + " cannot provide ACS isolation";
    case PCI_EXP_TYPE_DOWNSTREAM:
    case PCI_EXP_TYPE_ROOT_PORT:
        // §6.12.1.1: ports must implement ACS to show they block peer-to-peer.
        return flags_problem(dev, flags);
    case PCI_EXP_TYPE_ENDPOINT:
    case PCI_EXP_TYPE_UPSTREAM:
    case PCI_EXP_TYPE_LEG_END:
    case PCI_EXP_TYPE_RC_END:
        // §6.12.1.2: only matters between functions of one multifunction device.
        if (!dev.config.multifunction) return std::nullopt;
        return flags_problem(dev, flags);
    default:
        return std::nullopt;
    }
}

IsolationReport analyse_isolation(const PciTopology& topology, const PciDeviceInfo& dev) {
    IsolationReport r;
    // Sibling functions (get_pci_function_alias_group): only those that lack ACS as well.
    if (dev.config.multifunction) {
        if (auto problem = acs_problem(dev)) {
            for (const auto& other : topology.devices()) {
                if (other.bdf == dev.bdf || other.address.domain != dev.address.domain ||
                    other.address.bus != dev.address.bus || other.address.device != dev.address.device) {
                    continue;
                }
                if (acs_problem(other)) {
                    r.isolated = false;
                    r.reasons.push_back(*problem + "; as a multifunction device it shares isolation with " +
                                        other.bdf);
                }
            }
        }
    }
    // Every bridge up to and including the one on the root bus (pci_acs_path_enabled).
    for (const auto& up : dev.upstream) {
        const PciDeviceInfo* bridge = topology.find(up);
        if (!bridge) {
            r.isolated = false;
            r.reasons.push_back("upstream bridge " + up + " of " + dev.bdf + " is missing from sysfs");
            continue;
        }
        if (auto problem = acs_problem(*bridge)) {
            r.isolated = false;
            r.reasons.push_back("upstream bridge " + *problem);
        }
    }
    return r;
}

}  // namespace vmm::vfio
