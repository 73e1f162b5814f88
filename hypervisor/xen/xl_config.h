// The xl domain configuration (xl.cfg(5)) for a domain manifest: a PVH guest booted from the
// manifest's kernel, with its memory, vCPUs, disks, NICs and PCI devices. Pure; throws
// ManifestError naming the field for what Xen cannot do from this manifest (flat binaries,
// hide_hypervisor). Thread-safe.
#pragma once

#include "manifest/domain_manifest.h"

#include <string>

namespace vmm::hv::xen {

std::string make_xl_config(const DomainManifest& manifest);

// A string as an xl.cfg literal: double-quoted, with \ and " escaped.
std::string xl_quote(const std::string& text);

}  // namespace vmm::hv::xen
