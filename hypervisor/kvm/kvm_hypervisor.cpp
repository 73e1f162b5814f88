#include "hypervisor/kvm/kvm_hypervisor.h"

#include "anchor/stop_reason.h"
#include "common/error.h"
#include "vfio/pci_driver_binder.h"
#include "common/log.h"
#include "hypervisor/kvm/state_dir_probe.h"
#include "hypervisor/proc_stats.h"
#include "jail/cgroup.h"
#include "jail/systemd_scope.h"
#include "run/state_dir.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/post.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

extern char** environ;

namespace vmm::hv::kvm {

namespace fs = std::filesystem;

namespace {

auto log() { return logger("kvm"); }

std::string signal_name(int sig) {
    const char* n = ::sigabbrev_np(sig);
    return n ? std::string("SIG") + n : "signal " + std::to_string(sig);
}

// The last non-empty line of a log file (the anchor's own one-line error), or "".
std::string last_line(const std::string& path) {
    std::ifstream in(path);
    std::string line, last;
    while (std::getline(in, line)) {
        if (!line.empty()) last = line;
    }
    return last;
}

}  // namespace

std::string describe_anchor_status(int status) {
    using namespace vmm::anchor;
    if (status >= 128) return "killed by " + signal_name(status - 128);
    if (status & 1) return "the guest wrote " + std::to_string(status >> 1) + " to the debug-exit port";
    switch (status) {
    case kExitPowerOff: return "the guest powered off";
    case kExitReset: return "the guest reset the machine";
    case kExitTripleFault: return "triple fault";
    case kExitInternalError: return "KVM internal error or guest panic";
    case kExitHostRequest: return "stopped by a signal or a host request";
    case kExitUsage: return "bad manifest or arguments";
    case kExitHostSetup: return "host setup failure";
    default: return "unknown exit status";
    }
}

KvmHypervisor::KvmHypervisor(boost::asio::io_context& io, KvmConfig config) : io_(io), config_(std::move(config)) {
    if (config_.anchor_path.empty()) throw Error("kvm: no anchor executable configured");
    // "/vmm/domains/" and "vmm/domains" name the same cgroup; ".." would leave the tree.
    auto& parent = config_.cgroup_parent;
    parent.erase(0, parent.find_first_not_of('/'));
    while (!parent.empty() && parent.back() == '/') parent.pop_back();
    for (const auto& part : fs::path(parent))
        if (part == "..") throw Error("kvm: cgroup parent \"" + parent + "\" must not contain \"..\"");
    const auto& slice = config_.systemd_slice;
    if (!slice.empty()) {
        if (!parent.empty()) throw Error("kvm: a cgroup parent and a systemd slice exclude each other");
        if (slice.size() <= 6 || slice.substr(slice.size() - 6) != ".slice" || slice.find('/') != std::string::npos)
            throw Error("kvm: \"" + slice + "\" is not a systemd slice name (e.g. machine.slice)");
    }
    fs::create_directories(config_.manifest_dir);
    fs::create_directories(config_.log_dir);
}

KvmHypervisor::~KvmHypervisor() {
    // Anchors outlive vmmd: only stop watching them.
    for (auto& [name, a] : anchors_) {
        boost::system::error_code ec;
        a->timer.cancel();
        a->watch.cancel(ec);
    }
    // Scope requests still out: their answers are dropped (each ends within systemd_timeout).
    alive_.reset();
    for (auto& [id, t] : placers_) t.join();
}

Capabilities KvmHypervisor::capabilities() const {
    Capabilities c;
    c.pause = c.console = c.pci_passthrough = c.adoption = c.usage = true;
    return c;
}

KvmHypervisor::Anchor& KvmHypervisor::anchor(const std::string& name) const {
    auto it = anchors_.find(name);
    if (it == anchors_.end()) throw Error("kvm: no domain '" + name + "'");
    return *it->second;
}

void KvmHypervisor::setup(const DomainManifest& manifest) {
    auto it = anchors_.find(manifest.name);
    if (it != anchors_.end() && it->second->running)
        throw Error("kvm: domain '" + manifest.name + "' is running (anchor pid " + std::to_string(it->second->pid) + ")");
    auto a = std::make_shared<Anchor>(io_);
    a->manifest = manifest;
    a->manifest_file = config_.manifest_dir + "/" + manifest.name + ".json";
    const std::string tmp = a->manifest_file + ".tmp";
    {
        std::ofstream out(tmp);
        out << to_json(manifest).dump(2) << "\n";
        if (!out) throw Error("kvm: cannot write " + tmp);
    }
    fs::rename(tmp, a->manifest_file);
    anchors_[manifest.name] = std::move(a);
}

void KvmHypervisor::start(const std::string& name) {
    auto it = anchors_.find(name);
    if (it == anchors_.end()) throw Error("kvm: domain '" + name + "' is not set up");
    AnchorPtr a = it->second;
    if (a->running) throw Error("kvm: domain '" + name + "' is already running (anchor pid " + std::to_string(a->pid) + ")");
    const StateDirProbe probe = probe_state_dir(state_dir(name));
    if (probe.live)
        throw Error("kvm: domain '" + name + "' already has a live anchor (pid " + std::to_string(probe.pid) +
                    ") in " + state_dir(name));

    const std::string log_file = config_.log_dir + "/" + name + ".log";
    // The anchor's readiness pipe: it writes one byte to fd 3 once its QMP socket listens. The
    // write end is moved above the descriptors the spawn sets up (0-3) before it becomes 3.
    int ready_pipe[2];
    if (::pipe2(ready_pipe, O_CLOEXEC | O_NONBLOCK) != 0) throw_errno("kvm: pipe2 for domain '" + name + "'");
    Fd ready_read(ready_pipe[0]);
    Fd ready_write_low(ready_pipe[1]);
    Fd ready_write(::fcntl(ready_write_low.get(), F_DUPFD_CLOEXEC, 10));
    if (!ready_write) throw_errno("kvm: fcntl F_DUPFD_CLOEXEC for domain '" + name + "'");
    ready_write_low.reset();
    std::vector<std::string> argv = {config_.anchor_path, "--manifest", a->manifest_file, "--run-dir", config_.run_dir,
                                     "--console", config_.console, "--ready-fd", "3"};
    const std::optional<unsigned> uid = jail_uid_for(*a);
    if (config_.jail) {
        argv.emplace_back("--jail");
        if (config_.jail_pid_namespace) argv.emplace_back("--jail-pid-ns");
        // With a manifest identity the anchor takes it from there (and --jail-uid loses).
        if (uid && !a->manifest.jail) {
            argv.insert(argv.end(), {"--jail-uid", std::to_string(*uid)});
            argv.insert(argv.end(), {"--jail-gid", std::to_string(config_.jail_gid.value_or(*uid))});
        }
    }
    std::vector<char*> args;
    for (auto& s : argv) args.push_back(s.data());
    args.push_back(nullptr);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0640);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    // Nothing else of vmmd's goes along (asio's sockets are not all O_CLOEXEC): an anchor holding
    // the API socket would make the next vmmd think another one is listening.
    posix_spawn_file_actions_adddup2(&fa, ready_write.get(), 3);
    posix_spawn_file_actions_addclosefrom_np(&fa, 4);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    // Its own session: a signal to vmmd's process group or terminal never reaches the anchor,
    // and the anchor survives vmmd. Default signal dispositions and an empty mask, whatever
    // vmmd has set for itself (SIGPIPE ignored, signals blocked for asio).
    sigset_t all, none;
    sigfillset(&all);
    sigemptyset(&none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, args[0], &fa, &attr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) throw_errno("kvm: spawn " + config_.anchor_path + " for domain '" + name + "'", rc);
    ready_write.reset();  // the anchor's alone: a byte or, at its exit, EOF

