// vmmd: the domain daemon. Serves the JSON API (docs/API.md) on a unix socket, adopts the
// domains an earlier vmmd left running, optionally watches a spool directory of manifests.
// One thread: a Boost.Asio io_context (plus, under --systemd-slice, a short-lived thread per
// scope request to PID 1, hypervisor/kvm). SIGTERM/SIGINT end vmmd, never its domains.
#include "common/log.h"
#include "hypervisor/detect.h"
#include "hypervisor/kvm/kvm_hypervisor.h"
#include "hypervisor/null/null_hypervisor.h"
#include "hypervisor/xen/xen_hypervisor.h"
#include "jail/jail_cli.h"
#include "vfio/pci_driver_binder.h"
#include "vmmd/api_server.h"
#include "vmmd/daemon.h"
#include "vmmd/spool_watcher.h"

#include <CLI/CLI.hpp>
#include <boost/asio/signal_set.hpp>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <sstream>

namespace {

// vmm-anchor next to this build's vmmd (<build>/vmmd/vmmd -> <build>/anchor/vmm-anchor), else
// on PATH.
std::string default_anchor() {
    std::error_code ec;
    const auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) {
        const auto candidate = self.parent_path().parent_path() / "anchor" / "vmm-anchor";
        if (std::filesystem::exists(candidate)) return candidate.string();
    }
    return "vmm-anchor";
}

