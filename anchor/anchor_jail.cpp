#include "anchor/anchor_jail.h"

#include "common/error.h"
#include "vfio/pci_selector.h"
#include "vfio/pci_topology.h"

#include <link.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <optional>

namespace vmm::anchor {

namespace {

bool exists(const std::string& path) {
    struct stat st{};
    return ::stat(path.c_str(), &st) == 0;
}

// The shared objects of this process as the dynamic loader opened them (l_name: the path
// before symlinks are resolved, e.g. /lib/x86_64-linux-gnu/libc.so.6 and the ld.so named by
// PT_INTERP), so a re-exec inside the jail finds them by the same names.
std::vector<std::string> loaded_objects() {
    std::vector<std::string> names;
    ::dl_iterate_phdr(
        [](dl_phdr_info* info, std::size_t, void* data) {
            if (info->dlpi_name != nullptr && info->dlpi_name[0] == '/')
                static_cast<std::vector<std::string>*>(data)->emplace_back(info->dlpi_name);
            return 0;
        },
        &names);
    return names;
}

// The IOMMU group of a PCI device: /sys/bus/pci/devices/<bdf>/iommu_group -> .../<N>. A device
// chosen by vendor/device IDs is found the way the anchor finds it later (vfio/pci_selector.h),
// in the same /sys the jail keeps read-only, so both come to the same device.
std::string iommu_group_of(const std::string& sysfs, const PciSpec& pci, std::optional<vfio::PciTopology>& topology) {
    std::string bdf = pci.bdf;
    if (bdf.empty()) {
        if (!topology) topology = vfio::PciTopology::scan(sysfs);
        try {
            bdf = vfio::resolve_pci_selector(*topology, {std::nullopt, pci.vendor, pci.device, pci.index});
        } catch (const std::exception& e) {
            throw Error(std::string("jail: ") + e.what());
        }
    }
    std::error_code ec;
    const auto link = std::filesystem::read_symlink(sysfs + "/bus/pci/devices/" + bdf + "/iommu_group", ec);
    if (ec) throw Error("jail: pci device " + bdf + " has no IOMMU group (" + ec.message() + ")");
    return link.filename().string();
}

}  // namespace

std::string self_executable() {
    std::error_code ec;
    auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) return exe.string();
    const auto* execfn = reinterpret_cast<const char*>(::getauxval(AT_EXECFN));
    return execfn != nullptr ? execfn : "";
}

jail::JailSpec anchor_jail_spec(const DomainManifest& m, const AnchorJailOptions& o) {
    jail::JailSpec spec;
    // Relative paths (--run-dir run, --manifest examples/x.json) keep working inside: the jail
    // has the same working directory.
    const std::string run_dir = std::filesystem::absolute(o.run_dir).lexically_normal().string();
    std::error_code ec;
    spec.workdir = std::filesystem::current_path(ec).string();
    spec.mountpoint = run_dir + "/.jail-root";
    spec.identity = o.identity;
    spec.keep = jail::anchor_kept_capabilities(!m.nics.empty(), !m.pci.empty());
    spec.new_network_namespace = m.nics.empty();

    const auto ro = [&](const std::string& p) { spec.binds.push_back({p, false, false, false}); };
    const auto rw = [&](const std::string& p) { spec.binds.push_back({p, true, false, false}); };
    const auto exec = [&](const std::string& p) { spec.binds.push_back({p, false, true, false}); };

    if (o.executable.empty() || o.executable[0] != '/')
        throw Error("jail: the anchor's executable path \"" + o.executable + "\" is not absolute");
    exec(o.executable);
    // A static vmm-anchor (the default build) has none and needs no loader cache either.
    const std::vector<std::string> objects = loaded_objects();
    for (const auto& so : objects) exec(so);
    if (!objects.empty() && exists("/etc/ld.so.cache")) ro("/etc/ld.so.cache");
    if (exists("/etc/localtime")) ro("/etc/localtime");
    if (!o.manifest_path.empty()) ro(std::filesystem::absolute(o.manifest_path).string());

    ro(m.kernel);
    if (!m.initrd.empty()) ro(m.initrd);
    for (const auto& d : m.disks) d.readonly ? ro(d.path) : rw(d.path);
    for (const auto& c : m.consoles)
        if (c.kind == "socket") rw(std::filesystem::path(c.path).parent_path().string());
    spec.binds.push_back({run_dir + "/kvm/" + m.name, true, false, true});
    rw("/dev/pts");

    spec.devices = {"/dev/kvm", "/dev/ptmx", "/dev/null"};
    if (!m.nics.empty()) {
        spec.devices.push_back("/dev/net/tun");
        // The host's mitigations decide how a tap transmits (virtio_net::tap_batches_pay_off):
        // the directory of the kernel's reports on them, read-only (with passthrough all of /sys
        // is there already).
        const std::string vulnerabilities = o.sysfs + "/devices/system/cpu/vulnerabilities";
        if (m.pci.empty() && exists(vulnerabilities)) ro(vulnerabilities);
    }
    if (!m.pci.empty()) {
        ro(o.sysfs);
        spec.devices.push_back("/dev/vfio/vfio");
        std::optional<vfio::PciTopology> topology;  // scanned once, if a device is chosen by IDs
        for (const auto& p : m.pci) spec.devices.push_back("/dev/vfio/" + iommu_group_of(o.sysfs, p, topology));
    }
    return spec;
}

}  // namespace vmm::anchor
