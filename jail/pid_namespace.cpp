#include "jail/pid_namespace.h"

#include "common/error.h"
#include "jail/capabilities.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace vmm::jail {

namespace {

constexpr int kForwardedSignals[] = {SIGTERM, SIGINT, SIGHUP};

// Writes a line to stderr without allocating (the keeper runs under its filter).
void say(const char* what, int err = 0) {
    char line[256];
    const int n = err ? std::snprintf(line, sizeof line, "vmm-anchor: pid namespace keeper: %s: %s\n", what, std::strerror(err))
                      : std::snprintf(line, sizeof line, "vmm-anchor: pid namespace keeper: %s\n", what);
    if (n > 0) [[maybe_unused]] ssize_t w = ::write(STDERR_FILENO, line, static_cast<std::size_t>(std::min(n, 255)));
}

// Reads a small file into `buf` (NUL-terminated); false when it cannot be read.
bool read_small(int dirfd, const char* path, char* buf, std::size_t size) {
    const int fd = ::openat(dirfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    std::size_t used = 0;
    while (used + 1 < size) {
        const ssize_t n = ::read(fd, buf + used, size - 1 - used);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        used += static_cast<std::size_t>(n);
    }
    ::close(fd);
    buf[used] = '\0';
    return used > 0;
}

// The last number of status's "NSpid:" line (the id in the innermost namespace), or -1.
long innermost_nspid(const char* status) {
    const char* line = std::strstr(status, "\nNSpid:");
    if (line == nullptr) return -1;
    line += 7;
    long last = -1;
    while (*line != '\0' && *line != '\n') {
        char* end = nullptr;
        const long v = std::strtol(line, &end, 10);
        if (end == line) break;
        last = v;
        line = end;
    }
    return last;
}

// What the keeper does with its fds and privileges before it serves: stdio and `keep` stay.
void shed_everything_but(int keep) {
    if (keep > 3) ::syscall(SYS_close_range, 3u, static_cast<unsigned>(keep - 1), 0u);
    ::syscall(SYS_close_range, static_cast<unsigned>(keep + 1), ~0u, 0u);
}

// Ends the keeper the way the anchor ended: its exit status, or its signal (default action).
[[noreturn]] void end_like(int status) {
    if (WIFSIGNALED(status)) {
        const int sig = WTERMSIG(status);
        ::signal(sig, SIG_DFL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, sig);
        ::sigprocmask(SIG_UNBLOCK, &set, nullptr);
        ::syscall(SYS_tgkill, ::getpid(), ::getpid(), sig);  // a signal that dumps core, or SIGKILL
        ::_exit(128 + sig);  // a signal whose default is to be ignored or to stop
    }
    ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

// One question on the socket: answered, or false when the socket is closed.
// `proc`: where the host's /proc is seen from the keeper's root ("" once it is that root).
bool answer(int sock, pid_t anchor, const char* proc) {
    // [sequence number, ids...] in, [the same number, host ids...] out.
    int question[1 + kMaxTidsPerQuestion];
    int reply[1 + kMaxTidsPerQuestion];
    const ssize_t n = ::recv(sock, question, sizeof question, MSG_DONTWAIT);
    if (n == 0) return false;
    if (n < 0) return errno == EAGAIN || errno == EINTR;
    if (n < static_cast<ssize_t>(sizeof(int))) return true;
    const std::size_t count = static_cast<std::size_t>(n) / sizeof(int) - 1;
    reply[0] = question[0];
    translate_tids(proc, anchor, question + 1, reply + 1, count);
    [[maybe_unused]] ssize_t w = ::send(sock, reply, (count + 1) * sizeof(int), MSG_NOSIGNAL);
    return true;
}

sigset_t keeper_signals() {
    sigset_t set;
    sigemptyset(&set);
    for (int s : kForwardedSignals) sigaddset(&set, s);
    sigaddset(&set, SIGCHLD);
    return set;
}

// The keeper's loop. Its signals have been blocked since before the fork (enter()): none that
// came in between is lost, they are read from the signalfd.
[[noreturn]] void keep(pid_t anchor, int sock, SeccompMode seccomp) {
    const sigset_t set = keeper_signals();
    shed_everything_but(sock);
    const int sfd = ::signalfd(-1, &set, SFD_CLOEXEC);
    const char* proc = "/proc";
    try {
        if (sfd < 0) throw_errno("signalfd");
        // Down to what the next two steps need (also PR_SET_NO_NEW_PRIVS), while /proc still
        // lists this process's threads for drop_capabilities.
        drop_capabilities(cap_bit(CAP_KILL) | cap_bit(CAP_SYS_CHROOT) | cap_bit(CAP_SETPCAP));
        // A root of its own: the host's /proc, which is all it reads. Without CAP_SYS_CHROOT
        // (dropped next) and with no fd left outside, there is no way back to the host's files;
        // /proc/<pid>/root of another process needs ptrace rights over it, which no capability
        // of the keeper's gives.
        if (::chdir("/proc") != 0) throw_errno("chdir /proc");
        if (::chroot(".") != 0) throw_errno("chroot /proc");
        proc = "";
        for (int cap : {CAP_SYS_CHROOT, CAP_SETPCAP})
            if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) throw_errno("PR_CAPBSET_DROP " + std::to_string(cap));
        __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
        __user_cap_data_struct data[2]{};
        data[0].effective = data[0].permitted = static_cast<__u32>(cap_bit(CAP_KILL));
        if (::syscall(SYS_capset, &header, data) != 0) throw_errno("capset");
        install_keeper_seccomp(seccomp, anchor);
    } catch (const std::exception& e) {
        say(e.what());
        ::kill(anchor, SIGKILL);  // the anchor must not run under a keeper that is not set
    }
    bool sock_open = true;
    if (int status = 0; ::waitpid(anchor, &status, WNOHANG) == anchor) end_like(status);
    for (;;) {
        pollfd fds[2] = {{sfd, POLLIN, 0}, {sock, POLLIN, 0}};
        if (::poll(fds, sock_open ? 2 : 1, -1) < 0) {
            if (errno == EINTR) continue;
            say("poll", errno);
            ::kill(anchor, SIGKILL);
        }
        if (fds[0].revents & POLLIN) {
            signalfd_siginfo si{};
            if (::read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si) && si.ssi_signo != SIGCHLD)
                ::kill(anchor, static_cast<int>(si.ssi_signo));
            int status = 0;
            const pid_t r = ::waitpid(anchor, &status, WNOHANG);
            if (r == anchor) end_like(status);
        }
        if (sock_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) sock_open = answer(sock, anchor, proc);
    }
}

}  // namespace

