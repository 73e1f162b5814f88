// What a jailed anchor's file-system jail holds (jail/mount_jail.h), derived from its manifest:
// the anchor's wiring decides, jail/ only builds. Every path stays where it is on the host.
//   - its runtime, read-only and executable: the vmm-anchor binary and, when it is linked
//     dynamically (the sanitizer build; the default is a static PIE), the shared objects it has
//     loaded (as the dynamic loader named them, so the symlinks it follows exist) and
//     ld.so.cache — so that a restart (re-exec on guest reset) works inside the jail;
//   - read-only: the manifest, kernel, initrd, read-only disks, /etc/localtime (log times);
//     writable: the other disks, the state directory, the directories of socket consoles,
//     /dev/pts (the ptys of the consoles, linked from the state directory for the host);
//   - devices: /dev/kvm, /dev/ptmx, /dev/null; /dev/net/tun with taps; /dev/vfio/vfio, the
//     manifest's IOMMU groups and a read-only /sys with PCI passthrough;
//   - a network namespace of its own when the domain has no tap;
//   - the capabilities anchor_kept_capabilities() names, nothing more.
#pragma once

#include "jail/mount_jail.h"
#include "manifest/domain_manifest.h"

#include <optional>
#include <string>

namespace vmm::anchor {

struct AnchorJailOptions {
    std::string run_dir = "/run/hypervisor";  // state directories: <run_dir>/kvm/<name>
    std::string manifest_path;                // read again by a restarted anchor
    std::string executable;                   // this binary's host path (self_executable())
    std::string sysfs = "/sys";               // for the IOMMU groups of the manifest's devices and the mitigation reports a tap follows
    std::optional<jail::JailIdentity> identity;
};

jail::JailSpec anchor_jail_spec(const DomainManifest& manifest, const AnchorJailOptions& options);

// This process's executable: /proc/self/exe when /proc is there, else the path it was
// executed by (inside the jail the restart execs the same host path, which the jail holds).
std::string self_executable();

}  // namespace vmm::anchor
