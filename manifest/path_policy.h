// The manifest's host paths against an operator's allow-list of directories (issue 7): a
// controller may only hand a domain files (kernel, initrd, disks, console sockets) under the
// directories vmmd / vmm-anchor were told to allow (--allow-dir). Paths are resolved first
// (symlinks and "..", weakly_canonical), so a link or a dot-dot cannot lead out of an allowed
// directory. An empty list allows everything (the default, as before).
// Pure apart from resolving paths in the file system; any thread.
#pragma once

#include "manifest/domain_manifest.h"

#include <string>
#include <vector>

namespace vmm {

// Throws ManifestError naming the first field whose path lies outside every allowed
// directory, or an allowed directory that is not absolute (field "--allow-dir").
void check_manifest_paths(const DomainManifest& manifest, const std::vector<std::string>& allowed_dirs);

}  // namespace vmm