    // A child cannot be reaped before we wait for it, so the pid cannot be reused here.
    const int pidfd = pidfd_open(pid);
    if (pidfd < 0) {
        const int err = errno;
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
        throw_errno("pidfd_open for anchor pid " + std::to_string(pid), err);
    }
    Fd pidfd_owner(pidfd);
    place_anchor(*a, pid);  // cgroupfs: here and now; a systemd scope: asked for below
    a->watch = boost::asio::posix::stream_descriptor(io_, pidfd_owner.release());
    a->ready = boost::asio::posix::stream_descriptor(io_, ready_read.release());
    a->pid = pid;
    a->uid = uid;
    a->child = true;
    a->running = true;
    a->up = false;
    a->stop_requested = false;
    a->paused = false;
    a->stop_stage.clear();
    a->start_failure.clear();
    a->control.reset();
    a->spawned = std::chrono::steady_clock::now();
    if (uid)
        log()->info("{}: spawned anchor pid {} ({}) to run as uid {}", name, pid, config_.anchor_path, *uid);
    else
        log()->info("{}: spawned anchor pid {} ({})", name, pid, config_.anchor_path);
    watch_exit(a);
    if (!config_.systemd_slice.empty()) ask_for_scope(a);
    wait_ready(a);
    poll_started(a);
}