std::vector<std::string> split(const std::string& text) {
    std::vector<std::string> out;
    std::stringstream s(text);
    std::string item;
    while (std::getline(s, item, ',')) {
        if (!item.empty()) out.push_back(item);
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    using namespace vmm;
    CLI::App app{"vmmd: runs domains on kvm, xen or null hypervisors, driven by vmctl or a controller"};
    std::string run_dir = "/run/hypervisor", socket_path, manifest_dir, anchor = default_anchor(), xl = "xl";
    std::string hypervisors, restart = "never", log_level = "info";
    double stop_timeout = 30, backoff_initial = 1, backoff_max = 30;
    app.add_option("--run-dir", run_dir, "state directories <run-dir>/<hv>/<name>/")->capture_default_str();
    app.add_option("--socket", socket_path, "API socket (default <run-dir>/vmmd.sock)");
    app.add_option("--manifest-dir", manifest_dir, "spool directory a controller drops NAME.json manifests in");
    app.add_option("--anchor", anchor, "the vmm-anchor executable")->capture_default_str();
    app.add_option("--xl", xl, "the xl executable")->capture_default_str();
    app.add_option("--hypervisors", hypervisors,
                   "comma-separated hypervisors to enable (default: what the host offers, plus null)");
    app.add_option("--restart", restart, "default restart policy: never, on-crash, always")
        ->check(CLI::IsMember({"never", "on-crash", "always"}))
        ->capture_default_str();
    app.add_option("--stop-timeout", stop_timeout, "seconds a guest gets to power down")->capture_default_str();
    app.add_option("--backoff", backoff_initial, "first restart delay, seconds (doubles up to --backoff-max)")
        ->capture_default_str();
    app.add_option("--backoff-max", backoff_max, "longest restart delay, seconds")->capture_default_str();
    std::vector<std::string> allow_dirs;
    app.add_option("--allow-dir", allow_dirs,
                   "a directory manifests may take kernels, initrds, disks and sockets from (repeatable; default: anywhere)");
    std::string cgroup_root = "/sys/fs/cgroup", cgroup_parent;
    app.add_option("--cgroup-root", cgroup_root, "the cgroup v2 mount")->capture_default_str();
    app.add_option("--cgroup-parent", cgroup_parent,
                   "place each kvm anchor in the cgroup <cgroup-root>/PATH/<domain> with cpu and memory limits "
                   "(PATH: a cgroup without processes; default: off, docs/SECURITY.md)");
    std::string systemd_slice;
    app.add_option("--systemd-slice", systemd_slice,
                   "start each kvm anchor in a transient systemd scope vmm-<domain>.scope of SLICE (e.g. "
                   "machine.slice) with the domain's cpu and memory limits; needs systemd as init "
                   "(docs/SECURITY.md)")
        ->excludes("--cgroup-parent");
    jail::JailCliOptions jail_cli;
    jail_cli.add_to(app, "run each kvm anchor in", /*with_uid_range=*/true);
    bool no_pci_bind = false;
    app.add_flag("--no-pci-bind", no_pci_bind,
                 "do not bind the manifests' PCI devices to vfio-pci (they must already be bound)");
    app.add_option("--log-level", log_level, "trace, debug, info, warn, error, critical, off")->capture_default_str();
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int rc = app.exit(e);
        return rc == 0 ? 0 : 64;
    }
    if (const std::string problem = jail_cli.problem(); !problem.empty()) {
        std::fprintf(stderr, "vmmd: %s\n", problem.c_str());
        return 64;
    }
    if (!systemd_slice.empty() && ::access("/run/systemd/system", F_OK) != 0) {
        std::fprintf(stderr, "vmmd: --systemd-slice %s: systemd is not the init system here (no /run/systemd/system)\n",
                     systemd_slice.c_str());
        return 64;
    }
    if (socket_path.empty()) socket_path = run_dir + "/vmmd.sock";

    try {
        set_log_level(log_level);
        ::signal(SIGPIPE, SIG_IGN);
        boost::asio::io_context io;

        vmmd::DaemonConfig config;
        config.restart_policy = *vmmd::parse_restart_policy(restart);
        config.stop_timeout = std::chrono::milliseconds(static_cast<std::int64_t>(stop_timeout * 1000));
        config.backoff_initial = std::chrono::milliseconds(static_cast<std::int64_t>(backoff_initial * 1000));
        config.backoff_max = std::chrono::milliseconds(static_cast<std::int64_t>(backoff_max * 1000));
        config.allowed_dirs = allow_dirs;
        vmmd::Daemon daemon(io, config);

        std::vector<std::string> enabled =
            hypervisors.empty() ? hv::available_hypervisors(hv::detect_host()) : split(hypervisors);
        for (const auto& name : enabled) {
            if (name == "kvm") {
                hv::kvm::KvmConfig k;
                k.anchor_path = anchor;
                k.run_dir = run_dir;
                k.manifest_dir = run_dir + "/vmmd/manifests";
                k.log_dir = run_dir + "/vmmd/logs";
                k.cgroup_root = cgroup_root;
                k.cgroup_parent = cgroup_parent;
                k.systemd_slice = systemd_slice;
                k.jail = jail_cli.jail;
                k.jail_pid_namespace = jail_cli.pid_ns;
                k.jail_uid = jail_cli.uid();
                k.jail_gid = jail_cli.gid();
                k.jail_uids = jail_cli.uids();
                if (!no_pci_bind) k.pci_binder = std::make_shared<vfio::PciDriverBinder>();
                daemon.add_hypervisor(std::make_unique<hv::kvm::KvmHypervisor>(io, k));
            } else if (name == "xen") {
                hv::xen::XenConfig x;
                x.xl_path = xl;
                x.run_dir = run_dir;
                daemon.add_hypervisor(std::make_unique<hv::xen::XenHypervisor>(io, x));
            } else if (name == "null") {
                daemon.add_hypervisor(std::make_unique<hv::NullHypervisor>(io, run_dir));
            } else {
                std::fprintf(stderr, "vmmd: --hypervisors: unknown hypervisor '%s' (kvm, xen, null)\n", name.c_str());
                return 64;
            }
        }

        const auto adopted = daemon.adopt_all();
        logger("vmmd")->info("adopted {} running domain(s)", adopted.size());
        vmmd::ApiServer api(io, daemon, socket_path);
        std::unique_ptr<vmmd::SpoolWatcher> spool;
        if (!manifest_dir.empty()) {
            spool = std::make_unique<vmmd::SpoolWatcher>(io, daemon, manifest_dir);
            spool->scan();
        }

        boost::asio::signal_set signals(io, SIGTERM, SIGINT);
        signals.async_wait([&](const boost::system::error_code& ec, int sig) {
            if (ec) return;
            logger("vmmd")->info("signal {}: exiting; domains keep running", sig);
            io.stop();
        });
        std::string enabled_list;
        for (const auto& e : daemon.hypervisors()) enabled_list += (enabled_list.empty() ? "" : ",") + e;
        logger("vmmd")->info("listening on {} (hypervisors: {})", socket_path, enabled_list);
        io.run();
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "vmmd: %s\n", e.what());
        return 70;
    }
}
