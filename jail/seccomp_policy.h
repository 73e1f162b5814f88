// The anchor's seccomp allow-lists (rules in jail/seccomp_rules.cpp, compiled to BPF at build time),
//
// Who calls it: vmm-anchor's Machine::run() on the main thread, after every device, fd and
// thread exists and before the event loop runs. The filter is installed with TSYNC, so every
// thread of the process (vCPUs, notify, blkN-q/-io, and any later one) gets it. Each vCPU
// thread then stacks a narrower filter of its own (install_vcpu_seccomp), so does each device
// I/O thread (install_io_thread_seccomp, one list per IoThreadKind), and so does the main
// thread, which serves QMP (install_main_thread_seccomp). A syscall that
// is not listed raises SIGSYS (SCMP_ACT_TRAP); the handler installed here writes
// "vmm-anchor: seccomp: denied syscall N (name)" to stderr and _exit()s with
// kExitSeccompDenied. docs/SECURITY.md says what is allowed and why.
//
// Re-execution: on guest reset the anchor restarts by execv("/proc/self/exe") (anchor/main.cpp)
// and a seccomp filter survives execve. The process list therefore also holds what the
// anchor's setup needs (the "restart" group: execve, the dynamic loader, unix socket listen,
// mkdir, pty, io_uring_setup...). Only the anchor's restart thread keeps that list alone: it
// makes the execve, whose image inherits that thread's filters (anchor/restart_thread.h). Every
// other thread runs under a narrower list stacked on it. The restarted image does not stack a
// second copy of the process filter: the
// environment variable kSeccompEnvMarker plus "Seccomp: 2" in /proc/self/status say it is
// already in place (stacking one per reboot would hit the kernel's 32K-instruction limit).
#pragma once

#include <linux/filter.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace vmm::jail {

// The anchor's exit status when the filter refused a syscall. Even, so it cannot be mistaken
// for a debug-exit status ((v << 1) | 1), and distinct from anchor/stop_reason.h's values.
inline constexpr int kExitSeccompDenied = 12;

// Set in the environment once the anchor's filter is installed; inherited across the restart.
inline constexpr const char* kSeccompEnvMarker = "VMM_ANCHOR_SECCOMP";

enum class SeccompMode {
    Off,      // no filter
    Log,      // unlisted syscalls are allowed and logged by the kernel (audit, dmesg)
    Enforce,  // unlisted syscalls raise SIGSYS: message on stderr, _exit(kExitSeccompDenied)
};

// "on" | "log" | "off"; throws vmm::Error otherwise.
SeccompMode parse_seccomp_mode(std::string_view text);
const char* to_string(SeccompMode mode);

struct SeccompOptions {
    // Keep execve and the setup syscalls (the anchor's restart re-executes it, see above).
    // false gives the strict run-time list: only for processes that never exec again.
    bool allow_reexec = true;
};

// Installs the SIGSYS reporter and loads the filter for every thread of the process (TSYNC).
// Does nothing for Off. Throws vmm::Error / std::system_error when the kernel refuses.
// Returns false when an inherited anchor filter was found and nothing new was loaded.
bool install_anchor_seccomp(SeccompMode mode, const SeccompOptions& options = {});

// The main thread's own filter: the strict process list (no execve, no setup syscalls: no
// socket, bind, listen, mkdir, symlink, chmod, io_uring_setup, capset, seccomp...) stacked on
// the calling thread only, after install_anchor_seccomp. The anchor's main thread serves QMP
// and tears the machine down under it; the restart's execve is made by a thread of its own
// that keeps the process filter only (anchor/restart_thread.h). Nothing for Off. Throws like
// install_anchor_seccomp.
void install_main_thread_seccomp(SeccompMode mode);