void KvmHypervisor::wait_ready(const AnchorPtr& a) {
    when_readable(a, &Anchor::ready, [this](const AnchorPtr& a) {
        boost::system::error_code ignored;
        a->ready.close(ignored);  // one byte or EOF: it says nothing more
        if (a->running && !a->up) check_started(a);
    });
}

void KvmHypervisor::when_readable(const AnchorPtr& a, boost::asio::posix::stream_descriptor Anchor::*fd,
                                  std::function<void(const AnchorPtr&)> then) {
    std::weak_ptr<Anchor> weak = a;
    const int pid = a->pid;
    ((*a).*fd).async_wait(boost::asio::posix::stream_descriptor::wait_read,
                          [weak, pid, then = std::move(then)](const boost::system::error_code& ec) {
                              auto a = weak.lock();
                              if (ec || !a || a->pid != pid) return;  // not the anchor of a later start
                              then(a);
                          });
}

void KvmHypervisor::ask_for_scope(const AnchorPtr& a) {
    const DomainManifest& m = a->manifest;
    const jail::CgroupLimits limits = limits_of(m);
    jail::ScopeRequest q;
    // Domain names are [A-Za-z0-9._-]{1,64}: valid in a unit name as they are.
    q.unit = "vmm-" + m.name + ".scope";
    q.slice = config_.systemd_slice;
    q.description = "vmm domain " + m.name;
    q.pid = a->pid;
    q.memory_max = limits.memory_max;
    // CPUQuota= as systemd keeps it: µs of CPU time per second (1.5 CPUs: 1500000).
    if (limits.cpus) q.cpu_quota_per_sec_us = static_cast<std::uint64_t>(*limits.cpus * 1e6 + 0.5);
    a->placing = true;
    // The call runs on a thread of its own: PID 1 may take its time (up to systemd_timeout),
    // and vmmd's one thread goes on serving its API and its other domains meanwhile. The thread
    // touches nothing of ours: it posts the outcome back to this thread.
    const std::uint64_t id = next_placer_++;
    // With a pid namespace the anchor is the keeper's child: once PID 1 has moved the keeper
    // (when the scope's start job runs, after its answer), the child goes along.
    const bool follow = config_.jail && config_.jail_pid_namespace;
    placers_[id] = std::thread([this, id, q, weak = std::weak_ptr<Anchor>(a), alive = std::weak_ptr<int>(alive_),
                                bus = config_.systemd_bus, timeout = config_.systemd_timeout, follow,
                                root = config_.cgroup_root] {
        std::string failure;
        try {
            jail::start_transient_scope(bus, q, timeout);
            if (follow) jail::move_children_along_once_in(q.pid, jail::scope_cgroup_path(q), root, timeout);
        } catch (const std::exception& e) {
            failure = e.what();
        }
        boost::asio::post(io_, [this, id, q, weak, alive, failure] {
            if (alive.expired()) return;  // the hypervisor is gone (its destructor joined the thread)
            if (auto it = placers_.find(id); it != placers_.end()) {
                it->second.join();  // it is past its last statement
                placers_.erase(it);
            }
            on_scope_answer(weak.lock(), q, failure);
        });
    });
}

void KvmHypervisor::on_scope_answer(const AnchorPtr& a, const jail::ScopeRequest& q, const std::string& failure) {
    // The anchor may have exited meanwhile, and the domain started again with a new one.
    if (!a || !a->running || a->pid != q.pid) return;
    const std::string name = a->manifest.name;
    if (failure.empty()) {
        a->placing = false;  // it may be reported up now
        log()->info("{}: anchor pid {} in {} of {} (MemoryMax {}{})", name, q.pid, q.unit, q.slice, *q.memory_max,
                    q.cpu_quota_per_sec_us ? ", CPUQuota " + std::to_string(*q.cpu_quota_per_sec_us / 10000) + "%" : "");
        if (!a->up) check_started(a);  // it may have said it is ready while it was being placed
        return;
    }
    // No anchor outside its limits: it has not been reported running, and it goes now (still
    // `placing`, so it is never reported up before its exit is seen). Its exit (on_exit)
    // reports this as the reason and cleans its state directory.
    a->start_failure = "cannot put the anchor into " + q.unit + " of " + q.slice + ": " + failure;
    log()->error("{}: {}; killing anchor pid {}", name, a->start_failure, q.pid);
    pidfd_send_signal(a->watch.native_handle(), SIGKILL);
}

