// Host usage: which PCI devices the host itself depends on and that must not be taken away
// for a guest unless the operator forces it: the boot VGA device (its console), the device
// holding the root filesystem (through partitions, device-mapper and md slaves), and the NICs
// carrying the IPv4 default route (through bridges, bonds and VLANs via lower_* links).
//
// Every path is configurable (HostPaths) so tests run on a fake sysfs and fake /proc files.
// Read-only; any thread. Unreadable /proc files are logged and skipped: the check is a guard
// rail, not a proof.
#pragma once

#include "vfio/pci_topology.h"

#include <filesystem>
#include <string>
#include <vector>

namespace vmm::vfio {

struct HostPaths {
    std::filesystem::path sysfs_root = "/sys";
    std::filesystem::path mountinfo = "/proc/self/mountinfo";
    std::filesystem::path net_route = "/proc/net/route";
    // The root filesystem's device. Empty: the device mounted on "/" in `mountinfo`. Otherwise
    // "MAJ:MIN", a block device name ("nvme0n1p2") or a /dev path.
    std::string root_device;

    // /sys and /proc replaced by the given directories (mountinfo = proc/self/mountinfo,
    // net_route = proc/net/route).
    static HostPaths under(const std::filesystem::path& sysfs_root, const std::filesystem::path& proc_root);
};

struct HostUse {
    std::string bdf;
    std::string what;  // "is the boot VGA device (the host console)", ...: follows the BDF
};

// All host-used devices in `topology` (which must have been scanned from paths.sysfs_root).
std::vector<HostUse> find_host_devices(const PciTopology& topology, const HostPaths& paths);

}  // namespace vmm::vfio
