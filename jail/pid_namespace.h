// A pid namespace of the anchor's own (vmm-anchor --jail-pid-ns; docs/SECURITY.md, "The pid
// namespace").
//
// PidNamespace::enter() forks the calling process, which must still be single-threaded, into a
// new pid namespace. The child returns from it as that namespace's init (pid 1) and goes on as
// the anchor; it sees no process but its own, whatever /proc it might find. The parent stays in
// the host's namespace as the *keeper* and never returns from enter():
//   - it is the process the anchor's starter knows (vmmd's child, the pid in the `pid` file,
//     what `vmctl` and pillar signal): it passes SIGTERM, SIGINT and SIGHUP on to the anchor
//     and ends as the anchor ended, with the same exit status or killed by the same signal;
//     SIGKILL to the keeper kills the anchor too (PR_SET_PDEATHSIG);
//   - it answers the one question the anchor cannot answer itself: the host's ids of its
//     threads (QMP query-cpus-fast reports those, by which the host pins vCPU threads), read
//     from /proc/<anchor>/task/*/status (NSpid), which a jailed anchor has no way to see;
//   - it keeps no capability but CAP_KILL, no fd but stdio and the anchor's socket, no root
//     but the host's /proc (chroot), and runs under a seccomp filter of its own
//     (FilterKind::Keeper: kill only to the anchor, files opened read-only) with
//     PR_SET_NO_NEW_PRIVS.
// A restart (re-exec on guest reset) stays in the namespace, with the same keeper: the socket
// survives the exec and the environment variable kPidNamespaceEnv names it. An anchor that
// finds the variable but is not pid 1 ignores it (a variable alone does not pass for a
// namespace) and makes a namespace of its own.
#pragma once

#include "common/fd.h"
#include "jail/seccomp_policy.h"

#include <sys/types.h>

#include <memory>
#include <mutex>
#include <vector>

namespace vmm::jail {

inline constexpr const char* kPidNamespaceEnv = "VMM_ANCHOR_PID_NS";  // "<socket fd> <keeper pid>"

// The most thread ids one question may hold.
inline constexpr std::size_t kMaxTidsPerQuestion = 512;

class PidNamespace {
public:
    // In the child: returns as pid 1 of the new namespace (or of the namespace a restart is in
    // already). In the keeper: does not return. `seccomp`: the keeper's filter mode.
    // Throws vmm::Error / std::system_error when the namespace cannot be made.
    static PidNamespace enter(SeccompMode seccomp);

    PidNamespace(PidNamespace&&) noexcept;
    PidNamespace& operator=(PidNamespace&&) = delete;
    ~PidNamespace();

    // The keeper's pid in the host's namespace: the process the host started.
    pid_t keeper_pid() const { return keeper_pid_; }

    // The host's ids of this process's threads `tids` (ids in this namespace), in order; 0 for
    // an id that is not a thread of this process. Thread-safe. Throws vmm::Error when the
    // keeper does not answer (within 2 s) or answers wrongly.
    std::vector<int> host_tids(const std::vector<int>& tids) const;

private:
    PidNamespace(Fd socket, pid_t keeper);

    Fd socket_;
    pid_t keeper_pid_;
    std::unique_ptr<std::mutex> mutex_;
    mutable int questions_ = 0;  // under mutex_
};

// The keeper's work on one question, apart for tests: for each id in `tids` (ids in the
// anchor's namespace), the host id of the thread of process `anchor` (a host pid) that has it,
// read from <proc_root>/<anchor>/task/*/status; 0 where none has. Allocates nothing (the
// keeper runs it under its filter); `host` holds `count` entries.
void translate_tids(const char* proc_root, pid_t anchor, const int* tids, int* host, std::size_t count);

}  // namespace vmm::jail