std::optional<unsigned> KvmHypervisor::jail_uid_for(const Anchor& a) const {
    const std::string& name = a.manifest.name;
    std::map<unsigned, std::string> taken;  // uid -> the running domain that has it
    for (const auto& [other, o] : anchors_)
        if (o->running && o->uid && other != name) taken.emplace(*o->uid, other);
    if (a.manifest.jail) {
        const unsigned want = a.manifest.jail->uid;
        // Outside the range a shared uid is the controller's choice; inside it, uids are one per domain.
        if (config_.jail_uids && config_.jail_uids->contains(want) && taken.count(want))
            throw Error("kvm: domain '" + name + "' asks for jail uid " + std::to_string(want) + ", which domain '" +
                        taken[want] + "' runs as (one uid of --jail-uids " + config_.jail_uids->text() +
                        " per domain)");
        return want;
    }
    if (!config_.jail) return std::nullopt;
    if (!config_.jail_uids) return config_.jail_uid;
    std::set<unsigned> used;
    for (const auto& [u, other] : taken) used.insert(u);
    const auto free = jail::lowest_free_uid(*config_.jail_uids, used);
    if (!free)
        throw Error("kvm: no free jail uid for domain '" + name + "': all " + std::to_string(config_.jail_uids->size()) +
                    " of --jail-uids " + config_.jail_uids->text() + " belong to running domains");
    return free;
}

std::string KvmHypervisor::cgroup_path(const std::string& name) const {
    return config_.cgroup_root + "/" + config_.cgroup_parent + "/" + name;
}

jail::CgroupLimits KvmHypervisor::limits_of(const DomainManifest& m) {
    jail::CgroupLimits limits;
    limits.memory_max = jail::anchor_memory_limit(m.memory_mb, m.vcpus);
    limits.cpus = m.cpu_quota;
    return limits;
}

void KvmHypervisor::discard_unplaced_anchor(const std::string& name, int pid) {
    // No anchor outside its limits, and none left behind: it has not done anything yet.
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    clean_stale_state_dir(state_dir(name));
}

void KvmHypervisor::place_anchor(Anchor& a, int pid) {
    a.cgroup.clear();
    const DomainManifest& m = a.manifest;
    const jail::CgroupLimits limits = limits_of(m);
    if (config_.cgroup_parent.empty()) return;
    try {
        a.cgroup = jail::place_in_cgroup(config_.cgroup_root, config_.cgroup_parent, m.name, pid, limits);
        follow_with_children(pid);
    } catch (const std::exception& e) {
        discard_unplaced_anchor(m.name, pid);
        std::error_code ignored;
        fs::remove(cgroup_path(m.name), ignored);  // only if place_in_cgroup made it and it is empty
        throw Error("kvm: cannot place the anchor in cgroup " + cgroup_path(m.name) + ": " + e.what());
    }
    log()->info("{}: anchor pid {} in cgroup {} (cpu.max {}, memory.max {})", m.name, pid, a.cgroup,
                jail::cpu_max_value(limits), *limits.memory_max);
}

int KvmHypervisor::anchor_process(int pid) const {
    // Whatever this vmmd's options: an adopted anchor may have been started with others.
    return pid_namespace_child(pid).value_or(pid);
}

void KvmHypervisor::follow_with_children(int pid) const {
    // The anchor in a pid namespace is the keeper's child: forked perhaps before the keeper
    // was moved, it goes where the keeper went (under systemd: ask_for_scope's thread).
    if (!config_.jail || !config_.jail_pid_namespace) return;
    jail::move_children_along(pid, config_.cgroup_root);
}

void KvmHypervisor::remove_cgroup(Anchor& a) {
    if (a.cgroup.empty()) return;
    try {
        jail::remove_cgroup(a.cgroup);
    } catch (const std::exception& e) {
        log()->warn("{}: {}", a.manifest.name, e.what());
    }
    a.cgroup.clear();
}

void KvmHypervisor::watch_exit(const AnchorPtr& a) {
    when_readable(a, &Anchor::watch, [this](const AnchorPtr& a) { on_exit(a); });
}

