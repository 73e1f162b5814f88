// Host PCI topology from sysfs (see pci_topology.h).
#include "vfio/pci_topology.h"

#include "common/error.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <linux/pci_regs.h>
#include <system_error>

namespace vmm::vfio {

namespace fs = std::filesystem;

std::optional<std::string> read_sysfs_attr(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) return std::nullopt;
    while (!s.empty() && (s.back() == '\n' || s.back() == '\0')) s.pop_back();
    return s;
}

std::string symlink_basename(const fs::path& link) {
    std::error_code ec;
    if (!fs::is_symlink(link, ec)) return {};
    const fs::path target = fs::read_symlink(link, ec);
    if (ec) return {};
    return target.filename().string();
}

namespace {

std::optional<std::uint32_t> parse_hex_attr(const std::optional<std::string>& s) {
    if (!s || s->empty()) return std::nullopt;
    try {
        std::size_t used = 0;
        const unsigned long v = std::stoul(*s, &used, 16);
        if (used != s->size() || v > 0xffffffffUL) return std::nullopt;
        return static_cast<std::uint32_t>(v);
    } catch (const std::exception&) {
        return std::nullopt;
    }
}

std::vector<std::uint8_t> read_config(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return {};
    std::vector<std::uint8_t> bytes(PCI_CFG_SPACE_EXP_SIZE);
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    bytes.resize(static_cast<std::size_t>(in.gcount()));
    return bytes;
}

PciDeviceInfo read_device(const fs::path& link, const PciAddress& addr) {
    PciDeviceInfo d;
    d.address = addr;
    d.bdf = addr.to_string();
    std::error_code ec;
    d.sysfs_path = fs::canonical(link, ec);
    if (ec) d.sysfs_path = link;
    const fs::path& p = d.sysfs_path;
    d.config = parse_pci_config(read_config(p / "config"));
    d.vendor = static_cast<std::uint16_t>(parse_hex_attr(read_sysfs_attr(p / "vendor")).value_or(d.config.vendor));
    d.device = static_cast<std::uint16_t>(parse_hex_attr(read_sysfs_attr(p / "device")).value_or(d.config.device));
    d.class_code = parse_hex_attr(read_sysfs_attr(p / "class")).value_or(0);
    d.driver = symlink_basename(p / "driver");
    d.driver_override = read_sysfs_attr(p / "driver_override").value_or("");
    if (d.driver_override == "(null)") d.driver_override.clear();
    if (const std::string g = symlink_basename(p / "iommu_group"); !g.empty()) {
        try {
            d.iommu_group = static_cast<unsigned>(std::stoul(g));
        } catch (const std::exception&) {
        }
    }
    d.boot_vga = read_sysfs_attr(p / "boot_vga").value_or("0") == "1";
    // The canonical path is /sys/devices/pciDDDD:BB/<root port>/<...>/<this device>: every
    // earlier component that is a PCI address is a bridge above us.
    std::vector<std::string> chain;
    for (const auto& comp : p.parent_path()) {
        if (auto a = PciAddress::parse(comp.string())) chain.push_back(a->to_string());
    }
    d.upstream.assign(chain.rbegin(), chain.rend());
    return d;
}

}  // namespace

bool PciDeviceInfo::is_bridge() const {
    if (config.header_readable) return config.header_type != PCI_HEADER_TYPE_NORMAL;
    const std::uint32_t cls = class_code >> 8;
    return cls == 0x0604 || cls == 0x0607 || cls == 0x0609;
}

std::string PciDeviceInfo::describe() const {
    if (config.pcie_type) return bdf + " (" + pcie_type_name(*config.pcie_type) + ")";
    if (is_bridge()) return bdf + " (conventional PCI bridge)";
    return bdf;
}

PciTopology PciTopology::scan(const fs::path& sysfs_root) {
    PciTopology t;
    t.root_ = sysfs_root;
    const fs::path dir = sysfs_root / "bus/pci/devices";
    std::error_code ec;
    fs::directory_iterator it(dir, ec);
    if (ec) throw std::system_error(ec, "read " + dir.string() + " (is sysfs mounted?)");
    for (const auto& entry : it) {
        const auto addr = PciAddress::parse(entry.path().filename().string());
        if (!addr) continue;
        t.devices_.push_back(read_device(entry.path(), *addr));
    }
    std::sort(t.devices_.begin(), t.devices_.end(),
              [](const PciDeviceInfo& a, const PciDeviceInfo& b) { return a.address < b.address; });

    const fs::path groups = sysfs_root / "kernel/iommu_groups";
    for (const auto& g : fs::directory_iterator(groups, ec)) {
        unsigned n;
        try {
            n = static_cast<unsigned>(std::stoul(g.path().filename().string()));
        } catch (const std::exception&) {
            continue;
        }
        std::vector<std::string> members;
        std::error_code ec2;
        for (const auto& m : fs::directory_iterator(g.path() / "devices", ec2)) {
            if (auto a = PciAddress::parse(m.path().filename().string())) members.push_back(a->to_string());
        }
        std::sort(members.begin(), members.end());
        t.groups_[n] = std::move(members);
    }
    return t;
}

const PciDeviceInfo* PciTopology::find(const std::string& bdf) const {
    for (const auto& d : devices_) {
        if (d.bdf == bdf) return &d;
    }
    return nullptr;
}

std::vector<std::string> PciTopology::group_devices(unsigned group) const {
    if (auto it = groups_.find(group); it != groups_.end()) return it->second;
    // Fall back to the devices whose iommu_group link names this group.
    std::vector<std::string> out;
    for (const auto& d : devices_) {
        if (d.iommu_group == group) out.push_back(d.bdf);
    }
    return out;
}

std::optional<std::string> PciTopology::owning_device(const fs::path& path) const {
    std::error_code ec;
    const fs::path p = fs::canonical(path, ec);
    if (ec) return std::nullopt;
    std::optional<std::string> last;
    for (const auto& comp : p) {
        if (auto a = PciAddress::parse(comp.string()); a && find(a->to_string())) last = a->to_string();
    }
    return last;
}

}  // namespace vmm::vfio
