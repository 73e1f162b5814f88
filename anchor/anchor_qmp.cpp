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

void AnchorQmpDomain::dump_guest_memory(const qmp::Json& args, Fd target) {
    using qmp::CommandError;
    using qmp::kGenericError;
    if (dump_ && dump_->result().status == dump::GuestDumpJob::Status::active)
        throw CommandError(kGenericError, "there is a dump in process, please wait.");
    if (args.value("paging", false))
        throw CommandError(kGenericError, "paging: true is not supported: this VMM dumps guest-physical memory "
                                          "(use \"paging\": false, as EVE's pillar does)");
    if (args.contains("begin") || args.contains("length"))
        throw CommandError(kGenericError, "'begin' and 'length' select guest-virtual ranges, which need paging");
    if (const auto f = args.find("format"); f != args.end() && *f != "elf")
        throw CommandError(kGenericError, "format '" + f->get<std::string>() + "' is not supported: only 'elf'");
    if (!info_.memory || !info_.vcpu_dump_states)
        throw CommandError(kGenericError, "this domain has no guest memory to dump");
    dump::DumpProtocol protocol;
    try {
        protocol = dump::parse_dump_protocol(args.at("protocol").get<std::string>());
    } catch (const std::exception& e) {
        throw CommandError(kGenericError, e.what());
    }
    if (protocol.kind == dump::DumpProtocol::Kind::fd && !target.valid())
        throw CommandError(kGenericError, "File descriptor named '" + protocol.value + "' has not been found");
    // As QEMU: the VM does not run while its memory is written, and runs again afterwards if it
    // was running.
    const bool was_running = control_.run_state() == RunState::Running;
    if (was_running) {
        control_.pause();
        emit_("STOP", nullptr);
    }
    std::vector<dump::VcpuDumpState> vcpus;
    try {
        vcpus = info_.vcpu_dump_states();
    } catch (const std::exception& e) {
        if (was_running && control_.resume()) emit_("RESUME", nullptr);
        throw CommandError(kGenericError, std::string("reading the vCPUs' registers: ") + e.what());
    }
    dump_.reset();  // a finished earlier dump
    boost::asio::io_context& io = io_;
    auto on_done = [this, &io, was_running](const dump::GuestDumpJob::Result& r) {
        // On the dump thread: the event and the resume happen on the main thread.
        boost::asio::post(io, [this, was_running, r] {
            nlohmann::json result = {{"total", r.total},
                                     {"status", dump::GuestDumpJob::status_name(r.status)},
                                     {"completed", r.completed}};
            nlohmann::json data = {{"result", result}};
            if (!r.error.empty()) data["error"] = r.error;
            emit_("DUMP_COMPLETED", data);
            if (was_running && control_.run_state() == RunState::Paused && control_.resume())
                emit_("RESUME", nullptr);
        });
    };
    // "fd:NAME": the descriptor the client passed (getfd), which also reaches out of a jail.
    dump_ = protocol.kind == dump::DumpProtocol::Kind::fd
                ? std::make_unique<dump::GuestDumpJob>(*info_.memory, std::move(vcpus), std::move(target), on_done)
                : std::make_unique<dump::GuestDumpJob>(*info_.memory, std::move(vcpus), protocol, on_done);
    if (!args.value("detach", false)) dump_->wait();
}

qmp::Json AnchorQmpDomain::query_dump() const {
    if (!dump_) return qmp::Json{{"status", "none"}, {"completed", 0}, {"total", 0}};
    const auto r = dump_->result();
    return qmp::Json{{"status", dump::GuestDumpJob::status_name(r.status)}, {"completed", r.completed}, {"total", r.total}};
}

}  // namespace vmm::anchor
