// The anchor's seccomp policy as libseccomp rules: what each filter allows and why
// (docs/SECURITY.md has the same groups). Compiled to BPF at build time by
// jail/tools/seccomp_bpf_gen.cpp into the programs seccomp_policy.cpp loads, as Firecracker's
// seccompiler does: an anchor start builds no filter, it patches its pid into a copy and loads
// it. The tests compile the policy again with this and compare (seccomp_policy_test).
// Not linked into vmm-anchor (nothing there calls it), so neither is libseccomp.
#pragma once

#include "jail/seccomp_policy.h"

#include <linux/filter.h>

#include <cstdint>
#include <vector>

namespace vmm::jail {

// The BPF libseccomp makes of the policy for `kind`, with `mode`'s default action (Enforce:
// SECCOMP_RET_TRAP, Log: SECCOMP_RET_LOG) and tgkill allowed for `pid` only. Throws vmm::Error
// (or std::system_error) when libseccomp refuses, and for SeccompMode::Off.
// The keeper's filter allows kill for `peer` only.
std::vector<sock_filter> compile_seccomp_filter(FilterKind kind, SeccompMode mode, std::uint32_t pid,
                                                std::uint32_t peer = 0);

}  // namespace vmm::jail
