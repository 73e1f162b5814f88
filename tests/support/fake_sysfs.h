// FakeSysfs: a temporary sysfs + /proc tree with PCI devices laid out as the kernel does, and a
// SysfsWriter that reacts to writes as the kernel would (unbind removes the driver link,
// drivers_probe honours driver_override, bind checks the override), recording every write so a
// test can assert the exact sequence. PciConfigBuilder makes real config-space bytes: standard
// header, the PCI Express capability and extended capabilities such as ACS.
//
// Header-only; used by the vfio_* unit tests on the test's thread.
#pragma once

#include "tests/support/test_paths.h"

#include <linux/pci_regs.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace vmm::test {

class PciConfigBuilder {
public:
    PciConfigBuilder(std::uint16_t vendor, std::uint16_t device, std::uint8_t header_type = PCI_HEADER_TYPE_NORMAL,
                     bool multifunction = false, std::size_t size = PCI_CFG_SPACE_EXP_SIZE)
        : b_(size, 0) {
        w16(PCI_VENDOR_ID, vendor);
        w16(PCI_DEVICE_ID, device);
        b_[PCI_HEADER_TYPE] = static_cast<std::uint8_t>(header_type | (multifunction ? 0x80 : 0));
    }

    // A standard capability at `at` (>= 0x40), linked after the previous ones.
    PciConfigBuilder& cap(std::uint8_t id, std::uint8_t at, std::vector<std::uint8_t> body = {}) {
        if (last_cap_ == 0) {
            w16(PCI_STATUS, PCI_STATUS_CAP_LIST);
            b_[PCI_CAPABILITY_LIST] = at;
        } else {
            b_[last_cap_ + PCI_CAP_LIST_NEXT] = at;
        }
        b_[at + PCI_CAP_LIST_ID] = id;
        b_[at + PCI_CAP_LIST_NEXT] = 0;
        for (std::size_t i = 0; i < body.size(); ++i) b_[at + 2 + i] = body[i];
        last_cap_ = at;
        return *this;
    }
    // The PCI Express capability (version 2) with the given PCI_EXP_TYPE_*.
    PciConfigBuilder& pcie(std::uint8_t type, std::uint8_t at = 0x40) {
        const std::uint16_t flags = static_cast<std::uint16_t>(2 | (type << 4));
        return cap(PCI_CAP_ID_EXP, at, {static_cast<std::uint8_t>(flags), static_cast<std::uint8_t>(flags >> 8)});
    }
    // An extended capability at `at` (the first must be at 0x100), linked after the previous.
    PciConfigBuilder& ext_cap(std::uint16_t id, std::uint16_t at, std::vector<std::uint8_t> body = {}) {
        if (last_ext_ == 0) {
            if (at != PCI_CFG_SPACE_SIZE) throw std::logic_error("the first extended capability sits at 0x100");
        } else {
            const std::uint32_t prev = r32(last_ext_);
            w32(last_ext_, (prev & 0x000fffffu) | (static_cast<std::uint32_t>(at) << 20));
        }
        w32(at, static_cast<std::uint32_t>(id) | (1u << 16));  // version 1, next 0
        for (std::size_t i = 0; i < body.size(); ++i) b_[at + 4 + i] = body[i];
        last_ext_ = at;
        return *this;
    }
    // The ACS capability (PCI_ACS_CAP, PCI_ACS_CTRL) at `at`.
    PciConfigBuilder& acs(std::uint16_t at, std::uint16_t capability, std::uint16_t control) {
        return ext_cap(PCI_EXT_CAP_ID_ACS, at,
                       {static_cast<std::uint8_t>(capability), static_cast<std::uint8_t>(capability >> 8),
                        static_cast<std::uint8_t>(control), static_cast<std::uint8_t>(control >> 8)});
    }
    // Advanced Error Reporting at `at`: a realistic first entry so ACS is not at 0x100.
    PciConfigBuilder& aer(std::uint16_t at = PCI_CFG_SPACE_SIZE) { return ext_cap(PCI_EXT_CAP_ID_ERR, at); }

