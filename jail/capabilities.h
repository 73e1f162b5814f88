// Dropping the anchor's Linux capabilities once its fds are open.
//
// Who calls it: vmm-anchor's Machine::run() on the main thread, after every device, fd and
// thread exists and just before the seccomp filter. Capabilities (and the bounding set) are
// per thread in Linux, so the drop is broadcast: every other thread of the process runs the
// same capset in a signal handler (kDropSignal), as libcap's psx does; the call returns when
// all have done so. PR_SET_NO_NEW_PRIVS is set too.
//
// What is kept: only what a restarted anchor (execv of itself on guest reset) needs again for
// its setup, and only for the devices the manifest has (tap: CAP_NET_ADMIN; VFIO:
// CAP_IPC_LOCK for its pinned DMA memory). Kept capabilities stay in the bounding set, so a
// root anchor regains exactly those (and no more) after its restart.
#pragma once

#include <cstdint>
#include <vector>

namespace vmm::jail {

// A set of capability numbers (linux/capability.h CAP_*), one bit each.
using CapMask = std::uint64_t;

inline constexpr CapMask cap_bit(int cap) { return CapMask{1} << cap; }

// The capabilities the anchor keeps for a domain with these devices.
CapMask anchor_kept_capabilities(bool has_tap_nics, bool has_vfio);

struct CapabilityState {
    CapMask effective = 0, permitted = 0, inheritable = 0;
};

// The highest capability number this kernel knows (/proc/sys/kernel/cap_last_cap, or the
// headers' CAP_LAST_CAP where /proc is missing, as in the jail).
int last_capability();

// The calling thread's capabilities (capget).
CapabilityState current_capabilities();

// True if `cap` is in the calling thread's bounding set.
bool in_bounding_set(int cap);

// Drops every capability not in `keep` from the effective, permitted, inheritable, ambient
// and bounding sets of every thread of the process, and sets PR_SET_NO_NEW_PRIVS. A process
// without CAP_SETPCAP leaves its bounding set alone (it cannot have gained anything outside
// its permitted set). Throws vmm::Error / std::system_error; some thread that did not answer
// within two seconds is an error too.
void drop_capabilities(CapMask keep);

// Drops every capability not in `keep` from the calling thread's bounding set only (the part
// of drop_capabilities that costs two prctl calls per capability and thread). For a process
// that is still single-threaded: every thread it makes later inherits the smaller set, and
// drop_capabilities then finds nothing left to drop there. The effective and permitted sets
// are untouched. Nothing without CAP_SETPCAP. Throws std::system_error.
void drop_bounding_set(CapMask keep);

}  // namespace vmm::jail
