// `vmctl pci ...`: the host PCI inspection commands, kept here so vmctl only dispatches.
//
//   pci list  [--sysfs-root DIR] [--proc-root DIR] [--root-device DEV] [--json]
//   pci check BDF [--sysfs-root DIR] [--proc-root DIR] [--root-device DEV] [--json]
//
// list: one line per host PCI function (address, IDs, class, driver, IOMMU group, ACS, viable,
// host use); --json: an array of check reports. check: the full report for one function
// (assignability.h's to_json with --json). --proc-root replaces /proc (mountinfo, net/route)
// and --root-device names the root filesystem's device instead of reading mountinfo.
//
// Exit status: 0 success (check: the device can be assigned as it stands), 1 check found
// problems or the device does not exist, 64 usage error, 70 sysfs unreadable. Called on
// vmctl's main thread.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace vmm::vfio {

// `args` are the words after "pci".
int run_pci_command(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

}  // namespace vmm::vfio