    std::vector<std::uint8_t> bytes() const { return b_; }
    std::vector<std::uint8_t>& raw() { return b_; }

private:
    void w16(std::size_t off, std::uint16_t v) {
        b_[off] = static_cast<std::uint8_t>(v);
        b_[off + 1] = static_cast<std::uint8_t>(v >> 8);
    }
    void w32(std::size_t off, std::uint32_t v) {
        w16(off, static_cast<std::uint16_t>(v));
        w16(off + 2, static_cast<std::uint16_t>(v >> 16));
    }
    std::uint32_t r32(std::size_t off) const {
        return b_[off] | (b_[off + 1] << 8) | (b_[off + 2] << 16) | (static_cast<std::uint32_t>(b_[off + 3]) << 24);
    }
    std::vector<std::uint8_t> b_;
    std::uint8_t last_cap_ = 0;
    std::uint16_t last_ext_ = 0;
};

// All ACS controls a port usually implements (SV, TB, RR, CR, UF, EC, DT).
inline constexpr std::uint16_t kAllAcsControls =
    PCI_ACS_SV | PCI_ACS_TB | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF | PCI_ACS_EC | PCI_ACS_DT;
// What Linux enables by default (pci_std_enable_acs): SV, RR, CR, UF.
inline constexpr std::uint16_t kLinuxAcsControls = PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF;

struct FakePciDevice {
    std::string bdf;
    std::string parent;  // the bridge above it, empty for the root bus
    std::uint16_t vendor = 0x8086, device = 0x1234;
    std::uint32_t class_code = 0x020000;
    std::vector<std::uint8_t> config;  // empty: a 64-byte normal header with the IDs
    std::string driver;                // empty: unbound
    std::optional<unsigned> group;
    bool boot_vga = false;
};

class FakeSysfs {
public:
    FakeSysfs() : base_(make_temp_dir("fakesysfs")) {
        namespace fs = std::filesystem;
        for (const char* d : {"sys/bus/pci/devices", "sys/bus/pci/drivers", "sys/kernel/iommu_groups",
                              "sys/devices", "sys/dev/block", "sys/class/block", "sys/class/net", "proc/self",
                              "proc/net"}) {
            fs::create_directories(base_ / d);
        }
        touch(sys() / "bus/pci/drivers_probe");
        add_driver("vfio-pci");
        add_driver("pcieport");
        // Empty /proc files: no root mount, no default route unless a test writes them.
        touch(proc() / "self/mountinfo");
        std::ofstream(proc() / "net/route") << kRouteHeader;
    }
    ~FakeSysfs() {
        std::error_code ec;
        std::filesystem::remove_all(base_, ec);
    }
    FakeSysfs(const FakeSysfs&) = delete;
    FakeSysfs& operator=(const FakeSysfs&) = delete;

    std::filesystem::path sys() const { return base_ / "sys"; }
    std::filesystem::path proc() const { return base_ / "proc"; }
    std::filesystem::path device_dir(const std::string& bdf) const { return dirs_.at(bdf); }

    void add_driver(const std::string& name) {
        const auto dir = sys() / "bus/pci/drivers" / name;
        std::filesystem::create_directories(dir);
        touch(dir / "bind");
        touch(dir / "unbind");
    }

    FakeSysfs& add(const FakePciDevice& d) {
        namespace fs = std::filesystem;
        const fs::path parent_dir = d.parent.empty() ? sys() / "devices" / ("pci" + d.bdf.substr(0, 7))
                                                     : dirs_.at(d.parent);
        const fs::path dir = parent_dir / d.bdf;
        fs::create_directories(dir);
        dirs_[d.bdf] = dir;
        fs::create_directory_symlink(dir, sys() / "bus/pci/devices" / d.bdf);
        std::ofstream(dir / "vendor") << hex(d.vendor, 4) << "\n";
        std::ofstream(dir / "device") << hex(d.device, 4) << "\n";
        std::ofstream(dir / "class") << hex(d.class_code, 6) << "\n";
        std::ofstream(dir / "driver_override") << "(null)\n";
        std::vector<std::uint8_t> cfg = d.config;
        if (cfg.empty()) cfg = PciConfigBuilder(d.vendor, d.device, PCI_HEADER_TYPE_NORMAL, false, 64).bytes();
        std::ofstream(dir / "config", std::ios::binary)
            .write(reinterpret_cast<const char*>(cfg.data()), static_cast<std::streamsize>(cfg.size()));
        if ((d.class_code >> 8) == 0x0300) std::ofstream(dir / "boot_vga") << (d.boot_vga ? "1\n" : "0\n");
        if (d.group) set_group(d.bdf, *d.group);
        if (!d.driver.empty()) bind(d.bdf, d.driver);
        native_[d.bdf] = d.driver;
        return *this;
    }

