// ACS isolation analysis: does the PCIe fabric force a function's DMA through the IOMMU, or can
// it reach a peer directly? The same rules as Linux's pci_acs_enabled() and
// pci_device_group() (drivers/pci/pci.c, drivers/iommu/iommu.c), computed from sysfs so that
// the answer comes with reasons naming the device or bridge at fault.
//
// Rules (PCIe 5.0 §6.12): every bridge between the function and the root bus (root ports,
// switch downstream ports) must enable Source Validation, P2P Request Redirect, P2P
// Completion Redirect and Upstream Forwarding; a control that the ACS capability does not
// implement counts as hard-wired on (Egress Control excepted). Conventional PCI bridges and
// PCIe-to-PCI bridges never isolate. Endpoints and upstream ports need ACS only when they are
// part of a multifunction device; a function without it shares isolation with its sibling
// functions that lack it too.
//
// Not modelled: the kernel's per-device ACS quirks (pci_dev_specific_acs_enabled, e.g. Intel
// PCH root ports that isolate without advertising ACS) and DMA aliases. The kernel's IOMMU
// group stays authoritative for what VFIO accepts; this analysis explains it.
//
// Pure functions on a PciTopology snapshot; any thread.
#pragma once

#include "vfio/pci_topology.h"

#include <linux/pci_regs.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vmm::vfio {

// REQ_ACS_FLAGS of drivers/iommu/iommu.c.
inline constexpr std::uint16_t kRequiredAcsFlags = PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF;

// pci_acs_enabled(dev, flags): nullopt when `dev` provides the isolation (or ACS does not apply
// to it), else a sentence saying why not that starts with dev.describe().
std::optional<std::string> acs_problem(const PciDeviceInfo& dev, std::uint16_t flags = kRequiredAcsFlags);

// "Source Validation, P2P Request Redirect" for the PCI_ACS_* bits in `flags`.
std::string acs_flag_names(std::uint16_t flags);

struct IsolationReport {
    bool isolated = true;
    std::vector<std::string> reasons;  // empty when isolated
};

// Isolation of `dev` within `topology`: its multifunction siblings and every bridge upstream.
IsolationReport analyse_isolation(const PciTopology& topology, const PciDeviceInfo& dev);

}  // namespace vmm::vfio