void KvmHypervisor::poll_started(const AnchorPtr& a) {
    std::weak_ptr<Anchor> weak = a;
    a->timer.expires_after(config_.poll_interval);
    a->timer.async_wait([this, weak](const boost::system::error_code& ec) {
        auto a = weak.lock();
        if (ec || !a || !a->running || a->up) return;
        if (!check_started(a)) poll_started(a);
    });
}

bool KvmHypervisor::check_started(const AnchorPtr& a) {
    const std::string name = a->manifest.name;
    // Up once it holds its state directory (pid) and its machine is built: the QMP socket
    // comes after the guest is loaded and the vCPUs exist, so a kernel that cannot be
    // loaded fails the start instead of crashing a domain reported as running.
    // Not before it is in its systemd scope either (start_timeout counts all the same).
    struct stat qmp {};
    if (!a->placing && run::read_pid_file(state_dir(name)) == a->pid &&
        ::lstat((state_dir(name) + "/qmp").c_str(), &qmp) == 0 && S_ISSOCK(qmp.st_mode)) {
        a->up = true;
        a->paused = a->manifest.start_paused;
        log()->info("{}: anchor pid {} is up, state in {}", name, a->pid, state_dir(name));
        emit({DomainEvent::Kind::Running, name, a->pid, {}});
        return true;
    }
    if (std::chrono::steady_clock::now() - a->spawned > config_.start_timeout) {
        log()->warn("{}: anchor pid {} did not come up within {} ms; killing it", name, a->pid,
                    config_.start_timeout.count());
        a->stop_stage = "start timeout";
        pidfd_send_signal(a->watch.native_handle(), SIGKILL);
        return true;
    }
    return false;
}

ExitInfo KvmHypervisor::describe_exit(const Anchor& a, std::optional<int> status, bool left_state_dir) const {
    using namespace vmm::anchor;
    ExitInfo e;
    e.status = status;
    if (!status) {
        e.detail = "exited (status unknown, adopted)";
        // A clean anchor removes its state directory; one left behind means it died.
        e.crashed = !a.stop_requested && left_state_dir;
        if (e.crashed) e.detail += "; it left its state directory behind";
        return e;
    }
    const int s = *status;
    e.detail = (s >= 128 ? "" : "exited with status " + std::to_string(s) + ": ") + describe_anchor_status(s);
    if (!a.start_failure.empty()) {
        e.detail = a.start_failure + " (the anchor was killed)";
        e.crashed = true;
        return e;
    }
    if (a.stop_stage == "start timeout") {
        e.detail = "did not come up within " + std::to_string(config_.start_timeout.count()) + " ms; " + e.detail;
        e.crashed = true;
    } else if (a.stop_requested) {
        e.crashed = false;
        if (a.stop_stage == "SIGKILL") e.detail += " (after the stop timeout)";
    } else {
        const bool guest_chose = s == kExitPowerOff || s == kExitReset || s == kExitHostRequest || (s < 128 && (s & 1));
        e.crashed = !guest_chose;
    }
    if (e.crashed || !a.up) {
        const std::string last = last_line(config_.log_dir + "/" + a.manifest.name + ".log");
        if (!last.empty()) e.detail += " — " + last;
    }
    return e;
}

void KvmHypervisor::on_exit(const AnchorPtr& a) {
    const std::string name = a->manifest.name;
    std::optional<int> status;
    if (a->child) {
        siginfo_t si{};
        if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(a->watch.native_handle()), &si, WEXITED) == 0) {
            status = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
        } else {
            log()->warn("{}: waitid on anchor pid {}: {}", name, a->pid, std::strerror(errno));
        }
    }
    const StateDirProbe probe = probe_state_dir(state_dir(name));
    const bool left = probe.exists && probe.pid == a->pid;
    const ExitInfo exit = describe_exit(*a, status, left);
    if (probe.exists && !probe.live) clean_stale_state_dir(state_dir(name));
    // The anchor has exited (pidfd readable), so its cgroup holds no process any more.
    remove_cgroup(*a);
    a->timer.cancel();
    a->control.reset();
    boost::system::error_code ec;
    a->watch.close(ec);
    a->running = false;
    a->paused = false;
    const int pid = a->pid;
    a->pid = -1;
    a->uid.reset();
    (exit.crashed ? log()->warn("{}: anchor pid {} {}", name, pid, exit.detail)
                  : log()->info("{}: anchor pid {} {}", name, pid, exit.detail));
    emit({DomainEvent::Kind::Exited, name, pid, exit});
}