    void set_group(const std::string& bdf, unsigned group) {
        namespace fs = std::filesystem;
        const fs::path g = sys() / "kernel/iommu_groups" / std::to_string(group);
        fs::create_directories(g / "devices");
        fs::create_directory_symlink(dirs_.at(bdf), g / "devices" / bdf);
        fs::create_directory_symlink(g, dirs_.at(bdf) / "iommu_group");
    }
    // The driver drivers_probe picks when no driver_override is set.
    void set_native_driver(const std::string& bdf, const std::string& driver) { native_[bdf] = driver; }

    std::string driver_of(const std::string& bdf) const {
        std::error_code ec;
        const auto link = dirs_.at(bdf) / "driver";
        if (!std::filesystem::is_symlink(link, ec)) return {};
        return std::filesystem::read_symlink(link).filename().string();
    }
    std::string read(const std::filesystem::path& path) const {
        std::ifstream in(path);
        return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    }

    // A block device "name" with number "maj:min" whose sysfs directory sits below the PCI
    // device `bdf` (…/nvme/nvme0/nvme0n1), or below devices/virtual/block when `bdf` is empty.
    void add_block(const std::string& name, const std::string& majmin, const std::string& bdf,
                   const std::vector<std::string>& slaves = {}) {
        namespace fs = std::filesystem;
        const fs::path dir = bdf.empty() ? sys() / "devices/virtual/block" / name
                                         : dirs_.at(bdf) / "host0/block" / name;
        fs::create_directories(dir);
        if (!slaves.empty()) fs::create_directories(dir / "slaves");
        for (const auto& s : slaves) fs::create_directory_symlink(blocks_.at(s), dir / "slaves" / s);
        blocks_[name] = dir;
        fs::create_directory_symlink(dir, sys() / "dev/block" / majmin);
        fs::create_directory_symlink(dir, sys() / "class/block" / name);
    }
    // A network interface; `bdf` empty makes a virtual one (a bridge) over `lowers`.
    void add_net(const std::string& name, const std::string& bdf, const std::vector<std::string>& lowers = {}) {
        namespace fs = std::filesystem;
        const fs::path dir = bdf.empty() ? sys() / "devices/virtual/net" / name : dirs_.at(bdf) / "net" / name;
        fs::create_directories(dir);
        if (!bdf.empty()) fs::create_directory_symlink(dirs_.at(bdf), dir / "device");
        for (const auto& l : lowers) fs::create_directory_symlink(nets_.at(l), dir / ("lower_" + l));
        nets_[name] = dir;
        fs::create_directory_symlink(dir, sys() / "class/net" / name);
    }
    void set_root_mount(const std::string& majmin, const std::string& source, const std::string& fstype = "ext4") {
        std::ofstream(proc() / "self/mountinfo")
            << "22 1 0:21 / /proc rw,nosuid - proc proc rw\n"
            << "26 1 " << majmin << " / / rw,relatime shared:1 - " << fstype << " " << source << " rw\n"
            << "27 26 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw\n";
    }
    void set_default_route(const std::string& iface) {
        std::ofstream(proc() / "net/route") << kRouteHeader << iface
                                            << "\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
                                            << iface << "\t0002A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
    }

