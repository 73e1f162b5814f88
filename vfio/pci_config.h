// PciConfigInfo: what the host analysis needs from a PCI function's configuration space, parsed
// from the bytes of its sysfs `config` file: IDs, header type, multifunction bit, the PCI Express
// capability's device/port type, and the ACS extended capability.
//
// Pure and bounds-checked (the bytes come from a file; a truncated or looping capability list
// yields "not found", never a crash). Called by PciTopology::scan on whichever thread scans.
//
// Note on sysfs: an unprivileged reader gets only the first 64 bytes of `config`; root gets 256
// (conventional) or 4096 (PCIe with ECAM). `extended_readable` says whether the extended list
// (offset 0x100, PCIe 5.0 §7.6) could be read at all.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

namespace vmm::vfio {

// The ACS extended capability (PCIe 5.0 §7.7.8): PCI_ACS_CAP and PCI_ACS_CTRL registers.
struct AcsCapability {
    std::uint16_t offset = 0;
    std::uint16_t capability = 0;  // which controls are implemented (PCI_ACS_SV, ...)
    std::uint16_t control = 0;     // which are enabled
};

struct PciConfigInfo {
    bool header_readable = false;    // at least the 64-byte standard header
    bool caps_readable = false;      // 256 bytes: the whole standard capability list
    bool extended_readable = false;  // more than 256 bytes: extended capabilities
    std::uint16_t vendor = 0xffff, device = 0xffff;
    std::uint8_t header_type = 0;  // PCI_HEADER_TYPE & 0x7f: 0 normal, 1 bridge, 2 cardbus
    bool multifunction = false;    // PCI_HEADER_TYPE bit 7
    std::optional<std::uint16_t> pcie_cap;   // offset of the PCI Express capability
    std::optional<std::uint8_t> pcie_type;   // PCI_EXP_TYPE_* of that capability
    std::optional<AcsCapability> acs;
};

PciConfigInfo parse_pci_config(std::span<const std::uint8_t> config);

// Offset of the standard capability `id` (PCI_CAP_ID_*), walking from PCI_CAPABILITY_LIST.
std::optional<std::uint16_t> find_capability(std::span<const std::uint8_t> config, std::uint8_t id);
// Offset of the extended capability `id` (PCI_EXT_CAP_ID_*), walking from 0x100.
std::optional<std::uint16_t> find_ext_capability(std::span<const std::uint8_t> config, std::uint16_t id);

// "root port", "downstream port", "endpoint", ... for messages.
const char* pcie_type_name(std::uint8_t type);

}  // namespace vmm::vfio