DomainControl& KvmHypervisor::control(Anchor& a) {
    if (!a.control) a.control = make_domain_control(state_dir(a.manifest.name), a.watch.native_handle(), a.pid);
    return *a.control;
}

void KvmHypervisor::stop(const std::string& name, const StopOptions& options) {
    auto it = anchors_.find(name);
    if (it == anchors_.end() || !it->second->running) throw Error("kvm: domain '" + name + "' is not running");
    AnchorPtr a = it->second;
    a->stop_requested = true;
    a->timer.cancel();
    if (options.force || !a->up) {
        escalate(a, "quit");
        return;
    }
    a->stop_stage = "powerdown";
    try {
        if (a->paused) control(*a).resume();  // a paused guest cannot see the power button
        control(*a).powerdown();
    } catch (const std::exception& e) {
        log()->warn("{}: power-down request failed ({}); quitting", name, e.what());
        escalate(a, "quit");
        return;
    }
    log()->info("{}: power-down requested, waiting up to {} ms", name, options.timeout.count());
    std::weak_ptr<Anchor> weak = a;
    a->timer.expires_after(options.timeout);
    a->timer.async_wait([this, weak](const boost::system::error_code& ec) {
        auto a = weak.lock();
        if (ec || !a || !a->running) return;
        log()->info("{}: still running after the power-down timeout", a->manifest.name);
        escalate(a, "quit");
    });
}

void KvmHypervisor::escalate(const AnchorPtr& a, const std::string& stage) {
    a->stop_stage = stage;
    if (stage == "quit") {
        try {
            control(*a).quit();
        } catch (const std::exception& e) {
            log()->warn("{}: quit failed ({}); killing", a->manifest.name, e.what());
            escalate(a, "SIGKILL");
            return;
        }
        std::weak_ptr<Anchor> weak = a;
        a->timer.expires_after(config_.kill_grace);
        a->timer.async_wait([this, weak](const boost::system::error_code& ec) {
            auto a = weak.lock();
            if (ec || !a || !a->running) return;
            escalate(a, "SIGKILL");
        });
        return;
    }
    log()->warn("{}: sending SIGKILL to anchor pid {}", a->manifest.name, a->pid);
    pidfd_send_signal(a->watch.native_handle(), SIGKILL);
}

void KvmHypervisor::pause(const std::string& name) {
    Anchor& a = anchor(name);
    if (!a.running || !a.up) throw Error("kvm: domain '" + name + "' is not running");
    control(a).pause();
    a.paused = true;
}

void KvmHypervisor::resume(const std::string& name) {
    Anchor& a = anchor(name);
    if (!a.running || !a.up) throw Error("kvm: domain '" + name + "' is not running");
    control(a).resume();
    a.paused = false;
}

void KvmHypervisor::remove(const std::string& name) {
    auto it = anchors_.find(name);
    if (it == anchors_.end()) return;
    if (it->second->running) throw Error("kvm: domain '" + name + "' is running");
    std::error_code ec;
    fs::remove(it->second->manifest_file, ec);
    anchors_.erase(it);
}

void KvmHypervisor::cleanup(const std::string& name) { clean_stale_state_dir(state_dir(name)); }

DomainStatus KvmHypervisor::info(const std::string& name) const {
    const Anchor& a = anchor(name);
    DomainStatus s;
    s.paused = a.paused;
    if (a.running) {
        s.pid = a.pid;
        s.state_dir = state_dir(name);
        std::error_code ec;
        if (fs::is_symlink(s.state_dir + "/cons", ec)) s.console = s.state_dir + "/cons";
    }
    return s;
}

DomainUsage KvmHypervisor::usage(const std::string& name) const {
    const Anchor& a = anchor(name);
    DomainUsage u;
    u.available_memory_mb = a.manifest.memory_mb;
    if (!a.running) return u;
    // With a pid namespace the memory is the anchor's (the keeper's resident pages are mostly
    // shared with it since the fork) and the CPU time both processes' (the keeper did the
    // start-up before the fork).
    const int process = anchor_process(a.pid);
    auto p = read_process_usage(process);
    if (p && process != a.pid)
        if (const auto keeper = read_process_usage(a.pid)) p->cpu_total_ns += keeper->cpu_total_ns;
    if (p) {
        u.cpu_total_ns = p->cpu_total_ns;
        u.used_memory_mb = p->rss_kb / 1024;
        u.max_used_memory_mb = p->hwm_kb / 1024;
        if (u.available_memory_mb)
            u.used_memory_percent = 100.0 * static_cast<double>(p->rss_kb) / 1024.0 / static_cast<double>(u.available_memory_mb);
    }
    return u;
}

