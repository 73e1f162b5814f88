#include "hypervisor/xen/xl_config.h"

#include <cmath>
#include <sstream>

namespace vmm::hv::xen {

std::string xl_quote(const std::string& text) {
    std::string out = "\"";
    for (char c : text) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
    return out + "\"";
}

namespace {

std::string list(const std::vector<std::string>& items) {
    std::string out = "[ ";
    for (std::size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + xl_quote(items[i]);
    return out + " ]";
}

}  // namespace

std::string make_xl_config(const DomainManifest& m) {
    if (m.flat) throw ManifestError("flat", "the xen hypervisor boots kernels (PVH), not flat binaries");
    if (m.hide_hypervisor) throw ManifestError("hide_hypervisor", "is not supported by the xen hypervisor");
    if (m.jail) throw ManifestError("jail", "is the kvm anchor's file-system jail: not supported by the xen hypervisor");
    std::ostringstream c;
    c << "# written by vmmd from the manifest of domain " << m.name << "\n";
    c << "name = " << xl_quote(m.name) << "\n";
    c << "type = \"pvh\"\n";
    c << "memory = " << m.memory_mb << "\n";
    c << "maxmem = " << m.memory_mb << "\n";
    c << "vcpus = " << m.vcpus << "\n";
    // The credit scheduler's cap: percent of one physical CPU, as cpu_quota's CPUs' worth.
    if (m.cpu_quota) c << "cap = " << std::llround(*m.cpu_quota * 100) << "\n";
    c << "kernel = " << xl_quote(m.kernel) << "\n";
    if (!m.initrd.empty()) c << "ramdisk = " << xl_quote(m.initrd) << "\n";
    if (!m.cmdline.empty()) c << "cmdline = " << xl_quote(m.cmdline) << "\n";
    // "exit" ends the domain; "pause" keeps it (preserve) as the anchor keeps a paused VM.
    c << "on_poweroff = " << (m.on_poweroff == "pause" ? "\"preserve\"" : "\"destroy\"") << "\n";
    c << "on_reboot = " << (m.on_reboot == "restart" ? "\"restart\"" : "\"destroy\"") << "\n";
    // Kept so vmmd sees the crash in `xl list` (state c), reports it and destroys the domain.
    c << "on_crash = \"preserve\"\n";
    std::vector<std::string> disks;
    for (std::size_t i = 0; i < m.disks.size(); ++i) {
        const auto& d = m.disks[i];
        disks.push_back("format=raw, vdev=xvd" + std::string(1, static_cast<char>('a' + i)) +
                        ", access=" + (d.readonly ? "ro" : "rw") + ", target=" + d.path);
    }
    if (!disks.empty()) c << "disk = " << list(disks) << "\n";
    std::vector<std::string> vifs;
    for (const auto& n : m.nics) vifs.push_back("vifname=" + n.tap + (n.mac.empty() ? "" : ",mac=" + n.mac));
    if (!vifs.empty()) c << "vif = " << list(vifs) << "\n";
    std::vector<std::string> pcis;
    for (std::size_t i = 0; i < m.pci.size(); ++i) {
        if (m.pci[i].bdf.empty())
            throw ManifestError("pci[" + std::to_string(i) + "]", "the xen hypervisor needs a PCI address (bdf), not IDs");
        pcis.push_back(m.pci[i].bdf);
    }
    if (!pcis.empty()) c << "pci = " << list(pcis) << "\n";
    return c.str();
}

}  // namespace vmm::hv::xen