    struct Write {
        std::string path;  // relative to sys()
        std::string value;
        bool operator==(const Write&) const = default;
        friend std::ostream& operator<<(std::ostream& os, const Write& w) {
            return os << w.path << " <- \"" << w.value << "\"";
        }
    };
    const std::vector<Write>& writes() const { return writes_; }

    // A SysfsWriter emulating the kernel's PCI driver core for these files.
    auto kernel() {
        return [this](const std::filesystem::path& path, std::string_view value) { kernel_write(path, value); };
    }

private:
    static constexpr const char* kRouteHeader =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    static std::string hex(std::uint32_t v, int width) {
        char buf[16];
        std::snprintf(buf, sizeof buf, "0x%0*x", width, v);
        return buf;
    }
    static void touch(const std::filesystem::path& p) { std::ofstream(p).flush(); }
    static std::string trim(std::string_view v) {
        std::string s(v);
        while (!s.empty() && s.back() == '\n') s.pop_back();
        return s;
    }
    static void fail(int err, const std::filesystem::path& p) {
        throw std::system_error(err, std::generic_category(), "write " + p.string());
    }

    void bind(const std::string& bdf, const std::string& driver) {
        add_driver(driver);
        std::filesystem::create_directory_symlink(sys() / "bus/pci/drivers" / driver, dirs_.at(bdf) / "driver");
    }
    std::string override_of(const std::string& bdf) const {
        std::string o = trim(read(dirs_.at(bdf) / "driver_override"));
        return o == "(null)" ? std::string() : o;
    }

    void kernel_write(const std::filesystem::path& path, std::string_view value) {
        namespace fs = std::filesystem;
        std::error_code ec;
        if (!fs::exists(path, ec)) fail(ENOENT, path);
        const std::string rel = path.lexically_relative(sys()).string();
        writes_.push_back({rel, std::string(value)});
        const std::string v = trim(value);
        const std::string name = path.filename().string();
        if (name == "driver_override") {
            std::ofstream(path) << (v.empty() ? "(null)" : v) << "\n";
        } else if (name == "unbind") {
            const std::string drv = path.parent_path().filename().string();
            if (!dirs_.count(v) || driver_of(v) != drv) fail(ENODEV, path);
            fs::remove(dirs_.at(v) / "driver");
        } else if (name == "bind") {
            const std::string drv = path.parent_path().filename().string();
            if (!dirs_.count(v)) fail(ENODEV, path);
            if (!driver_of(v).empty()) fail(EBUSY, path);
            const std::string ov = override_of(v);
            if (ov.empty() ? drv != native_[v] : drv != ov) fail(ENODEV, path);
            bind(v, drv);
        } else if (name == "drivers_probe") {
            if (!dirs_.count(v)) fail(ENODEV, path);
            if (!driver_of(v).empty()) return;
            const std::string ov = override_of(v);
            const std::string want = ov.empty() ? native_[v] : ov;
            if (!want.empty() && fs::is_directory(sys() / "bus/pci/drivers" / want)) bind(v, want);
        } else {
            std::ofstream(path) << value;
        }
    }

    std::filesystem::path base_;
    std::map<std::string, std::filesystem::path> dirs_, blocks_, nets_;
    std::map<std::string, std::string> native_;
    std::vector<Write> writes_;
};

