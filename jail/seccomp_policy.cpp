#include "jail/seccomp_policy.h"

#include "common/error.h"

#include <linux/seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <ctime>

namespace vmm::jail {

namespace {

// ---- the SIGSYS reporter -------------------------------------------------------------------
// The handler may only use async-signal-safe calls (write, _exit), and libseccomp's resolver
// allocates: the names come from a table generated at build time (jail/tools/), which also
// spares every start the resolving of ~370 names.
#include "syscall_names.inc"

std::size_t append(char* buf, std::size_t pos, std::size_t cap, const char* s) {
    while (*s && pos + 1 < cap) buf[pos++] = *s++;
    return pos;
}

std::size_t append_number(char* buf, std::size_t pos, std::size_t cap, unsigned long long v, unsigned base) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v != 0 && n < static_cast<int>(sizeof tmp));
    while (n > 0 && pos + 1 < cap) buf[pos++] = tmp[--n];
    return pos;
}

void on_sigsys(int, siginfo_t* info, void* context) {
    char msg[160];
    std::size_t p = 0;
    const int nr = info->si_syscall;
    p = append(msg, p, sizeof msg, "vmm-anchor: seccomp: denied syscall ");
    p = append_number(msg, p, sizeof msg, static_cast<unsigned long long>(nr < 0 ? 0 : nr), 10);
    p = append(msg, p, sizeof msg, " (");
    const char* name = nr >= 0 && nr < kMaxSyscallNr && kSyscallNames[nr] ? kSyscallNames[nr] : "unknown";
    p = append(msg, p, sizeof msg, name);
    // ioctl: which request (the x86-64 syscall ABI passes it in rsi).
    if (context != nullptr && std::strcmp(name, "ioctl") == 0) {
        const auto* uc = static_cast<const ucontext_t*>(context);
        p = append(msg, p, sizeof msg, " request 0x");
        p = append_number(msg, p, sizeof msg, static_cast<unsigned long long>(uc->uc_mcontext.gregs[REG_RSI]), 16);
    }
    p = append(msg, p, sizeof msg, ")\n");
    [[maybe_unused]] ssize_t w = ::write(STDERR_FILENO, msg, p);
    ::_exit(kExitSeccompDenied);
}

// ---- the precompiled programs -------------------------------------------------------------
// kPrograms: every FilterKind in Enforce and Log, as jail/tools/seccomp_bpf_gen.cpp compiled the
// policy (jail/seccomp_rules.cpp) with libseccomp at build time.
#include "seccomp_programs.inc"

// Loads `kind`'s program with our pid, for this thread or (tsync) every thread of the process.
// PR_SET_NO_NEW_PRIVS first, as the kernel requires of a process without CAP_SYS_ADMIN (and
// libseccomp's seccomp_load did).
void load(FilterKind kind, SeccompMode mode, bool tsync, pid_t peer = 0) {
    std::vector<sock_filter> program =
        precompiled_seccomp_filter(kind, mode, static_cast<std::uint32_t>(::getpid()), static_cast<std::uint32_t>(peer));
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) throw_errno("seccomp: PR_SET_NO_NEW_PRIVS");
    sock_fprog fprog{static_cast<unsigned short>(program.size()), program.data()};
    const long rc = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, tsync ? SECCOMP_FILTER_FLAG_TSYNC : 0u, &fprog);
    if (rc < 0) throw_errno(std::string("seccomp: loading the ") + to_string(kind) + " filter");
    // With TSYNC, a positive value is a thread that could not take it (it has a filter of its own).
    if (rc > 0) throw_errno("seccomp: thread " + std::to_string(rc) + " could not take the process filter", ESRCH);
}

bool inherited_anchor_filter() {
    if (std::getenv(kSeccompEnvMarker) == nullptr) return false;
    // Not /proc/self/status: a jailed anchor has no /proc. PR_GET_SECCOMP is on the list.
    return ::prctl(PR_GET_SECCOMP, 0, 0, 0, 0) == SECCOMP_MODE_FILTER;
}

}  // namespace

SeccompMode parse_seccomp_mode(std::string_view text) {
    if (text == "on") return SeccompMode::Enforce;
    if (text == "log") return SeccompMode::Log;
    if (text == "off") return SeccompMode::Off;
    throw Error("seccomp mode must be on, log or off, not \"" + std::string(text) + "\"");
}

