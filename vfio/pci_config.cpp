// Configuration-space parsing for the host analysis (see pci_config.h).
#include "vfio/pci_config.h"

#include <linux/pci_regs.h>

namespace vmm::vfio {
namespace {

std::uint16_t rd16(std::span<const std::uint8_t> c, std::size_t off) {
    return static_cast<std::uint16_t>(c[off] | (c[off + 1] << 8));
}
std::uint32_t rd32(std::span<const std::uint8_t> c, std::size_t off) {
    return static_cast<std::uint32_t>(rd16(c, off)) | (static_cast<std::uint32_t>(rd16(c, off + 2)) << 16);
}

// At most 48 standard capabilities fit in 192 bytes; (4096-256)/4 extended ones in the rest.
// The limits stop a looping list, as the kernel's PCI_FIND_CAP_TTL does.
constexpr int kMaxStdCaps = 48;
constexpr int kMaxExtCaps = (PCI_CFG_SPACE_EXP_SIZE - PCI_CFG_SPACE_SIZE) / 8;

}  // namespace

std::optional<std::uint16_t> find_capability(std::span<const std::uint8_t> c, std::uint8_t id) {
    if (c.size() < PCI_CFG_SPACE_SIZE) return std::nullopt;
    if (!(rd16(c, PCI_STATUS) & PCI_STATUS_CAP_LIST)) return std::nullopt;
    std::size_t pos = c[PCI_CAPABILITY_LIST] & ~3u;
    for (int ttl = kMaxStdCaps; ttl > 0 && pos >= PCI_STD_HEADER_SIZEOF && pos + 2 <= c.size(); --ttl) {
        if (c[pos + PCI_CAP_LIST_ID] == 0xff) break;
        if (c[pos + PCI_CAP_LIST_ID] == id) return static_cast<std::uint16_t>(pos);
        pos = c[pos + PCI_CAP_LIST_NEXT] & ~3u;
    }
    return std::nullopt;
}

std::optional<std::uint16_t> find_ext_capability(std::span<const std::uint8_t> c, std::uint16_t id) {
    if (c.size() <= PCI_CFG_SPACE_SIZE) return std::nullopt;
    std::size_t pos = PCI_CFG_SPACE_SIZE;
    for (int ttl = kMaxExtCaps; ttl > 0 && pos >= PCI_CFG_SPACE_SIZE && pos + 4 <= c.size(); --ttl) {
        const std::uint32_t header = rd32(c, pos);
        // An all-zero (or all-ones) header at 0x100 means no extended capabilities.
        if (header == 0 || header == 0xffffffffu) break;
        if (PCI_EXT_CAP_ID(header) == id) return static_cast<std::uint16_t>(pos);
        pos = PCI_EXT_CAP_NEXT(header);
        if (pos == 0) break;
    }
    return std::nullopt;
}

PciConfigInfo parse_pci_config(std::span<const std::uint8_t> c) {
    PciConfigInfo info;
    if (c.size() < PCI_STD_HEADER_SIZEOF) return info;
    info.header_readable = true;
    info.caps_readable = c.size() >= PCI_CFG_SPACE_SIZE;
    info.extended_readable = c.size() > PCI_CFG_SPACE_SIZE;
    info.vendor = rd16(c, PCI_VENDOR_ID);
    info.device = rd16(c, PCI_DEVICE_ID);
    info.header_type = c[PCI_HEADER_TYPE] & PCI_HEADER_TYPE_MASK;
    info.multifunction = (c[PCI_HEADER_TYPE] & 0x80) != 0;
    if (auto pos = find_capability(c, PCI_CAP_ID_EXP); pos && std::size_t{*pos} + PCI_EXP_FLAGS + 2 <= c.size()) {
        info.pcie_cap = *pos;
        info.pcie_type = static_cast<std::uint8_t>((rd16(c, *pos + PCI_EXP_FLAGS) & PCI_EXP_FLAGS_TYPE) >> 4);
    }
    if (auto pos = find_ext_capability(c, PCI_EXT_CAP_ID_ACS); pos && std::size_t{*pos} + PCI_ACS_CTRL + 2 <= c.size()) {
        info.acs = AcsCapability{*pos, rd16(c, *pos + PCI_ACS_CAP), rd16(c, *pos + PCI_ACS_CTRL)};
    }
    return info;
}

const char* pcie_type_name(std::uint8_t type) {
    switch (type) {
    case PCI_EXP_TYPE_ENDPOINT: return "endpoint";
    case PCI_EXP_TYPE_LEG_END: return "legacy endpoint";
    case PCI_EXP_TYPE_ROOT_PORT: return "root port";
    case PCI_EXP_TYPE_UPSTREAM: return "switch upstream port";
    case PCI_EXP_TYPE_DOWNSTREAM: return "switch downstream port";
    case PCI_EXP_TYPE_PCI_BRIDGE: return "PCIe-to-PCI bridge";
    case PCI_EXP_TYPE_PCIE_BRIDGE: return "PCI-to-PCIe bridge";
    case PCI_EXP_TYPE_RC_END: return "root complex integrated endpoint";
    case PCI_EXP_TYPE_RC_EC: return "root complex event collector";
    default: return "unknown PCIe type";
    }
}

}  // namespace vmm::vfio
