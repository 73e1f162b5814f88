// KvmHypervisor: one vmm-anchor process per domain, spawned and supervised by vmmd.
//
//  - setup() writes the manifest (to_json, absolute paths) to <manifest-dir>/<name>.json.
//  - start() spawns `ANCHOR --manifest FILE --run-dir RUN --console pty` in its own session
//    (so it outlives vmmd), stdout/stderr appended to <log-dir>/<name>.log, and watches it
//    through a pidfd. The domain runs once the anchor's state directory
//    <run-dir>/kvm/<name>/ holds its pid (written after it took the directory's lock) and its
//    QMP socket `qmp` (made once the machine is built: devices, guest loaded, vCPUs), as
//    libvirt waits for QEMU's monitor; an anchor that dies before is a failed start.
//  - With a cgroup parent configured, the anchor is moved right after its exec (before it has
//    set anything up) into the cgroup v2 <cgroup-root>/<cgroup-parent>/<name> with cpu.max from
//    the manifest's cpu_quota and memory.max from jail::anchor_memory_limit (jail/cgroup.h). A
//    failure to place it is the start's error: the anchor is killed and reaped first.
//  - With a systemd slice configured instead, PID 1 moves the anchor right after its spawn
//    into the transient scope vmm-<name>.scope of that slice, with the same limits as
//    MemoryMax= and CPUQuota= (StartTransientUnit over its private bus socket), asked on a
//    thread of its own so that a slow PID 1 does not hold up vmmd. The domain is not up
//    before its scope is; a refusal (or no answer within systemd_timeout) kills the anchor and
//    is its exit's reason, as for an anchor that dies while starting.
//  - An exit is reported with the status (waitid on the pidfd for children; "status unknown"
//    for adopted anchors) and the state directory is cleaned if the anchor left it behind; the
//    domain's cgroup is removed.
//  - stop(): power-down through DomainControl, wait up to the timeout, quit, wait
//    `kill_grace`, SIGKILL.
//  - adopt(): every live anchor under <run-dir>/kvm (lock held, pid file) is watched again;
//    its manifest is read from the --manifest of its command line; stale directories are
//    cleaned.
// Called on vmmd's io_context thread; events are delivered from its handlers.
#pragma once

#include "common/fd.h"
#include "hypervisor/hypervisor.h"
#include "hypervisor/kvm/domain_control.h"
#include "jail/cgroup.h"
#include "jail/systemd_scope.h"
#include "jail/uid_range.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <thread>

namespace vmm::vfio {
class PciDriverBinder;
}

namespace vmm::hv::kvm {

struct KvmConfig {
    std::string anchor_path;   // the vmm-anchor executable (a fake one in tests)
    std::string run_dir;       // --run-dir for the anchors: state dirs are <run_dir>/kvm/<name>
    std::string manifest_dir;  // where setup() writes the manifests the anchors read
    std::string log_dir;       // the anchors' stdout/stderr, <log_dir>/<name>.log
    std::string console = "pty";
    // until the pid file and the QMP socket must be there (building a large VFIO domain pins
    // all of its RAM first)
    std::chrono::milliseconds start_timeout{30000};
    std::chrono::milliseconds kill_grace{3000};      // after quit, before SIGKILL
    // Until it is up, the anchor's state directory is checked when the anchor says it is ready
    // (--ready-fd) and every poll_interval besides (an anchor that never says so, start_timeout).
    std::chrono::milliseconds poll_interval{20};
    // cgroup v2 placement: each anchor in <cgroup_root>/<cgroup_parent>/<name>. cgroup_parent is
    // relative to cgroup_root and must be a cgroup without processes (vmmd's own is not: cgroup
    // v2 hands controllers only from cgroups without processes; docs/SECURITY.md). Empty: off,
    // anchors stay in vmmd's cgroup.
    std::string cgroup_root = "/sys/fs/cgroup";
    std::string cgroup_parent;
    // Under systemd instead (vmmd --systemd-slice): right after its spawn each anchor is put
    // into a transient scope vmm-<name>.scope of this slice, with MemoryMax= and
    // CPUQuota= from the same limits, asked of PID 1 over systemd_bus (jail/systemd_scope.h).
    // systemd owns the scope: it outlives a restart of vmmd.service and is collected when the
    // anchor exits. Empty: off. Excludes cgroup_parent.
    std::string systemd_slice;
    std::string systemd_bus = "/run/systemd/private";
    std::chrono::milliseconds systemd_timeout{10000};
    // The anchors' file-system jail (vmm-anchor --jail, docs/SECURITY.md): off by default;
    // jail_uid/jail_gid: the identity the jailed anchors run as (none: root without capabilities).
    // jail_uids: instead of one jail_uid for all, each anchor runs as the lowest uid of the range
    // no other running domain has (gid: jail_gid, else that uid). A manifest's "jail" identity
    // wins over both; a uid of the range is never given to two running domains, whoever asked.
    bool jail = false;
    // With jail: each anchor also in a pid namespace of its own (vmm-anchor --jail-pid-ns): the
    // spawned process is its keeper; vmmd places the keeper's child (the anchor) with it.
    bool jail_pid_namespace = false;
    std::optional<unsigned> jail_uid, jail_gid;
    std::optional<jail::UidRange> jail_uids;
    // pci_reserve() binds the device to vfio-pci through this (driver_override; the host's
    // driver is restored by pci_release()), so the anchor can open its IOMMU group. nullptr:
    // bookkeeping only (the devices must already be on vfio-pci).
    std::shared_ptr<vfio::PciDriverBinder> pci_binder;
};

class KvmHypervisor : public Hypervisor {
public:
    KvmHypervisor(boost::asio::io_context& io, KvmConfig config);
    ~KvmHypervisor() override;

