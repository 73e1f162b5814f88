// The anchor's seccomp policy as libseccomp rules (see seccomp_rules.h).
#include "jail/seccomp_rules.h"

#include "common/error.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <linux/vfio.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <iterator>
#include <memory>
#include <span>

namespace vmm::jail {

namespace {

// libseccomp's SCMP_An_32(op, a[, b]): a comparison of argument `arg` with its data cast to 32
// bits, as those macros do, but with every field given (their compound literal leaves datum_b
// out, which clang's -Wmissing-field-initializers refuses).
constexpr scmp_arg_cmp cmp32(unsigned arg, scmp_compare op, std::uint64_t a, std::uint64_t b = 0) {
    return scmp_arg_cmp{arg, op, static_cast<std::uint32_t>(a), static_cast<std::uint32_t>(b)};
}

// KVMIO, linux/kvm.h (only kvm/ includes that header): every KVM ioctl has type byte 0xAE.
constexpr unsigned kKvmIoctlType = 0xAE;


struct CtxDeleter {
    void operator()(void* ctx) const { seccomp_release(static_cast<scmp_filter_ctx>(ctx)); }
};
using Ctx = std::unique_ptr<void, CtxDeleter>;

// Plain allows, grouped by why the anchor needs them (docs/SECURITY.md has the same groups).
constexpr const char* kRunSyscalls[] = {
    // fd I/O: devices, consoles, disks (pool engine: preadv/pwritev), QMP, eventfds, logs
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
    "lseek", "close", "fcntl", "dup", "dup3", "fstat", "newfstatat", "statx", "fsync", "fdatasync",
    "fallocate",  // virtio-blk discard / write-zeroes
    // files: console.log rotation, dump-guest-memory's file, state-directory cleanup at exit,
    // spdlog's first localtime (/etc/localtime)
    "openat", "rename", "renameat", "renameat2", "unlink", "unlinkat", "rmdir", "flock", "readlink",
    // memory: malloc, thread stacks, guest RAM / kvm_run teardown
    "mmap", "munmap", "mprotect", "madvise", "mremap", "brk",
    // threads and synchronisation (new threads also register robust lists and rseq)
    "futex", "set_robust_list", "get_robust_list", "rseq", "sched_yield", "sched_getaffinity", "exit",
    "exit_group", "getpid", "gettid", "nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres",
    "gettimeofday", "getrandom",
    // signals: vCPU kicks (SIGRTMIN+1 through pthread_kill), Asio's signal_set, SIGSYS itself,
    // the dump writer's SIGPIPE guard (sigpending, sigtimedwait)
    "rt_sigreturn", "rt_sigprocmask", "rt_sigaction", "rt_sigtimedwait", "rt_sigpending", "sigaltstack",
    // event loops: Asio (epoll, eventfd, timerfd, pipe), the io_uring engine
    "epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd2", "timerfd_create",
    "timerfd_settime", "timerfd_gettime", "poll", "ppoll", "pselect6", "pipe2", "io_uring_enter",
    "io_uring_register",
    // QMP unix sockets (accepting only: connect is not allowed)
    "accept", "accept4", "recvfrom", "recvmsg", "sendto", "sendmsg", "shutdown", "getsockopt", "setsockopt",
    "getsockname", "getpeername",
    // capabilities are only ever lowered: reading them and capset within the permitted set
    "capget",
};

// What the anchor's setup needs beyond that: it runs again under this filter after the
// restart's execve (the dynamic loader, state directory, QMP listen, pty, io_uring, caps).
constexpr const char* kRestartSyscalls[] = {
    "execve", "arch_prctl", "set_tid_address", "prlimit64", "access", "faccessat", "faccessat2", "uname",
    "getuid", "geteuid", "getgid", "getegid", "getcwd", "sysinfo", "mkdir", "mkdirat", "symlink",
    "symlinkat", "chmod", "fchmod", "fchmodat", "getdents64", "bind", "listen", "io_uring_setup", "capset",
    "seccomp", "statfs", "fstatfs", "mlock", "munlock",
};

void add(scmp_filter_ctx ctx, const char* name, unsigned arg_cnt = 0, const scmp_arg_cmp* args = nullptr,
         std::uint32_t action = SCMP_ACT_ALLOW) {
    const int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR) throw Error(std::string("seccomp: unknown syscall ") + name);
    const int rc = seccomp_rule_add_array(ctx, action, nr, arg_cnt, args);
    if (rc < 0) throw_errno(std::string("seccomp_rule_add ") + name, -rc);
}

void add_if(scmp_filter_ctx ctx, const char* name, scmp_arg_cmp cmp) { add(ctx, name, 1, &cmp); }

// Signals to this process's own threads only (vCPU kicks, pthread_kill, raise; the capability
// broadcast): tgkill with our tgid. Not kill or tkill, which reach any process or thread: an
// anchor runs as root (or a uid shared by anchors) and must not signal anything else. The pid
// stays the same across the restart's execve, so the inherited filter still fits.
void add_own_tgkill(scmp_filter_ctx ctx, std::uint32_t pid) {
    add_if(ctx, "tgkill", cmp32(0, SCMP_CMP_EQ, pid));
}

// ioctl: the kernel reads the request as an unsigned int, so only the low 32 bits are compared
// (cmp32): high garbage bits cannot smuggle a request past the list.
void add_ioctls(scmp_filter_ctx ctx, bool restart) {
    // KVM (every fd the anchor holds: /dev/kvm, VM, vCPUs) and VFIO (container, group, device):
    // the whole ioctl type; those requests mean nothing on other fds.
    add_if(ctx, "ioctl", cmp32(1, SCMP_CMP_MASKED_EQ, 0xff00u, kKvmIoctlType << 8));
    add_if(ctx, "ioctl", cmp32(1, SCMP_CMP_MASKED_EQ, 0xff00u, static_cast<unsigned>(VFIO_TYPE) << 8));
    // tty and generic fd requests one by one: type 'T' also holds TIOCSTI (push input into a
    // terminal: the operator's, with --console stdio) and TIOCLINUX, which stay refused.
    const unsigned long tty[] = {TCGETS, TCSETS, TCSETSW, TCSETSF, TIOCGWINSZ, FIONBIO, FIONREAD, FIOCLEX, FIONCLEX,
                                 TIOCGPTN, TIOCSPTLCK, TIOCGPTPEER,
                                 // tap (virtio-net): set up once, offloads renegotiated by the guest
                                 TUNSETIFF, TUNSETOFFLOAD, TUNSETVNETHDRSZ, TUNGETSNDBUF};
    for (unsigned long req : tty) add_if(ctx, "ioctl", cmp32(1, SCMP_CMP_EQ, static_cast<std::uint32_t>(req)));
    if (restart) {
        // disk geometry of block-device backed disks (DiskImage::open)
        for (unsigned long req : {BLKGETSIZE64, static_cast<unsigned long>(BLKSSZGET)})
            add_if(ctx, "ioctl", cmp32(1, SCMP_CMP_EQ, static_cast<std::uint32_t>(req)));
    }
}

void add_policy(scmp_filter_ctx ctx, const SeccompOptions& options, std::uint32_t pid) {
    for (const char* name : kRunSyscalls) add(ctx, name);
    add_own_tgkill(ctx, pid);
    if (options.allow_reexec)
        for (const char* name : kRestartSyscalls) add(ctx, name);
    add_ioctls(ctx, options.allow_reexec);

    // New threads only: CLONE_THREAD must be set (no fork, vfork, posix_spawn). clone3 passes
    // its flags in memory seccomp cannot read: it answers ENOSYS and glibc falls back to clone.
    add_if(ctx, "clone", SCMP_A0_64(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    add(ctx, "clone3", 0, nullptr, SCMP_ACT_ERRNO(ENOSYS));

    // Sockets: unix only (QMP listening sockets are made at setup, i.e. again after restart).
    if (options.allow_reexec) add_if(ctx, "socket", cmp32(0, SCMP_CMP_EQ, AF_UNIX));

    // prctl: thread names (pthread_setname_np), and what lowering privileges uses.
    for (int option : {PR_SET_NAME, PR_GET_NAME, PR_GET_DUMPABLE, PR_SET_NO_NEW_PRIVS, PR_GET_NO_NEW_PRIVS,
                       PR_CAPBSET_READ, PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_GET_SECUREBITS, PR_GET_SECCOMP})
        add_if(ctx, "prctl", cmp32(0, SCMP_CMP_EQ, static_cast<std::uint32_t>(option)));
}

// ---- the vCPU threads' filter ---------------------------------------------------------------
// Stacked by each vCPU thread on itself, under the process filter: the kernel runs both and the
// strictest verdict wins, so this only narrows. It lists what run_vcpu_loop and the exit
// handlers reached from it do (port/MMIO devices, PCI config space, virtio transports, VFIO
// BAR traps, MSI/MSI-X/INTx routing, guest stops, logging).
constexpr const char* kVcpuSyscalls[] = {
    // device I/O: consoles and their log, eventfds, the device models' region pread/pwrite
    // (VFIO BAR and config-space traps), eventfds closed when interrupts are torn down
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "close",
    "eventfd2",  // INTx enabled through config space (VFIO)
    // console.log rotation (openat itself is argument-checked below)
    "rename", "renameat", "renameat2",
    // memory: malloc's per-thread arena, the thread's stack at exit
    "mmap", "munmap", "mprotect", "madvise", "mremap", "brk",
    // synchronisation, time, guest stops (kick the other vCPUs: tgkill; wake the main loop:
    // Asio's reactor interrupt is an epoll_ctl), thread exit, the kick signal's return
    "futex", "sched_yield", "nanosleep", "clock_nanosleep", "clock_gettime", "clock_getres", "gettimeofday",
    "getpid", "gettid", "getrandom", "rt_sigreturn", "rt_sigprocmask",
    "epoll_ctl", "exit", "exit_group",
};

// KVM requests by (type, number): the direction and size bits are fixed per number, and
// jail/ does not include linux/kvm.h (only kvm/ does).
constexpr unsigned kVcpuKvmIoctls[] = {
    0x80,  // KVM_RUN
    0x81,  // KVM_GET_REGS       (the state logged with a guest crash)
    0x83,  // KVM_GET_SREGS
    0x46,  // KVM_SET_USER_MEMORY_REGION (a passed-through BAR moved)
    0x61,  // KVM_IRQ_LINE       (legacy device interrupts)
    0x67,  // KVM_IRQ_LINE_STATUS
    0x6a,  // KVM_SET_GSI_ROUTING (MSI/MSI-X programmed)
    0x76,  // KVM_IRQFD
    0x79,  // KVM_IOEVENTFD      (virtio notify regions follow their BAR)
    0xa5,  // KVM_SIGNAL_MSI
};

void add_vcpu_policy(scmp_filter_ctx ctx, std::uint32_t pid) {
    for (const char* name : kVcpuSyscalls) add(ctx, name);
    add_own_tgkill(ctx, pid);
    for (unsigned nr : kVcpuKvmIoctls)
        add_if(ctx, "ioctl", cmp32(1, SCMP_CMP_MASKED_EQ, 0xffffu, (kKvmIoctlType << 8) | nr));
    // VFIO device requests a config-space write leads to (interrupt setup, function reset);
    // not the container/group/IOMMU ones.
    for (unsigned long req : {static_cast<unsigned long>(VFIO_DEVICE_SET_IRQS),
                              static_cast<unsigned long>(VFIO_DEVICE_RESET),
                              static_cast<unsigned long>(VFIO_DEVICE_GET_IRQ_INFO),
                              static_cast<unsigned long>(VFIO_DEVICE_GET_REGION_INFO),
                              // virtio-net: the guest's offload features reach the tap
                              static_cast<unsigned long>(TUNSETOFFLOAD)})
        add_if(ctx, "ioctl", cmp32(1, SCMP_CMP_EQ, static_cast<std::uint32_t>(req)));
    // No new threads (clone is not listed); clone3 answers ENOSYS as in the process filter.
    add(ctx, "clone3", 0, nullptr, SCMP_ACT_ERRNO(ENOSYS));
    // openat only to create/append a write-only file (console.log rotation): never to read.
    constexpr std::uint32_t mask = O_ACCMODE | O_CREAT | O_APPEND;
    add_if(ctx, "openat", cmp32(2, SCMP_CMP_MASKED_EQ, mask, O_WRONLY | O_CREAT | O_APPEND));
}

// ---- the device I/O threads' filters -------------------------------------------------------
// Stacked like the vCPU filter, one list per IoThreadKind. Found by running the anchor's guests
// in L1 with --seccomp log (no audit line) and under strace (each thread's calls after its own
// seccomp()), and the device models under these filters in Enforce mode on every request type
// (tests/unit/seccomp_io_threads_test.cpp).
//
// What every device I/O thread does: signal interrupts (an irqfd eventfd write, or KVM_IRQ_LINE
// for a guest on INTx), log (a write to stderr, gettid for the first line), lock, allocate,
// exit (glibc blocks signals and frees the stack: rt_sigprocmask, madvise). A process-directed signal (SIGTERM) may land on any
// thread: Asio's handler writes a pipe and returns (write, rt_sigreturn). clock_gettime is the
// vDSO's fallback (a clocksource without vDSO support, as under nested virtualisation).
constexpr const char* kIoCommonSyscalls[] = {
    "write",
    // memory: malloc's per-thread arena (grown with mprotect, or the main arena's brk), the
    // thread's stack at exit
    "mmap", "munmap", "mprotect", "madvise", "mremap", "brk",
    // locks; libstdc++'s std::atomic wait spins with sched_yield before its futex
    "futex", "sched_yield", "clock_gettime", "rt_sigreturn", "rt_sigprocmask", "exit", "exit_group",
    // spdlog's first message on a thread asks for the thread's id
    "gettid",
};

// Disk I/O of both engines: the pool's preadv/pwritev/fdatasync/fallocate (pread/pwrite for a
// one-segment request, and pwrite for write-zeroes without fallocate support), the dispatcher's
// and the ring thread's
// io_uring_enter (only on the ring the engine set up: io_uring_setup is not listed); the
// dispatcher's read of its kick eventfd (the queue's ioeventfd); the dispatcher's preadv2
// (RWF_NOWAIT: the page cache's part of a batch's reads where no ring reads them).
constexpr const char* kBlockSyscalls[] = {
    "read", "pread64", "preadv", "preadv2", "pwritev", "pwrite64", "fdatasync", "fallocate", "io_uring_enter",
};

// The NIC's event loop: epoll on the tap and the kick eventfds (epoll_ctl: EPOLLIN off while the
// guest has no receive buffers); frames received with read (one buffer) or readv, transmitted in
// batches through io_uring_enter (only on the frame writer's ring, restricted to WRITEV/WRITE on
// the tap: io_uring_setup is not listed), a lone frame and every frame where io_uring is refused
// with write (one buffer, in the common list) or writev. (The kick eventfds are edge-triggered
// and never drained: only the tap is read.)
constexpr const char* kNetSyscalls[] = {
    "read", "readv", "writev", "epoll_wait", "epoll_ctl", "io_uring_enter",
};

// The notify thread's io_context (Asio's epoll reactor) reading the ioeventfds; virtio-console
// queue work (pty writes); the socket consoles: accept a client, recv/send (Asio's one-buffer
// calls are recvfrom/sendto), close it.
constexpr const char* kNotifySyscalls[] = {
    "read", "epoll_wait", "epoll_ctl", "accept", "recvfrom", "sendto", "close",
};

constexpr unsigned kIoKvmIoctls[] = {
    0x61,  // KVM_IRQ_LINE (a device's INTx, when the driver did not enable MSI-X)
};

std::span<const char* const> io_kind_syscalls(IoThreadKind kind) {
    switch (kind) {
        case IoThreadKind::Block: return kBlockSyscalls;
        case IoThreadKind::Net: return kNetSyscalls;
        case IoThreadKind::Notify: break;
    }
    return kNotifySyscalls;
}

void add_io_thread_policy(scmp_filter_ctx ctx, IoThreadKind kind) {
    for (const char* name : kIoCommonSyscalls) add(ctx, name);
    for (const char* name : io_kind_syscalls(kind)) add(ctx, name);
    for (unsigned nr : kIoKvmIoctls)
        add_if(ctx, "ioctl", cmp32(1, SCMP_CMP_MASKED_EQ, 0xffffu, (kKvmIoctlType << 8) | nr));
    // Asio makes an accepted socket non-blocking (FIONBIO) before its first read.
    if (kind == IoThreadKind::Notify)
        add_if(ctx, "ioctl", cmp32(1, SCMP_CMP_EQ, static_cast<std::uint32_t>(FIONBIO)));
    // No new threads (clone is not listed); clone3 answers ENOSYS as in the process filter.
    add(ctx, "clone3", 0, nullptr, SCMP_ACT_ERRNO(ENOSYS));
}

// The BPF libseccomp generates for `ctx` (seccomp_export_bpf writes it to an fd).
std::vector<sock_filter> export_bpf(scmp_filter_ctx ctx) {
    const int fd = ::memfd_create("seccomp-bpf", MFD_CLOEXEC);
    if (fd < 0) throw_errno("memfd_create for the seccomp program");
    std::unique_ptr<int, void (*)(int*)> guard(new int(fd), [](int* p) {
        ::close(*p);
        delete p;
    });
    if (int rc = seccomp_export_bpf(ctx, fd); rc < 0) throw_errno("seccomp_export_bpf", -rc);
    const off_t size = ::lseek(fd, 0, SEEK_END);
    if (size < 0 || size % static_cast<off_t>(sizeof(sock_filter)) != 0)
        throw Error("seccomp_export_bpf wrote " + std::to_string(size) + " bytes, not whole instructions");
    std::vector<sock_filter> program(static_cast<std::size_t>(size) / sizeof(sock_filter));
    if (::pread(fd, program.data(), static_cast<std::size_t>(size), 0) != size) throw_errno("reading the seccomp program");
    return program;
}

}  // namespace

// ---- the pid namespace keeper's filter ---------------------------------------------------------
// The keeper (jail/pid_namespace.h) is a process of its own, outside the anchor's jail: it waits
// for the anchor, passes signals on to it, and answers its questions about host thread ids from
// /proc. Signals go to the anchor (kill) and, to end the way the anchor ended, to itself.
constexpr const char* kKeeperSyscalls[] = {
    "read", "write", "close", "getdents64", "poll", "ppoll", "recvfrom", "sendto",  // its socket, /proc
    "fstat", "newfstatat", "lseek",                                                 // stdio's buffers
    "wait4", "waitid", "rt_sigprocmask", "rt_sigaction", "rt_sigreturn",
    "getpid", "gettid", "brk", "mmap", "munmap", "exit", "exit_group",
};

void add_keeper_policy(scmp_filter_ctx ctx, std::uint32_t pid, std::uint32_t peer) {
    for (const char* name : kKeeperSyscalls) add(ctx, name);
    add_own_tgkill(ctx, pid);
    add_if(ctx, "kill", cmp32(0, SCMP_CMP_EQ, peer));
    constexpr std::uint32_t mask = O_ACCMODE | O_CREAT | O_TRUNC | O_APPEND;
    add_if(ctx, "openat", cmp32(2, SCMP_CMP_MASKED_EQ, mask, O_RDONLY));
}

std::vector<sock_filter> compile_seccomp_filter(FilterKind kind, SeccompMode mode, std::uint32_t pid,
                                                std::uint32_t peer) {
    if (mode == SeccompMode::Off) throw Error("seccomp: no filter to compile for mode off");
    Ctx ctx(seccomp_init(mode == SeccompMode::Enforce ? SCMP_ACT_TRAP : SCMP_ACT_LOG));
    if (!ctx) throw Error("seccomp_init failed");
    switch (kind) {
        case FilterKind::ProcessReexec: add_policy(ctx.get(), SeccompOptions{true}, pid); break;
        case FilterKind::ProcessStrict: add_policy(ctx.get(), SeccompOptions{false}, pid); break;
        case FilterKind::Vcpu: add_vcpu_policy(ctx.get(), pid); break;
        case FilterKind::IoBlock: add_io_thread_policy(ctx.get(), IoThreadKind::Block); break;
        case FilterKind::IoNet: add_io_thread_policy(ctx.get(), IoThreadKind::Net); break;
        case FilterKind::IoNotify: add_io_thread_policy(ctx.get(), IoThreadKind::Notify); break;
        case FilterKind::Keeper: add_keeper_policy(ctx.get(), pid, peer); break;
    }
    return export_bpf(ctx.get());
}

std::vector<std::string> io_thread_seccomp_syscalls(IoThreadKind kind) {
    std::vector<std::string> names(std::begin(kIoCommonSyscalls), std::end(kIoCommonSyscalls));
    for (const char* n : io_kind_syscalls(kind)) names.emplace_back(n);
    names.emplace_back("ioctl");
    return names;
}

std::vector<std::string> keeper_seccomp_syscalls() {
    std::vector<std::string> names(std::begin(kKeeperSyscalls), std::end(kKeeperSyscalls));
    for (const char* n : {"kill", "tgkill", "openat"}) names.emplace_back(n);
    return names;
}

std::vector<std::string> vcpu_seccomp_syscalls() {
    std::vector<std::string> names(std::begin(kVcpuSyscalls), std::end(kVcpuSyscalls));
    for (const char* n : {"ioctl", "openat", "tgkill"}) names.emplace_back(n);
    return names;
}

std::vector<std::string> anchor_seccomp_syscalls(const SeccompOptions& options) {
    std::vector<std::string> names(std::begin(kRunSyscalls), std::end(kRunSyscalls));
    if (options.allow_reexec) names.insert(names.end(), std::begin(kRestartSyscalls), std::end(kRestartSyscalls));
    for (const char* n : {"ioctl", "clone", "prctl", "tgkill"}) names.emplace_back(n);
    if (options.allow_reexec) names.emplace_back("socket");
    return names;
}

}  // namespace vmm::jail