void translate_tids(const char* proc_root, pid_t anchor, const int* tids, int* host, std::size_t count) {
    for (std::size_t i = 0; i < count; ++i) host[i] = 0;
    char path[512];
    if (std::snprintf(path, sizeof path, "%s/%d/task", proc_root, static_cast<int>(anchor)) >= static_cast<int>(sizeof path))
        return;
    const int dir = ::open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) return;
    alignas(8) char entries[4096];
    for (;;) {
        const long n = ::syscall(SYS_getdents64, dir, entries, sizeof entries);
        if (n <= 0) break;
        for (long off = 0; off < n;) {
            const auto* d = reinterpret_cast<const dirent64*>(entries + off);  // getdents64's layout
            off += d->d_reclen;
            char* end = nullptr;
            const long host_tid = std::strtol(d->d_name, &end, 10);
            if (end == d->d_name || *end != '\0') continue;  // "." and ".."
            char status_path[300];
            std::snprintf(status_path, sizeof status_path, "%s/status", d->d_name);
            char status[4096];
            if (!read_small(dir, status_path, status, sizeof status)) continue;
            const long inner = innermost_nspid(status);
            for (std::size_t i = 0; i < count; ++i)
                if (tids[i] == inner && inner > 0) host[i] = static_cast<int>(host_tid);
        }
    }
    ::close(dir);
}

PidNamespace::PidNamespace(Fd socket, pid_t keeper)
    : socket_(std::move(socket)), keeper_pid_(keeper), mutex_(std::make_unique<std::mutex>()) {}

PidNamespace::PidNamespace(PidNamespace&&) noexcept = default;
PidNamespace::~PidNamespace() = default;

