// Host-used device detection (see host_usage.h).
#include "vfio/host_usage.h"

#include "common/log.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <fstream>
#include <regex>
#include <set>
#include <sstream>

namespace vmm::vfio {

namespace fs = std::filesystem;

namespace {

// Device links nest only a few levels (partition → dm → md); the limit stops a link loop.
constexpr int kMaxStackDepth = 8;

struct RootMount {
    std::string majmin;
    std::string source;
};

// /proc/self/mountinfo (proc(5)): "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [TAGS...] - FSTYPE SOURCE
// SUPEROPTS". The last mount on "/" is the visible one.
std::optional<RootMount> root_mount(const fs::path& mountinfo) {
    std::ifstream in(mountinfo);
    if (!in) return std::nullopt;
    std::optional<RootMount> found;
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        std::string id, parent, majmin, root, mountpoint, word;
        if (!(ls >> id >> parent >> majmin >> root >> mountpoint)) continue;
        if (mountpoint != "/") continue;
        while (ls >> word && word != "-") {
        }
        std::string fstype, source;
        ls >> fstype >> source;
        found = RootMount{majmin, source};
    }
    return found;
}

// The sysfs directory of a block device named by "MAJ:MIN", a name or a /dev path.
std::optional<fs::path> block_dir(const fs::path& sysfs, const std::string& spec) {
    static const std::regex kMajMin("^[0-9]+:[0-9]+$");
    std::error_code ec;
    if (std::regex_match(spec, kMajMin)) {
        const fs::path p = sysfs / "dev/block" / spec;
        if (fs::exists(p, ec)) return p;
        return std::nullopt;
    }
    std::string name = fs::path(spec).filename().string();
    if (!spec.empty() && spec[0] == '/') {
        // /dev/mapper/root → ../dm-0 on the real host; a block device node gives MAJ:MIN.
        struct stat st{};
        if (::stat(spec.c_str(), &st) == 0 && S_ISBLK(st.st_mode)) {
            const fs::path p = sysfs / "dev/block" /
                               (std::to_string(major(st.st_rdev)) + ":" + std::to_string(minor(st.st_rdev)));
            if (fs::exists(p, ec)) return p;
        }
    }
    if (name.empty()) return std::nullopt;
    const fs::path p = sysfs / "class/block" / name;
    if (fs::exists(p, ec)) return p;
    return std::nullopt;
}

void collect_block(const PciTopology& topo, const fs::path& dir, int depth, std::set<std::string>& out) {
    if (depth > kMaxStackDepth) return;
    if (auto bdf = topo.owning_device(dir)) {
        out.insert(*bdf);
        return;
    }
    // Virtual block devices (dm-N, mdN) list what they are built on in slaves/.
    std::error_code ec;
    for (const auto& s : fs::directory_iterator(dir / "slaves", ec)) collect_block(topo, s.path(), depth + 1, out);
}

// /proc/net/route: "Iface Destination Gateway Flags RefCnt Use Metric Mask ...", hex fields.
std::vector<std::string> default_route_interfaces(const fs::path& route) {
    std::vector<std::string> out;
    std::ifstream in(route);
    if (!in) return out;
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
        std::istringstream ls(line);
        std::string iface, dest, gateway, flags, refcnt, use, metric, mask;
        if (!(ls >> iface >> dest >> gateway >> flags >> refcnt >> use >> metric >> mask)) continue;
        if (dest == "00000000" && mask == "00000000") out.push_back(iface);
    }
    return out;
}

void collect_net(const PciTopology& topo, const fs::path& net_dir, int depth, std::set<std::string>& out) {
    if (depth > kMaxStackDepth) return;
    std::error_code ec;
    if (fs::exists(net_dir / "device", ec)) {
        if (auto bdf = topo.owning_device(net_dir / "device")) out.insert(*bdf);
        return;
    }
    // Bridges, bonds and VLANs link their lower devices as lower_<name>.
    for (const auto& e : fs::directory_iterator(net_dir, ec)) {
        if (e.path().filename().string().rfind("lower_", 0) == 0) collect_net(topo, e.path(), depth + 1, out);
    }
}

}  // namespace

HostPaths HostPaths::under(const fs::path& sysfs_root, const fs::path& proc_root) {
    HostPaths p;
    p.sysfs_root = sysfs_root;
    p.mountinfo = proc_root / "self/mountinfo";
    p.net_route = proc_root / "net/route";
    return p;
}

std::vector<HostUse> find_host_devices(const PciTopology& topo, const HostPaths& paths) {
    auto log = logger("vfio");
    std::vector<HostUse> uses;
    for (const auto& d : topo.devices()) {
        if (d.boot_vga) uses.push_back({d.bdf, "is the boot VGA device (the host console)"});
    }

    std::string root_spec = paths.root_device;
    std::string root_label = root_spec;
    if (root_spec.empty()) {
        if (auto m = root_mount(paths.mountinfo)) {
            root_label = m->source;
            // Filesystems such as btrfs report an anonymous device 0:N; then the source names it.
            root_spec = m->majmin.rfind("0:", 0) == 0 ? m->source : m->majmin;
            if (!block_dir(paths.sysfs_root, root_spec)) root_spec = m->source;
        } else {
            log->warn("cannot find the root filesystem in {}: not guarding its disk", paths.mountinfo.string());
        }
    }
    if (!root_spec.empty()) {
        if (auto dir = block_dir(paths.sysfs_root, root_spec)) {
            std::set<std::string> bdfs;
            collect_block(topo, *dir, 0, bdfs);
            for (const auto& b : bdfs) uses.push_back({b, "holds the root filesystem (" + root_label + ")"});
        } else {
            log->debug("root filesystem device {} is not a block device in sysfs", root_spec);
        }
    }

    std::error_code ec;
    if (!fs::exists(paths.net_route, ec)) {
        log->warn("cannot read {}: not guarding the default-route NIC", paths.net_route.string());
    }
    for (const auto& iface : default_route_interfaces(paths.net_route)) {
        std::set<std::string> bdfs;
        collect_net(topo, paths.sysfs_root / "class/net" / iface, 0, bdfs);
        for (const auto& b : bdfs) uses.push_back({b, "carries the default route (interface " + iface + ")"});
    }
    return uses;
}

}  // namespace vmm::vfio
