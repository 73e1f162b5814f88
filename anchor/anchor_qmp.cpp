#include "anchor/anchor_qmp.h"

#include "qmp/command_error.h"

#include <boost/asio/post.hpp>

namespace vmm::anchor {

AnchorQmpDomain::AnchorQmpDomain(boost::asio::io_context& io, VmControl& control, AnchorQmpInfo info,
                                 std::function<void()> press_power_button, EventFn emit)
    : io_(io), control_(control), info_(std::move(info)), press_power_button_(std::move(press_power_button)),
      emit_(std::move(emit)) {}

void AnchorQmpDomain::stop() {
    // QEMU: stop on a running VM parks the vCPUs and sends STOP; on any other state it changes
    // nothing and sends nothing.
    if (control_.run_state() != RunState::Running) return;
    control_.pause();
    emit_("STOP", nullptr);
}

void AnchorQmpDomain::cont() {
    const RunState state = control_.run_state();
    if (state == RunState::Running) return;
    if (!control_.resume()) throw qmp::CommandError(qmp::kGenericError, "Resetting the Virtual Machine is required");
    emit_("RESUME", nullptr);
}

void AnchorQmpDomain::system_reset() {
    emit_("RESET", {{"guest", false}, {"reason", "host-qmp-system-reset"}});
    // After the reply: the anchor restarts the domain (anchor/main.cpp), QMP connections close.
    boost::asio::post(io_, [this] {
        StopReason r{StopKind::Reset, 0, "QMP system_reset"};
        r.restart = true;
        control_.request_stop(r);
    });
}

void AnchorQmpDomain::system_powerdown() {
    // An ACPI power-button press: an ACPI guest shuts down in order and powers off through
    // PM1_CNT (S5), which the guest-stop policy turns into SHUTDOWN guest-shutdown.
    press_power_button_();
    emit_("POWERDOWN", nullptr);
}

void AnchorQmpDomain::quit() {
    // The reply goes out first (it is queued when this returns), then SHUTDOWN, then the
    // anchor exits and the server flushes what is queued.
    boost::asio::post(io_, [this] {
        emit_("SHUTDOWN", {{"guest", false}, {"reason", "host-qmp-quit"}});
        control_.request_stop({StopKind::HostRequest, 0, "QMP quit"});
    });
}

qmp::Json AnchorQmpDomain::query_cpus_fast() const {
    qmp::Json cpus = qmp::Json::array();
    const std::vector<int> tids = info_.vcpu_thread_ids ? info_.vcpu_thread_ids() : std::vector<int>{};
    for (std::size_t i = 0; i < tids.size(); ++i) {
        cpus.push_back({{"cpu-index", i},
                        {"qom-path", "/machine/unattached/device[" + std::to_string(i) + "]"},
                        {"thread-id", tids[i]},
                        {"props", {{"core-id", 0}, {"thread-id", 0}, {"socket-id", i}}},
                        {"target", "x86_64"}});
    }
    return cpus;
}

qmp::Json AnchorQmpDomain::query_block() const {
    qmp::Json blocks = qmp::Json::array();
    for (std::size_t i = 0; i < info_.disks.size(); ++i) {
        const DiskSpec& d = info_.disks[i];
        blocks.push_back({{"device", ""},
                          {"qdev", "/machine/peripheral-anon/device[" + std::to_string(i) + "]/virtio-backend"},
                          {"locked", false},
                          {"removable", false},
                          {"type", "unknown"},
                          {"io-status", "ok"},
                          {"inserted",
                           {{"file", d.path},
                            {"node-name", "disk" + std::to_string(i)},
                            {"ro", d.readonly},
                            {"drv", "raw"},
                            {"encrypted", false},
                            {"detect_zeroes", "off"},
                            {"bps", 0}, {"bps_rd", 0}, {"bps_wr", 0},
                            {"iops", 0}, {"iops_rd", 0}, {"iops_wr", 0},
                            {"write_threshold", 0},
                            {"cache", {{"writeback", true}, {"direct", false}, {"no-flush", false}}}}}});
    }
    return blocks;
}

qmp::Json AnchorQmpDomain::query_chardev() const {
    qmp::Json devs = qmp::Json::array();
    for (const auto& [label, filename] : info_.chardevs)
        devs.push_back({{"label", label}, {"filename", filename}, {"frontend-open", true}});
    return devs;
}

}  // namespace vmm::anchor