const char* to_string(SeccompMode mode) {
    switch (mode) {
        case SeccompMode::Enforce: return "on";
        case SeccompMode::Log: return "log";
        case SeccompMode::Off: break;
    }
    return "off";
}

void install_sigsys_reporter() {
    struct sigaction sa {};
    sa.sa_sigaction = on_sigsys;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(SIGSYS, &sa, nullptr) != 0) throw_errno("sigaction SIGSYS");
    // A SIGSYS that is blocked when the trap fires kills the process without the message.
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGSYS);
    ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

bool install_anchor_seccomp(SeccompMode mode, const SeccompOptions& options) {
    if (mode == SeccompMode::Off) return false;
    install_sigsys_reporter();
    if (inherited_anchor_filter()) return false;

    // Every thread that exists now gets the filter too (vCPUs, notify, block I/O).
    load(options.allow_reexec ? FilterKind::ProcessReexec : FilterKind::ProcessStrict, mode, true);
    ::setenv(kSeccompEnvMarker, to_string(mode), 1);
    return true;
}

void install_main_thread_seccomp(SeccompMode mode) {
    if (mode == SeccompMode::Off) return;
    ::tzset();  // as for the vCPUs below
    load(FilterKind::ProcessStrict, mode, false);  // this thread only
}

void install_vcpu_seccomp(SeccompMode mode) {
    if (mode == SeccompMode::Off) return;
    // glibc reads /etc/localtime (openat, newfstatat, lseek) on the process's first localtime,
    // which spdlog's timestamp makes; when a guest crash makes a vCPU thread log first, that
    // would be under this filter. Done now, before it.
    ::tzset();
    load(FilterKind::Vcpu, mode, false);  // this thread only
}

void install_keeper_seccomp(SeccompMode mode, pid_t anchor) {
    if (mode == SeccompMode::Off) return;
    if (mode == SeccompMode::Enforce) install_sigsys_reporter();
    load(FilterKind::Keeper, mode, false, anchor);
}

const char* to_string(IoThreadKind kind) {
    switch (kind) {
        case IoThreadKind::Block: return "block";
        case IoThreadKind::Net: return "net";
        case IoThreadKind::Notify: break;
    }
    return "notify";
}

void install_io_thread_seccomp(SeccompMode mode, IoThreadKind kind) {
    if (mode == SeccompMode::Off) return;
    ::tzset();  // as for the vCPUs: the first localtime's file reads happen now, not later
    const FilterKind filter = kind == IoThreadKind::Block ? FilterKind::IoBlock
                              : kind == IoThreadKind::Net ? FilterKind::IoNet
                                                          : FilterKind::IoNotify;
    load(filter, mode, false);  // this thread only
}

const char* to_string(FilterKind kind) {
    switch (kind) {
        case FilterKind::ProcessReexec: return "process";
        case FilterKind::ProcessStrict: return "process (no re-exec)";
        case FilterKind::Vcpu: return "vcpu";
        case FilterKind::IoBlock: return "block I/O";
        case FilterKind::IoNet: return "net I/O";
        case FilterKind::Keeper: return "pid namespace keeper";
        case FilterKind::IoNotify: break;
    }
    return "notify";
}

std::vector<sock_filter> precompiled_seccomp_filter(FilterKind kind, SeccompMode mode, std::uint32_t pid,
                                                    std::uint32_t peer) {
    for (const PrecompiledProgram& p : kPrograms) {
        if (p.kind != kind || p.mode != mode) continue;
        std::vector<sock_filter> program(p.code, p.code + p.length);
        for (sock_filter& insn : program)
            if (insn.code == (BPF_JMP | BPF_JEQ | BPF_K) && insn.k == kSeccompPidPlaceholder) insn.k = pid;
            else if (insn.code == (BPF_JMP | BPF_JEQ | BPF_K) && insn.k == kSeccompPeerPidPlaceholder) insn.k = peer;
        return program;
    }
    throw Error(std::string("seccomp: no precompiled ") + to_string(kind) + " filter for mode " + to_string(mode));
}

}  // namespace vmm::jail