// The vCPU threads' own filter, narrower than the process one: the calling thread stacks it
// on itself (no TSYNC; it must come after install_anchor_seccomp, whose TSYNC fails once a
// thread's filter differs from the rest of the process). Both filters run on that thread and
// the strictest verdict wins. Same actions as the process filter (SIGSYS reporter for Enforce,
// the kernel log for Log); nothing for Off. The anchor's vCPU threads call it once, before
// their first KVM_RUN. Throws like install_anchor_seccomp.
void install_vcpu_seccomp(SeccompMode mode);

// The syscalls the vCPU filter allows (ioctl and openat only with argument checks).
std::vector<std::string> vcpu_seccomp_syscalls();

// The anchor's device I/O threads, each kind with its own filter (docs/SECURITY.md).
enum class IoThreadKind {
    Block,   // a virtio-blk disk's dispatcher "<name>-q" and its engine threads "<name>-io..."
    Net,     // a virtio-net NIC's event loop "<name>-io"
    Notify,  // the anchor's "notify" thread: ioeventfds, virtio-console queues, socket consoles
};
const char* to_string(IoThreadKind kind);

// A device I/O thread's own filter, stacked like the vCPU one: the calling thread only, after
// install_anchor_seccomp, narrower than the process filter. Nothing for Off. Throws like
// install_anchor_seccomp.
void install_io_thread_seccomp(SeccompMode mode, IoThreadKind kind);

// The syscalls a kind's filter allows (ioctl only with argument checks).
std::vector<std::string> io_thread_seccomp_syscalls(IoThreadKind kind);

// The pid namespace keeper's filter (jail/pid_namespace.h), for the calling process, which is
// single-threaded: signals only to `anchor` (kill) and itself (tgkill), files opened read-only,
// polling, reading and writing its fds, waiting for the anchor, exit. Installs the SIGSYS
// reporter for Enforce. Nothing for Off. Throws like install_anchor_seccomp.
void install_keeper_seccomp(SeccompMode mode, pid_t anchor);
// The syscalls it allows (kill, tgkill and openat only with argument checks).
std::vector<std::string> keeper_seccomp_syscalls();

// The names of the syscalls the policy allows (some only with argument checks), for tests
// and docs (defined with the rules, jail/seccomp_rules.cpp).
std::vector<std::string> anchor_seccomp_syscalls(const SeccompOptions& options = {});

// The filters the anchor loads. Their programs are compiled from the policy
// (jail/seccomp_rules.h) when the anchor is built, one per kind and mode (Enforce, Log).
// Keeper: the pid namespace's keeper process (jail/pid_namespace.h), not an anchor thread.
enum class FilterKind { ProcessReexec, ProcessStrict, Vcpu, IoBlock, IoNet, IoNotify, Keeper };
inline constexpr FilterKind kFilterKinds[] = {FilterKind::ProcessReexec, FilterKind::ProcessStrict, FilterKind::Vcpu,
                                              FilterKind::IoBlock,       FilterKind::IoNet,         FilterKind::IoNotify,
                                              FilterKind::Keeper};
const char* to_string(FilterKind kind);

// tgkill's pid in the precompiled programs: above any pid (pid_max is at most 2^22), replaced
// with the anchor's own when a program is loaded.
inline constexpr std::uint32_t kSeccompPidPlaceholder = 0x7e57a11d;
// The keeper's kill: the pid of the anchor it keeps, replaced the same way.
inline constexpr std::uint32_t kSeccompPeerPidPlaceholder = 0x7e57a11e;

// The program the anchor loads for `kind` in `mode` (Enforce or Log): the precompiled one with
// `pid` in place of kSeccompPidPlaceholder and `peer` in place of kSeccompPeerPidPlaceholder.
std::vector<sock_filter> precompiled_seccomp_filter(FilterKind kind, SeccompMode mode, std::uint32_t pid,
                                                    std::uint32_t peer = 0);

// Installs only the SIGSYS reporter (also done by install_anchor_seccomp).
void install_sigsys_reporter();

}  // namespace vmm::jail
