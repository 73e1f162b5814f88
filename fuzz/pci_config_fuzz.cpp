// Fuzzes the host PCI config-space parser of vfio/ (pci_config.h) with the bytes of a sysfs
// `config` file (any length: 64 bytes unprivileged, 256 conventional, 4096 PCIe), including the
// standard capability walk and the PCIe extended capability walk that finds ACS, and the ACS
// verdict built on it (acs_isolation.h). Properties checked besides "no crash": every offset
// reported lies inside the bytes given, with room for the registers read there.
#include "vfio/acs_isolation.h"
#include "vfio/pci_address.h"
#include "vfio/pci_config.h"
#include "vfio/pci_topology.h"

#include <linux/pci_regs.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>

namespace {

void check_inside(const char* what, std::size_t offset, std::size_t len, std::size_t size) {
    if (offset + len > size) {
        std::fprintf(stderr, "pci_config_fuzz: %s at %#zx (+%zu) outside %zu bytes\n", what, offset, len, size);
        std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::span<const std::uint8_t> config(data, size);
    const vmm::vfio::PciConfigInfo info = vmm::vfio::parse_pci_config(config);
    if (info.pcie_cap) check_inside("PCI Express capability", *info.pcie_cap, PCI_EXP_FLAGS + 2, size);
    if (info.acs) {
        check_inside("ACS capability", info.acs->offset, PCI_ACS_CTRL + 2, size);
        if (info.acs->offset < PCI_CFG_SPACE_SIZE) check_inside("ACS below 0x100", size, 1, 0);
    }
    for (const std::uint8_t id : {PCI_CAP_ID_PM, PCI_CAP_ID_MSI, PCI_CAP_ID_VNDR, PCI_CAP_ID_EXP, PCI_CAP_ID_MSIX}) {
        if (const auto at = vmm::vfio::find_capability(config, id)) check_inside("capability", *at, 2, size);
    }
    for (const std::uint16_t id : {PCI_EXT_CAP_ID_ERR, PCI_EXT_CAP_ID_ACS, PCI_EXT_CAP_ID_ARI, PCI_EXT_CAP_ID_SRIOV}) {
        if (const auto at = vmm::vfio::find_ext_capability(config, id)) check_inside("extended capability", *at, 4, size);
    }
    if (info.pcie_type) (void)vmm::vfio::pcie_type_name(*info.pcie_type);

    vmm::vfio::PciDeviceInfo dev;
    dev.address = {0, 3, 0, 0};
    dev.bdf = dev.address.to_string();
    dev.config = info;
    (void)dev.is_bridge();
    (void)dev.describe();
    (void)vmm::vfio::acs_problem(dev);
    (void)vmm::vfio::acs_problem(dev, PCI_ACS_SV | PCI_ACS_EC);
    if (info.acs) (void)vmm::vfio::acs_flag_names(info.acs->capability);

    // The same bytes as a device address (sysfs names, manifest "bdf" fields).
    (void)vmm::vfio::PciAddress::parse(std::string_view(reinterpret_cast<const char*>(data), std::min<std::size_t>(size, 24)));
    return 0;
}