std::vector<AdoptedDomain> KvmHypervisor::adopt() {
    std::vector<AdoptedDomain> found;
    const std::string root = config_.run_dir + "/kvm";
    std::error_code ec;
    if (!fs::is_directory(root, ec)) return found;
    for (const auto& entry : fs::directory_iterator(root, ec)) {
        if (!entry.is_directory()) continue;
        const std::string name = entry.path().filename().string();
        const std::string dir = entry.path().string();
        const StateDirProbe probe = probe_state_dir(dir);
        if (!probe.live) {
            log()->info("{}: cleaning stale state directory {}", name, dir);
            clean_stale_state_dir(dir);
            continue;
        }
        if (probe.pid <= 0) {
            log()->warn("{}: {} is locked but has no pid yet; leaving it", name, dir);
            continue;
        }
        const int pidfd = pidfd_open(probe.pid);
        if (pidfd < 0) {
            log()->warn("{}: pidfd_open({}): {}", name, probe.pid, std::strerror(errno));
            continue;
        }
        Fd pidfd_owner(pidfd);
        // Re-check after taking the pidfd: the lock is still held by the same anchor, so the
        // pidfd refers to it and not to a process that reused a dead anchor's pid.
        const StateDirProbe again = probe_state_dir(dir);
        if (!again.live || again.pid != probe.pid) continue;

        auto a = std::make_shared<Anchor>(io_);
        const std::vector<std::string> args = read_process_cmdline(probe.pid);
        for (std::size_t i = 0; i + 1 < args.size(); ++i) {
            if (args[i] == "--manifest") a->manifest_file = args[i + 1];
        }
        if (a->manifest_file.empty()) a->manifest_file = config_.manifest_dir + "/" + name + ".json";
        try {
            a->manifest = load_manifest_file(a->manifest_file);
        } catch (const std::exception& e) {
            log()->warn("{}: adopted anchor pid {} but cannot read its manifest {}: {}", name, probe.pid,
                        a->manifest_file, e.what());
            a->manifest.name = name;
            a->manifest.vcpus = 0;
            a->manifest.memory_mb = 0;
        }
        a->manifest.name = name;
        a->manifest.hypervisor = "kvm";
        // Placed by an earlier vmmd with the same cgroup parent: removed when the anchor exits.
        std::error_code cg_ec;
        if (!config_.cgroup_parent.empty() && fs::is_directory(cgroup_path(name), cg_ec)) a->cgroup = cgroup_path(name);
        a->watch = boost::asio::posix::stream_descriptor(io_, pidfd_owner.release());
        a->pid = probe.pid;
        // Jailed by an earlier vmmd: its uid stays taken while it runs.
        if (const auto uid = read_process_uid(anchor_process(probe.pid)); uid && *uid != 0) a->uid = uid;
        a->child = false;
        a->running = a->up = true;
        a->paused = control(*a).query_status() == "paused";
        const auto usage = read_process_usage(probe.pid);
        AdoptedDomain d{a->manifest, probe.pid, usage ? usage->started : std::chrono::system_clock::now()};
        anchors_[name] = a;
        watch_exit(a);
        log()->info("{}: adopted anchor pid {}", name, probe.pid);
        found.push_back(std::move(d));
    }
    return found;
}

void KvmHypervisor::pci_reserve(const std::string& bdf) {
    Hypervisor::pci_reserve(bdf);
    if (!config_.pci_binder) return;
    try {
        config_.pci_binder->reserve(bdf);
    } catch (...) {
        Hypervisor::pci_release(bdf);
        throw;
    }
}

void KvmHypervisor::pci_release(const std::string& bdf) {
    Hypervisor::pci_release(bdf);
    // A device reserved by an earlier vmmd (an adopted domain's) has no record here: it stays
    // on vfio-pci, which is safe; its original driver is not known any more.
    if (config_.pci_binder && config_.pci_binder->reservations().count(bdf)) config_.pci_binder->release(bdf);
}

}  // namespace vmm::hv::kvm
