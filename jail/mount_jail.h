// The anchor's file-system jail, in the spirit of Firecracker's jailer (docs/SECURITY.md,
// "The mount jail").
//
// enter_jail() turns the calling process — which must still be single-threaded, so that every
// thread made later inherits all of it — into a jailed one:
//   - new mount, IPC and UTS namespaces (and a new network namespace when the domain has no
//     tap: it then has no network at all);
//   - its root becomes a small tmpfs holding only what the spec names, at the same absolute
//     paths as on the host (so nothing else in the anchor changes, and a restart by re-exec
//     finds its binary, its libraries and its files again): bind mounts of files and
//     directories (read-only unless writable; noexec unless executable; always nosuid), symlinks
//     met on the way recreated, character devices recreated with mknod from the host's numbers
//     (owned by the jail's identity, so the host's nodes are never touched); the tmpfs itself
//     is read-only afterwards. There is no /proc and no /sys (unless bound): a process that
//     escapes into the anchor sees no other process and no host file it was not given;
//   - optionally a dedicated uid/gid (no supplementary groups);
//   - capabilities reduced to `keep` (bounding set too; ambient when switching to a non-root
//     identity, so that a restart by re-exec keeps them) and PR_SET_NO_NEW_PRIVS: the process
//     does its whole setup with exactly the privileges a restarted anchor has.
// The host sees none of it: the tmpfs is mounted on `mountpoint` in the new namespace only
// (one empty host directory serves every anchor).
#pragma once

#include "jail/capabilities.h"

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace vmm::jail {

struct JailBind {
    std::string host_path;  // absolute; symlinks on the way are followed and recreated
    bool writable = false;
    bool executable = false;
    bool create_dir = false;  // create the host directory (0700, owned by the identity) if missing
};

struct JailIdentity {
    uid_t uid = 0;
    gid_t gid = 0;
};

struct JailSpec {
    std::string mountpoint;            // an existing or creatable host directory (0700)
    std::vector<JailBind> binds;
    std::vector<std::string> devices;  // character device nodes, e.g. "/dev/kvm"
    // The working directory inside the jail (an empty directory of the jail's own when nothing
    // is bound there): relative paths the process was given (a restart's --manifest, say)
    // resolve as they did before. "" = "/".
    std::string workdir;
    bool new_network_namespace = false;
    std::optional<JailIdentity> identity;
    CapMask keep = 0;
};

// The file the jail's root holds and no host root does, and the environment variable
// enter_jail sets (a restart by execve inherits it).
inline constexpr const char* kJailMarker = "/.vmm-jail";
inline constexpr const char* kJailEnvMarker = "VMM_ANCHOR_JAILED";

// True when the process runs inside a jail made by enter_jail: its root holds the marker, it
// has the environment variable, and there is no /proc (a file alone, or a variable alone, made
// by someone else does not pass for a jail).
bool inside_jail();

// Throws vmm::Error / std::system_error naming the step and path; a failure leaves the
// process in an unspecified half-jailed state: the caller exits.
void enter_jail(const JailSpec& spec);

}  // namespace vmm::jail
