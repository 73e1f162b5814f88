// vmm-anchor: runs one domain from its manifest until the guest stops; the exit status says
// why (anchor/stop_reason.h).
#include "anchor/anchor_jail.h"
#include "anchor/machine.h"
#include "anchor/restart_thread.h"
#include "anchor/stop_reason.h"
#include "common/log.h"
#include "common/thread_name.h"
#include "jail/capabilities.h"
#include "jail/jail_cli.h"
#include "manifest/domain_manifest.h"
#include "manifest/path_policy.h"

#include <CLI/CLI.hpp>

#include <malloc.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
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
    // The main thread's name is the program's, also after a restart (exec of /proc/self/exe
    // would make it "exe"; the restart thread's own name would otherwise stay).
    if (argc > 0) set_thread_name(std::filesystem::path(argv[0]).filename().string());

    CLI::App app{"vmm-anchor: the per-domain KVM virtual machine process"};
    std::string manifest_path;
    MachineOptions options;
    std::string console = "stdio";
    std::string log_level = "warn";
    app.add_option("--manifest", manifest_path, "domain manifest (JSON)")->required();
    app.add_option("--run-dir", options.run_dir, "state directory root (<run-dir>/kvm/<name>/)")
        ->capture_default_str();
    app.add_option("--console", console, "serial console: stdio or pty (linked as <state-dir>/cons)")
        ->check(CLI::IsMember({"stdio", "pty"}))
        ->capture_default_str();
    std::string dump_acpi;
    app.add_option("--dump-acpi", dump_acpi,
                   "write the ACPI tables this domain would get to DIR/<SIG>.dat (for iasl -d) and exit")
        ->check(CLI::ExistingDirectory);
    app.add_option("--seccomp", options.seccomp,
                   "syscall filter after setup: on (unlisted syscalls end the anchor with status 12), "
                   "log (the kernel logs them), off")
        ->check(CLI::IsMember({"on", "log", "off"}))
        ->capture_default_str();
    std::vector<std::string> allow_dirs;
    app.add_option("--allow-dir", allow_dirs,
                   "a directory the manifest may take kernels, initrds, disks and sockets from (repeatable; default: anywhere)");
    jail::JailCliOptions jail_cli;
    jail_cli.add_to(app, "run in");
    app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical, off")->capture_default_str();
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : kExitUsage;
    }
    options.console = console == "pty" ? ConsoleMode::Pty : ConsoleMode::Stdio;
    if (const std::string problem = jail_cli.problem(); !problem.empty()) {
        std::fprintf(stderr, "vmm-anchor: %s\n", problem.c_str());
        return kExitUsage;
    }

    DomainManifest manifest;
    try {
        set_log_level(log_level);
        logger("anchor")->log(entered, spdlog::source_loc{}, spdlog::level::debug, "startup: main entered");
        logger("anchor")->debug("startup: arguments parsed, logger ready");
        manifest = load_manifest_file(manifest_path);
        check_manifest_paths(manifest, allow_dirs);
        logger("anchor")->debug("startup: manifest read and checked");
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vmm-anchor: %s\n", e.what());
        return kExitUsage;
    }

    if (!dump_acpi.empty()) {
        // Needs no KVM: the tables depend on the manifest only.
        try {
            x86::acpi::dump_tables(x86::acpi::build_tables(acpi_config_for(manifest)), dump_acpi);
            return 0;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "vmm-anchor: --dump-acpi: %s\n", e.what());
            return kExitHostSetup;
        }
    }

    // A manifest that names its jail identity is jailed whatever the command line says; its
    // identity wins over --jail-uid/--jail-gid (the controller chose it for this domain).
    const bool jailed = jail_cli.jail || manifest.jail.has_value();
    // The executable's host path, read while /proc is still there: a restart inside the jail
    // execs it (RestartThread).
    const std::string executable = jailed ? self_executable() : "";
    if (jailed && jail::inside_jail()) {
        // A restart (re-exec on guest reset) of a jailed anchor: it is in its jail already.
        logger("anchor")->debug("startup: inside the jail already (restart)");
    } else if (jailed) {
        try {
            AnchorJailOptions jo;
            jo.run_dir = options.run_dir;
            jo.manifest_path = manifest_path;
            jo.executable = executable;
            if (const auto uid = jail_cli.uid()) jo.identity = jail::JailIdentity{*uid, jail_cli.gid().value_or(*uid)};
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
    RestartThread restarter(executable, argv);
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