PidNamespace PidNamespace::enter(SeccompMode seccomp) {
    // A restart: pid 1 of a namespace made before, with the keeper's socket inherited.
    if (const char* env = std::getenv(kPidNamespaceEnv); env != nullptr && ::getpid() == 1) {
        int fd = -1, keeper = 0;
        if (std::sscanf(env, "%d %d", &fd, &keeper) != 2 || fd < 0 || keeper <= 0 || ::fcntl(fd, F_GETFD) < 0)
            throw Error(std::string("pid namespace: ") + kPidNamespaceEnv + "=\"" + env +
                        "\" does not name the keeper's socket");
        return PidNamespace(Fd(fd), keeper);  // without FD_CLOEXEC still, for the next restart
    }

    int pair[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) throw_errno("pid namespace: socketpair");
    Fd anchor_end(pair[0]), keeper_end(pair[1]);
    if (::unshare(CLONE_NEWPID) != 0) throw_errno("pid namespace: unshare(CLONE_NEWPID)");
    const pid_t keeper = ::getpid();
    std::fflush(nullptr);
    const sigset_t set = keeper_signals();
    sigset_t old;
    if (::sigprocmask(SIG_BLOCK, &set, &old) != 0) throw_errno("pid namespace: sigprocmask");
    const pid_t child = ::fork();
    if (child < 0) {
        const int err = errno;
        ::sigprocmask(SIG_SETMASK, &old, nullptr);
        throw_errno("pid namespace: fork", err);
    }
    if (child > 0) {
        anchor_end.reset();
        keep(child, keeper_end.release(), seccomp);
    }
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    // The anchor, pid 1 of the new namespace. The keeper's death is ours too; it may have died
    // before this line, in which case the socket already reads as closed.
    keeper_end.reset();
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) throw_errno("pid namespace: PR_SET_PDEATHSIG");
    pollfd p{anchor_end.get(), POLLRDHUP, 0};
    if (::poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLRDHUP))) throw Error("pid namespace: the keeper is gone");
    // Answers take at most this long; the socket survives the restart's exec.
    const timeval two_seconds{2, 0};
    ::setsockopt(anchor_end.get(), SOL_SOCKET, SO_RCVTIMEO, &two_seconds, sizeof two_seconds);
    if (::fcntl(anchor_end.get(), F_SETFD, 0) < 0) throw_errno("pid namespace: fcntl on the keeper's socket");
    const std::string value = std::to_string(anchor_end.get()) + " " + std::to_string(keeper);
    ::setenv(kPidNamespaceEnv, value.c_str(), 1);
    return PidNamespace(std::move(anchor_end), keeper);
}

std::vector<int> PidNamespace::host_tids(const std::vector<int>& tids) const {
    if (tids.empty()) return {};
    if (tids.size() > kMaxTidsPerQuestion) throw Error("pid namespace: too many thread ids in one question");
    std::lock_guard lock(*mutex_);
    // A numbered question: an answer that came too late for an earlier one is passed over.
    std::vector<int> message(1 + tids.size());
    message[0] = ++questions_;
    std::copy(tids.begin(), tids.end(), message.begin() + 1);
    const std::size_t bytes = message.size() * sizeof(int);
    if (::send(socket_.get(), message.data(), bytes, MSG_NOSIGNAL) != static_cast<ssize_t>(bytes))
        throw Error(std::string("pid namespace: asking the keeper for host thread ids: ") + std::strerror(errno));
    std::vector<int> reply(message.size());
    for (;;) {
        const ssize_t n = ::recv(socket_.get(), reply.data(), bytes, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw Error(std::string("pid namespace: the keeper did not answer: ") + std::strerror(errno));
        if (n == 0) throw Error("pid namespace: the keeper is gone");
        if (n >= static_cast<ssize_t>(sizeof(int)) && reply[0] != message[0]) continue;
        if (n != static_cast<ssize_t>(bytes))
            throw Error("pid namespace: the keeper answered " + std::to_string(n) + " bytes for " + std::to_string(bytes));
        return std::vector<int>(reply.begin() + 1, reply.end());
    }
}

}  // namespace vmm::jail