    std::string name() const override { return "kvm"; }
    Capabilities capabilities() const override;
    void setup(const DomainManifest& manifest) override;
    void start(const std::string& name) override;
    void stop(const std::string& name, const StopOptions& options) override;
    void pause(const std::string& name) override;
    void resume(const std::string& name) override;
    void remove(const std::string& name) override;
    void cleanup(const std::string& name) override;
    void pci_reserve(const std::string& bdf) override;
    void pci_release(const std::string& bdf) override;
    DomainStatus info(const std::string& name) const override;
    DomainUsage usage(const std::string& name) const override;
    std::vector<AdoptedDomain> adopt() override;

    std::string state_dir(const std::string& name) const { return config_.run_dir + "/kvm/" + name; }
    const KvmConfig& config() const { return config_; }

private:
    struct Anchor {
        explicit Anchor(boost::asio::io_context& io) : watch(io), ready(io), timer(io) {}
        DomainManifest manifest;
        std::string manifest_file;
        std::string cgroup;  // the anchor's cgroup directory; "" when it was not placed
        std::optional<unsigned> uid;  // the jail uid it runs as, while it runs (nullopt: root)
        int pid = -1;
        bool child = false;     // spawned by us: waitid gives the status
        bool running = false;   // the process exists
        bool up = false;        // Running reported
        bool stop_requested = false;
        bool paused = false;
        std::string stop_stage;  // what the escalation did last ("powerdown", "quit", "SIGKILL")
        bool placing = false;       // its systemd scope was asked for and not answered yet
        std::string start_failure;  // why vmmd killed it before it was up (its exit's detail)
        boost::asio::posix::stream_descriptor watch;  // owns the pidfd
        // The read end of the pipe the anchor writes a byte to once its QMP socket listens
        // (vmm-anchor --ready-fd): the start is checked then instead of at the next poll.
        boost::asio::posix::stream_descriptor ready;
        boost::asio::steady_timer timer;              // start polling / stop escalation
        std::chrono::steady_clock::time_point spawned;
        std::unique_ptr<DomainControl> control;
    };
    using AnchorPtr = std::shared_ptr<Anchor>;

    Anchor& anchor(const std::string& name) const;
    void watch_exit(const AnchorPtr& a);
    void poll_started(const AnchorPtr& a);
    void wait_ready(const AnchorPtr& a);
    // Runs `then` once the anchor's descriptor `fd` is readable, if `a` still runs the same
    // process then (not after a new start).
    void when_readable(const AnchorPtr& a, boost::asio::posix::stream_descriptor Anchor::*fd,
                       std::function<void(const AnchorPtr&)> then);
    // Reports the anchor up if its pid file and QMP socket are there (and it is in its scope),
    // or kills it past start_timeout; false while neither.
    bool check_started(const AnchorPtr& a);
    void on_exit(const AnchorPtr& a);
    void escalate(const AnchorPtr& a, const std::string& stage);
    DomainControl& control(Anchor& a);
    ExitInfo describe_exit(const Anchor& a, std::optional<int> status, bool left_state_dir) const;
    // Moves a just-spawned anchor into its cgroupfs cgroup; on failure kills and reaps it and
    // throws. (Under systemd, ask_for_scope instead.)
    void place_anchor(Anchor& a, int pid);
    // With jail_pid_namespace: the children of `pid` into its cgroupfs cgroup, right after it
    // was placed there (jail::move_children_along).
    void follow_with_children(int pid) const;
    // The process that runs the domain: `pid`, or the anchor under `pid` when `pid` is the
    // keeper of a pid namespace (its memory and uid are the domain's; the CPU time is both's).
    int anchor_process(int pid) const;
    // Asks PID 1 for the anchor's scope on a thread of its own (jail::start_transient_scope
    // blocks up to systemd_timeout); on_scope_answer runs on the io thread with the outcome:
    // the anchor is reported up only once it is in its scope, and killed if systemd refused
    // (its exit then reports why).
    void ask_for_scope(const AnchorPtr& a);
    void on_scope_answer(const AnchorPtr& a, const jail::ScopeRequest& q, const std::string& failure);
    void remove_cgroup(Anchor& a);
    // The uid `a` is to run as in its jail (nullopt: none, or the anchor's own choice); throws
    // when the manifest's uid of the range is taken or the range is used up.
    std::optional<unsigned> jail_uid_for(const Anchor& a) const;
    std::string cgroup_path(const std::string& name) const;
    static jail::CgroupLimits limits_of(const DomainManifest& m);
    // A spawned anchor that could not be given its limits: killed, reaped, its state dir cleaned.
    void discard_unplaced_anchor(const std::string& name, int pid);

    boost::asio::io_context& io_;
    KvmConfig config_;
    std::map<std::string, AnchorPtr> anchors_;
    std::map<std::uint64_t, std::thread> placers_;  // scope requests in flight, by id
    std::uint64_t next_placer_ = 0;
    std::shared_ptr<int> alive_ = std::make_shared<int>(0);  // the placers' answers check it
};

// A sentence for an anchor exit status (anchor/stop_reason.h), e.g. "KVM internal error".
std::string describe_anchor_status(int status);

}  // namespace vmm::hv::kvm