// The host most vfio tests use (the comments give each device's role):
//
//   00:00.0 host bridge                          group 0  (no driver)
//   00:01.0 root port, ACS on                    group 1  pcieport
//     01:00.0 NVMe 144d:a808, single function    group 1  nvme      root disk (nvme0n1p2, 259:2)
//   00:02.0 VGA 8086:3e92, boot_vga=1            group 2  i915
//   00:03.0 root port, ACS on                    group 3  pcieport
//     04:00.0 switch upstream port               group 3  pcieport
//       05:01.0 downstream port, ACS with RR and CR off   group 4  pcieport
//         06:00.0 NIC 1d0f:0065                  group 4  vfio-pci
//       05:02.0 downstream port, ACS on          group 5  pcieport
//         07:00.0 NIC 1d0f:0065                  group 5  ixgbe     eno1 → br0, default route
//   00:05.0 root port, ACS implementing SV/RR/CR only, all on    group 6  pcieport
//     08:00.0 GPU fn0, multifunction, no ACS     group 7  vfio-pci
//     08:00.1 GPU audio fn1, no ACS              group 7  snd_hda_intel
//   00:06.0 root port, ACS on                    group 8  pcieport
//     09:00.0 NIC fn0 with ACS, multifunction    group 9  vfio-pci
//     09:00.1 NIC fn1 with ACS                   group 10 (no driver)
//   00:1c.0 root port, no ACS (only AER)         group 11 pcieport
//     02:00.0 NIC 10ec:8168                      group 11 vfio-pci
//   00:1f.0 ISA bridge (no IOMMU group)                   (no driver)
// Designated initializers leave the other fields at their defaults on purpose.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
inline void populate_example_host(FakeSysfs& f) {
    using B = PciConfigBuilder;
    const std::uint8_t bridge = PCI_HEADER_TYPE_BRIDGE;
    auto root_port = [](std::uint16_t dev) { return B(0x8086, dev, PCI_HEADER_TYPE_BRIDGE).pcie(PCI_EXP_TYPE_ROOT_PORT); };
    f.add({.bdf = "0000:00:00.0", .vendor = 0x8086, .device = 0x3e30, .class_code = 0x060000,
           .config = B(0x8086, 0x3e30).bytes(), .group = 0u});
    f.add({.bdf = "0000:00:01.0", .vendor = 0x8086, .device = 0x1901, .class_code = 0x060400,
           .config = root_port(0x1901).aer().acs(0x140, kAllAcsControls, kLinuxAcsControls).bytes(),
           .driver = "pcieport", .group = 1u});
    f.add({.bdf = "0000:01:00.0", .parent = "0000:00:01.0", .vendor = 0x144d, .device = 0xa808,
           .class_code = 0x010802, .config = B(0x144d, 0xa808).pcie(PCI_EXP_TYPE_ENDPOINT, 0x70).aer().bytes(),
           .driver = "nvme", .group = 1u});
    f.add({.bdf = "0000:00:02.0", .vendor = 0x8086, .device = 0x3e92, .class_code = 0x030000,
           .config = B(0x8086, 0x3e92).pcie(PCI_EXP_TYPE_RC_END).bytes(), .driver = "i915", .group = 2u,
           .boot_vga = true});
    f.add({.bdf = "0000:00:03.0", .vendor = 0x8086, .device = 0x1905, .class_code = 0x060400,
           .config = root_port(0x1905).aer().acs(0x148, kAllAcsControls, kLinuxAcsControls).bytes(),
           .driver = "pcieport", .group = 3u});
    f.add({.bdf = "0000:04:00.0", .parent = "0000:00:03.0", .vendor = 0x10b5, .device = 0x8747,
           .class_code = 0x060400, .config = B(0x10b5, 0x8747, bridge).pcie(PCI_EXP_TYPE_UPSTREAM).aer().bytes(),
           .driver = "pcieport", .group = 3u});
    f.add({.bdf = "0000:05:01.0", .parent = "0000:04:00.0", .vendor = 0x10b5, .device = 0x8747,
           .class_code = 0x060400,
           .config = B(0x10b5, 0x8747, bridge).pcie(PCI_EXP_TYPE_DOWNSTREAM).aer().acs(0x1a0, kAllAcsControls,
                                                                                      PCI_ACS_SV | PCI_ACS_UF).bytes(),
           .driver = "pcieport", .group = 4u});
    f.add({.bdf = "0000:06:00.0", .parent = "0000:05:01.0", .vendor = 0x1d0f, .device = 0x0065,
           .class_code = 0x020000, .config = B(0x1d0f, 0x0065).pcie(PCI_EXP_TYPE_ENDPOINT).bytes(),
           .driver = "vfio-pci", .group = 4u});
    f.add({.bdf = "0000:05:02.0", .parent = "0000:04:00.0", .vendor = 0x10b5, .device = 0x8747,
           .class_code = 0x060400,
           .config = B(0x10b5, 0x8747, bridge).pcie(PCI_EXP_TYPE_DOWNSTREAM).aer().acs(0x1a0, kAllAcsControls,
                                                                                      kLinuxAcsControls).bytes(),
           .driver = "pcieport", .group = 5u});
    f.add({.bdf = "0000:07:00.0", .parent = "0000:05:02.0", .vendor = 0x1d0f, .device = 0x0065,
           .class_code = 0x020000, .config = B(0x1d0f, 0x0065).pcie(PCI_EXP_TYPE_ENDPOINT).bytes(),
           .driver = "ixgbe", .group = 5u});
    f.add({.bdf = "0000:00:05.0", .vendor = 0x8086, .device = 0x1909, .class_code = 0x060400,
           .config = root_port(0x1909).aer().acs(0x220, PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR,
                                                 PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR).bytes(),
           .driver = "pcieport", .group = 6u});
    f.add({.bdf = "0000:08:00.0", .parent = "0000:00:05.0", .vendor = 0x10de, .device = 0x1b80,
           .class_code = 0x030000,
           .config = B(0x10de, 0x1b80, PCI_HEADER_TYPE_NORMAL, true).pcie(PCI_EXP_TYPE_LEG_END, 0x60).aer().bytes(),
           .driver = "vfio-pci", .group = 7u});
    f.add({.bdf = "0000:08:00.1", .parent = "0000:00:05.0", .vendor = 0x10de, .device = 0x10f0,
           .class_code = 0x040300,
           .config = B(0x10de, 0x10f0, PCI_HEADER_TYPE_NORMAL, true).pcie(PCI_EXP_TYPE_ENDPOINT, 0x60).bytes(),
           .driver = "snd_hda_intel", .group = 7u});
    f.add({.bdf = "0000:00:06.0", .vendor = 0x8086, .device = 0x190b, .class_code = 0x060400,
           .config = root_port(0x190b).aer().acs(0x140, kAllAcsControls, kLinuxAcsControls).bytes(),
           .driver = "pcieport", .group = 8u});
    for (const char* fn : {"0000:09:00.0", "0000:09:00.1"}) {
        f.add({.bdf = fn, .parent = "0000:00:06.0", .vendor = 0x8086, .device = 0x1572, .class_code = 0x020000,
               .config = B(0x8086, 0x1572, PCI_HEADER_TYPE_NORMAL, true)
                             .pcie(PCI_EXP_TYPE_ENDPOINT)
                             .aer()
                             .acs(0x1d0, PCI_ACS_SV | PCI_ACS_RR | PCI_ACS_CR | PCI_ACS_UF, kLinuxAcsControls)
                             .bytes(),
               .driver = fn[11] == '0' ? "vfio-pci" : "", .group = fn[11] == '0' ? 9u : 10u});
    }
    f.add({.bdf = "0000:00:1c.0", .vendor = 0x8086, .device = 0xa110, .class_code = 0x060400,
           .config = root_port(0xa110).aer().bytes(), .driver = "pcieport", .group = 11u});
    f.add({.bdf = "0000:02:00.0", .parent = "0000:00:1c.0", .vendor = 0x10ec, .device = 0x8168,
           .class_code = 0x020000, .config = B(0x10ec, 0x8168).pcie(PCI_EXP_TYPE_ENDPOINT).bytes(),
           .driver = "vfio-pci", .group = 11u});
    f.add({.bdf = "0000:00:1f.0", .vendor = 0x8086, .device = 0xa305, .class_code = 0x060100,
           .config = B(0x8086, 0xa305).bytes()});

    f.add_block("nvme0n1", "259:0", "0000:01:00.0");
    f.add_block("nvme0n1p2", "259:2", "0000:01:00.0");
    f.add_net("eno1", "0000:07:00.0");
    f.add_net("br0", "", {"eno1"});
    f.set_root_mount("259:2", "/dev/nvme0n1p2");
    f.set_default_route("br0");
}

#pragma GCC diagnostic pop

}  // namespace vmm::test
