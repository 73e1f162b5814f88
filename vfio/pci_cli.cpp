// `vmctl pci list|check` (see pci_cli.h).
#include "vfio/pci_cli.h"

#include "common/error.h"
#include "vfio/assignability.h"
#include "vfio/host_usage.h"
#include "vfio/pci_topology.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <iomanip>
#include <optional>

namespace vmm::vfio {

namespace {

constexpr int kExitOk = 0;
constexpr int kExitProblems = 1;
constexpr int kExitUsage = 64;
constexpr int kExitHost = 70;

constexpr const char* kUsage =
    "usage: vmctl pci list [--sysfs-root DIR] [--proc-root DIR] [--root-device DEV] [--json]\n"
    "       vmctl pci check BDF [--sysfs-root DIR] [--proc-root DIR] [--root-device DEV] [--json]\n";

struct Options {
    std::string command;
    std::optional<std::string> bdf;
    std::string sysfs_root = "/sys";
    std::string proc_root = "/proc";
    std::string root_device;
    bool json = false;
};

struct UsageError : Error {
    using Error::Error;
};

Options parse(const std::vector<std::string>& args) {
    Options o;
    std::vector<std::string> positional;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        auto value = [&](const char* name) {
            if (i + 1 >= args.size()) throw UsageError(std::string(name) + " needs a value");
            return args[++i];
        };
        if (a == "--json") o.json = true;
        else if (a == "--sysfs-root") o.sysfs_root = value("--sysfs-root");
        else if (a == "--proc-root") o.proc_root = value("--proc-root");
        else if (a == "--root-device") o.root_device = value("--root-device");
        else if (a.rfind("--", 0) == 0) throw UsageError("unknown option " + a);
        else positional.push_back(a);
    }
    if (positional.empty()) throw UsageError("missing command (list or check)");
    o.command = positional[0];
    if (o.command == "list") {
        if (positional.size() > 1) throw UsageError("list takes no arguments, got " + positional[1]);
    } else if (o.command == "check") {
        if (positional.size() != 2) throw UsageError("check takes exactly one PCI address");
        o.bdf = positional[1];
    } else {
        throw UsageError("unknown command " + o.command + " (list or check)");
    }
    return o;
}

std::string hex(std::uint32_t v, int width) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%0*x", width, v);
    return buf;
}

std::string or_dash(const std::string& s) { return s.empty() ? "-" : s; }

void print_check(const AssignabilityReport& r, std::ostream& out) {
    out << r.bdf << "  " << hex(r.vendor, 4) << ":" << hex(r.device, 4) << "  driver " << or_dash(r.driver) << "\n";
    out << "  IOMMU group:   " << (r.iommu_group ? std::to_string(*r.iommu_group) : "none") << "\n";
    for (const auto& m : r.group_devices) {
        out << "    " << m.bdf << "  " << std::left << std::setw(12) << or_dash(m.driver) << std::right
            << (m.bridge ? "  bridge" : "") << (m.viable ? "" : "  (blocks the group)") << "\n";
    }
    out << "  ACS isolated:  " << (r.acs_isolated ? "yes" : "no") << "\n";
    out << "  viable:        " << (r.viable ? "yes" : "no") << "\n";
    out << "  host use:      " << (r.host_use.empty() ? "none" : "yes") << "\n";
    if (!r.reasons.empty()) {
        out << "  reasons:\n";
        for (const auto& reason : r.reasons) out << "    - " << reason << "\n";
    }
    out << "  verdict:       " << (r.ok() ? "can be assigned" : "cannot be assigned as it stands") << "\n";
}

void print_list(const std::vector<AssignabilityReport>& reports, const PciTopology& topo, std::ostream& out) {
    out << std::left << std::setw(14) << "BDF" << std::setw(11) << "ID" << std::setw(8) << "CLASS" << std::setw(14)
        << "DRIVER" << std::setw(7) << "GROUP" << std::setw(5) << "ACS" << std::setw(8) << "VIABLE"
        << "HOST\n";
    for (const auto& r : reports) {
        const PciDeviceInfo* d = topo.find(r.bdf);
        out << std::setw(14) << r.bdf << std::setw(11) << (hex(r.vendor, 4) + ":" + hex(r.device, 4)) << std::setw(8)
            << hex(d ? d->class_code >> 8 : 0, 4) << std::setw(14) << or_dash(r.driver) << std::setw(7)
            << (r.iommu_group ? std::to_string(*r.iommu_group) : "-") << std::setw(5)
            << (r.acs_isolated ? "yes" : "no") << std::setw(8) << (r.viable ? "yes" : "no")
            << (r.host_use.empty() ? "-" : "yes") << "\n";
    }
    out << std::right;
}

}  // namespace

int run_pci_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
    Options o;
    try {
        o = parse(args);
    } catch (const UsageError& e) {
        err << "vmctl pci: " << e.what() << "\n" << kUsage;
        return kExitUsage;
    }
    PciTopology topo;
    std::vector<HostUse> uses;
    try {
        topo = PciTopology::scan(o.sysfs_root);
        HostPaths paths = HostPaths::under(o.sysfs_root, o.proc_root);
        paths.root_device = o.root_device;
        uses = find_host_devices(topo, paths);
    } catch (const std::exception& e) {
        err << "vmctl pci: " << e.what() << "\n";
        return kExitHost;
    }
    try {
        if (o.command == "list") {
            std::vector<AssignabilityReport> reports;
            for (const auto& d : topo.devices()) reports.push_back(check_assignable(topo, d.bdf, uses));
            if (o.json) {
                nlohmann::json arr = nlohmann::json::array();
                for (const auto& r : reports) arr.push_back(to_json(r));
                out << arr.dump(2) << "\n";
            } else {
                print_list(reports, topo, out);
            }
            return kExitOk;
        }
        const AssignabilityReport r = check_assignable(topo, *o.bdf, uses);
        if (o.json) out << to_json(r).dump(2) << "\n";
        else print_check(r, out);
        return r.ok() ? kExitOk : kExitProblems;
    } catch (const std::exception& e) {
        err << "vmctl pci: " << e.what() << "\n";
        return kExitProblems;
    }
}

}  // namespace vmm::vfio
