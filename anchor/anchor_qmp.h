// AnchorQmpDomain: the anchor's side of QMP (qmp/qmp_domain.h): QEMU's commands mapped onto
// VmControl's run states, with the events QEMU sends for each (STOP, RESUME, POWERDOWN, RESET,
// SHUTDOWN). Guest-caused events (SHUTDOWN guest-shutdown, GUEST_PANICKED, ...) come from
// VmControl's event sink, which the anchor points at the same server.
//
// Threads: every method runs on the anchor's main thread (the QMP server's io_context).
// stop() blocks until every vCPU is parked, as QEMU's does. A guest memory dump runs on its own
// thread (dump/guest_dump_job.h); its end is posted back to the io_context.
#pragma once

#include "anchor/vm_control.h"
#include "devicemodel/bus/guest_memory.h"
#include "dump/guest_dump_job.h"
#include "dump/vcpu_dump_state.h"
#include "manifest/domain_manifest.h"
#include "qmp/qmp_domain.h"

#include <boost/asio/io_context.hpp>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace vmm::anchor {

struct AnchorQmpInfo {
    std::string name;
    std::function<std::vector<int>()> vcpu_thread_ids;
    std::vector<DiskSpec> disks;
    std::vector<std::pair<std::string, std::string>> chardevs;  // label, filename (QEMU's form)
    // For dump-guest-memory: guest RAM (outlives the domain object) and the parked vCPUs'
    // registers.
    const GuestMemory* memory = nullptr;
    std::function<std::vector<dump::VcpuDumpState>()> vcpu_dump_states;
};

class AnchorQmpDomain : public qmp::QmpDomain {
public:
    using EventFn = std::function<void(const std::string&, const nlohmann::json&)>;

    AnchorQmpDomain(boost::asio::io_context& io, VmControl& control, AnchorQmpInfo info,
                    std::function<void()> press_power_button, EventFn emit);

    std::string name() const override { return info_.name; }
    std::string run_state() const override { return qmp_name(control_.run_state()); }
    void stop() override;
    void cont() override;
    void system_reset() override;
    void system_powerdown() override;
    void quit() override;
    qmp::Json query_cpus_fast() const override;
    qmp::Json query_block() const override;
    qmp::Json query_chardev() const override;
    // QEMU's paging=false ELF core (dump/): the vCPUs are parked while it is written (STOP, and
    // RESUME after if the domain was running), on the dump's own thread; DUMP_COMPLETED ends it.
    void dump_guest_memory(const qmp::Json& args, Fd target) override;
    qmp::Json query_dump() const override;

private:
    boost::asio::io_context& io_;
    VmControl& control_;
    AnchorQmpInfo info_;
    std::function<void()> press_power_button_;
    EventFn emit_;
    std::unique_ptr<dump::GuestDumpJob> dump_;
};

}  // namespace vmm::anchor
