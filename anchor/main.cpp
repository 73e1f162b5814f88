// vmm-anchor: runs one domain from its manifest until the guest stops; the exit status says
// why (anchor/stop_reason.h).
#include "anchor/anchor_cli.h"
#include "anchor/anchor_jail.h"
#include "anchor/machine.h"
#include "anchor/restart_thread.h"
#include "anchor/stop_reason.h"
#include "common/fd.h"
#include "common/log.h"
#include "common/thread_name.h"
#include "common/thread_stack.h"
#include "jail/capabilities.h"
#include "jail/pid_namespace.h"
#include "manifest/domain_manifest.h"
#include "manifest/path_policy.h"

#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <filesystem>
#include <optional>
#include <vector>

int main(int argc, char** argv) {
    using namespace vmm;
    using namespace vmm::anchor;
    const auto entered = spdlog::log_clock::now();  // start-up profile (bench/anchor_startup_profile.py)
    // One malloc arena for the process: glibc otherwise gives each thread that allocates its
    // own (vCPUs, notify, disk and NIC threads, the seccomp filters they build), each with
    // pages of its own: 0.3 MiB of an idle anchor's 0.9 MiB private memory (#8). The threads
    // keep their per-thread caches, so the data path rarely takes the arena's lock.
    ::mallopt(M_ARENA_MAX, 1);
    // A console or QMP client that goes away must not end the domain (QEMU ignores SIGPIPE too):
    // a write to a pipe nobody reads fails with EPIPE, and the console drops what it could not
    // write (console.log keeps it). The dump writer still guards its own thread (dump/).
    ::signal(SIGPIPE, SIG_IGN);
    // Every thread made from here on gets a 1 MiB stack instead of RLIMIT_STACK's 8 MiB (the
    // deepest, a vCPU thread in a device's exit handler, uses a few KiB). An 8 MiB stack
    // mapping holds aligned 2 MiB ranges, which transparent huge pages ("always", as in the
    // test VM) back with a whole huge page when a thread's stack first reaches into one; a
    // 1 MiB mapping cannot (#8: one L1 run measured an idle anchor's anonymous memory at
    // 2152 KiB instead of ~430, 2 MiB more, which is what that looks like).
    try {
        set_default_thread_stack(kThreadStackBytes);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vmm-anchor: %s\n", e.what());
        return kExitHostSetup;
    }
    // The main thread's name is the program's, also after a restart (exec of /proc/self/exe
    // would make it "exe"; the restart thread's own name would otherwise stay).
    if (argc > 0) set_thread_name(std::filesystem::path(argv[0]).filename().string());

    const AnchorCliResult parsed = parse_anchor_cli(std::vector<std::string>(argv + std::min(argc, 1), argv + argc));
    if (!parsed.cli) {
        if (parsed.exit_status == 0) {
            std::fputs(anchor_usage(argc > 0 ? argv[0] : "vmm-anchor").c_str(), stdout);
        } else {
            std::fprintf(stderr, "%s\n", parsed.message.c_str());
        }
        return parsed.exit_status;
    }
    const AnchorCli& cli = *parsed.cli;
    const std::string& manifest_path = cli.manifest_path;
    MachineOptions options = cli.options;
    if (cli.ready_fd) {
        // Ours alone from here: not inherited by a restart's image or anything else executed.
        auto ready = std::make_shared<Fd>(*cli.ready_fd);
        ::fcntl(ready->get(), F_SETFD, FD_CLOEXEC);
        options.on_ready = [ready] {
            const char up = 'u';
            (void)!::write(ready->get(), &up, 1);  // best effort: vmmd also polls
            ready->reset();
        };
    }

    DomainManifest manifest;
    try {
        set_log_level(cli.log_level);
        logger("anchor")->log(entered, spdlog::source_loc{}, spdlog::level::debug, "startup: main entered");
        logger("anchor")->debug("startup: arguments parsed, logger ready");
        manifest = load_manifest_file(manifest_path);
        check_manifest_paths(manifest, cli.allow_dirs);
        logger("anchor")->debug("startup: manifest read and checked");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vmm-anchor: %s\n", e.what());
        return kExitUsage;
    }

    if (!cli.dump_acpi.empty()) {
        // Needs no KVM: the tables depend on the manifest only.
        try {
            x86::acpi::dump_tables(x86::acpi::build_tables(acpi_config_for(manifest)), cli.dump_acpi);
            return 0;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "vmm-anchor: --dump-acpi: %s\n", e.what());
            return kExitHostSetup;
        }
    }

    // A manifest that names its jail identity is jailed whatever the command line says; its
    // identity wins over --jail-uid/--jail-gid (the controller chose it for this domain).
    const bool jailed = cli.jail || manifest.jail.has_value();
    // The executable's host path, read while /proc is still there: a restart inside the jail
    // execs it (RestartThread).
    const std::string executable = jailed ? self_executable() : "";
    // --jail-pid-ns: from here on this process is pid 1 of a namespace of its own; the process
    // the host started stays outside as its keeper (jail/pid_namespace.h). A restart finds both.
    std::optional<jail::PidNamespace> pid_namespace;
    if (cli.jail_pid_ns) {
        try {
            pid_namespace.emplace(jail::PidNamespace::enter(jail::parse_seccomp_mode(options.seccomp)));
            options.pid_file_pid = pid_namespace->keeper_pid();
            options.host_thread_ids = [ns = &*pid_namespace](const std::vector<int>& tids) { return ns->host_tids(tids); };
            logger("anchor")->debug("startup: in a pid namespace of its own (keeper pid {})", options.pid_file_pid);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "vmm-anchor: %s: %s\n", manifest.name.c_str(), e.what());
            return kExitHostSetup;
        }
    }
    if (jailed && jail::inside_jail()) {
        // A restart (re-exec on guest reset) of a jailed anchor: it is in its jail already.
        logger("anchor")->debug("startup: inside the jail already (restart)");
    } else if (jailed) {
        try {
            AnchorJailOptions jo;
            jo.run_dir = options.run_dir;
            jo.manifest_path = manifest_path;
            jo.executable = executable;
            if (const auto uid = cli.jail_uid) jo.identity = jail::JailIdentity{*uid, cli.jail_gid.value_or(*uid)};
            if (manifest.jail) jo.identity = jail::JailIdentity{manifest.jail->uid, manifest.jail->gid};
            jail::enter_jail(anchor_jail_spec(manifest, jo));
            logger("anchor")->debug("startup: jailed");
        } catch (const std::exception& e) {
            std::fprintf(stderr, "vmm-anchor: %s: %s\n", manifest.name.c_str(), e.what());
            return kExitHostSetup;
        }
    }

    // The bounding set shrinks now, while this is the only thread: every thread made from here
    // on inherits it, and the capability drop after setup (Machine::run) has only the
    // effective and permitted sets left to broadcast (no prctl per capability and thread).
    try {
        jail::drop_bounding_set(jail::anchor_kept_capabilities(!manifest.nics.empty(), !manifest.pci.empty()));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vmm-anchor: %s: %s\n", manifest.name.c_str(), e.what());
        return kExitHostSetup;
    }
    // The one thread that may execve (for a restart): made now, before the filters and after the
    // jail (unshare refuses a process with threads).
    // Without --ready-fd: the descriptor does not survive the execve (close-on-exec, below).
    RestartThread restarter(executable, without_ready_fd(std::vector<std::string>(argv, argv + argc)));
    bool restart = false;
    int status = kExitHostSetup;
    try {
        struct TeardownMark {
            ~TeardownMark() { logger("anchor")->debug("teardown: machine destroyed"); }
        } teardown_mark;  // declared before the Machine: logs after its destructor
        Machine machine(manifest, options);
        logger("anchor")->info("{}: running, state in {}", manifest.name, machine.state_dir());
        const StopReason reason = machine.run();
        if (reason.kind == StopKind::Reset && (reason.restart || manifest.on_reboot == "restart")) {
            logger("anchor")->info("{}: guest reset; restarting the domain", manifest.name);
            restart = true;
        }
        status = exit_status(reason);
        if (!restart) logger("anchor")->info("{}: {} (exit status {})", manifest.name, describe(reason), status);
        if (reason.kind == StopKind::InternalError || reason.kind == StopKind::TripleFault ||
            reason.kind == StopKind::GuestPanicked || reason.kind == StopKind::HostError) {
            std::fprintf(stderr, "vmm-anchor: %s: %s\n", manifest.name.c_str(), describe(reason).c_str());
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vmm-anchor: %s: %s\n", manifest.name.c_str(), e.what());
        return kExitHostSetup;
    }
    // The Machine is gone (its fds closed, its state files removed) before the new image starts.
    if (restart) restarter.restart();
    return status;
}
