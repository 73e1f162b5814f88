#include "anchor/machine.h"

#include "anchor/anchor_qmp.h"
#include "anchor/irq_line.h"
#include "anchor/pc_devices.h"
#include "anchor/pci_devices.h"
#include "anchor/vfio_passthrough.h"
#include "boot/kernel_loader.h"
#include "common/error.h"
#include "common/log.h"
#include "common/thread_name.h"
#include "devicemodel/legacy/acpi_pm.h"
#include "devicemodel/legacy/serial_16550.h"
#include "kvm/kvm_system.h"
#include "kvm/kvm_vcpu.h"
#include "kvm/kvm_vm.h"
#include "jail/capabilities.h"
#include "jail/seccomp_policy.h"
#include "qmp/qmp_server.h"
#include "run/state_dir.h"
#include "x86/acpi/acpi_tables.h"
#include "x86/cpuid.h"
#include "x86/memory_layout.h"
#include "x86/mptable.h"

#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <mutex>
#include <thread>

namespace vmm::anchor {

namespace {

boot::EntryMode entry_mode(const std::string& mode) {
    if (mode == "real16") return boot::EntryMode::Real16;
    if (mode == "protected32") return boot::EntryMode::Protected32;
    return boot::EntryMode::Long64;
}

void install_kick_handler() {
    struct sigaction sa{};
    sa.sa_handler = [](int) {};  // only interrupts KVM_RUN; no SA_RESTART
    sigemptyset(&sa.sa_mask);
    ::sigaction(KvmVcpu::kick_signal(), &sa, nullptr);
}

}  // namespace

Machine::Machine(const DomainManifest& manifest, const MachineOptions& options)
    : manifest_(manifest), options_(options) {
    // The state directory first: a second anchor for a live domain stops here, before it
    // touches KVM.
    state_dir_ = std::make_unique<run::StateDir>(options_.run_dir, "kvm", manifest_.name);
    state_dir_->write_pid(static_cast<int>(options_.pid_file_pid > 0 ? options_.pid_file_pid : ::getpid()));
    auto log = logger("anchor");
    log->debug("startup: state directory");
    kvm_ = std::make_unique<KvmSystem>();
    kvm_->require_anchor_capabilities();
    if (manifest_.vcpus > kvm_->max_vcpus())
        throw Error("manifest asks for " + std::to_string(manifest_.vcpus) + " vCPUs; this host's KVM allows " +
                    std::to_string(kvm_->max_vcpus()));

    vm_ = std::make_unique<KvmVm>(*kvm_);
    vm_->set_tss_addr(x86::kKvmTssAddr);
    vm_->set_identity_map_addr(x86::kKvmIdentityMapAddr);
    // RAM's memory slots before the irqchip (as Firecracker orders them): creating the irqchip
    // leaves the VM's SRCU a grace period in flight, and a memory slot set after it waits for
    // that (KVM_SET_USER_MEMORY_REGION 5-7 ms instead of 0.1 on a host with KVM, Linux 6.18;
    // first guest byte 9.4 -> 3.7 ms: bench/RESULTS.md, 2026-12-07 thirteenth session).
    build_memory();
    vm_->create_irqchip();
    vm_->create_pit();
    log->debug("startup: VM, memory, irqchip and PIT created");

    exit_handler_ = std::make_unique<ExitHandler>(pio_, mmio_, control_);
    console_ = options_.console == ConsoleMode::Pty ? Console::make_pty() : Console::make_stdio();
    console_->set_log(std::make_unique<ConsoleLog>(state_dir_->file("console.log")));
    state_dir_->adopt("console.log");
    state_dir_->adopt("console.log.0");
    build_devices();
    log->debug("startup: devices built");
    load_guest();
    build_vcpus();
    log->debug("startup: guest loaded, {} vCPU(s) created", vcpus_.size());

    if (!console_->pty_path().empty()) state_dir_->link_console(console_->pty_path());
}

Machine::~Machine() = default;

const std::string& Machine::state_dir() const { return state_dir_->path(); }

void Machine::build_memory() {
    const auto layout = x86::ram_layout(manifest_.memory_mb * 1024 * 1024);
    // One anonymous private mapping per slot; KVM maps guest pages from these host pages, in
    // 2 MiB pages where the host's are (transparent huge pages unless the manifest says "thp":
    // false; hugetlbfs pages with "hugepages": true).
    const auto pages = manifest_.hugepages ? Mapping::RamPages::HugeTlb
                       : manifest_.thp     ? Mapping::RamPages::Transparent
                                           : Mapping::RamPages::Small;
    std::vector<GuestRegion> regions;
    int thp_refused = 0;
    ram_.push_back(Mapping::guest_ram(layout.low_size, pages, &thp_refused));
    vm_->set_memory_region(0, 0, layout.low_size, ram_.back().data());
    regions.push_back({0, layout.low_size, ram_.back().data()});
    if (layout.high_size > 0) {
        ram_.push_back(Mapping::guest_ram(layout.high_size, pages, &thp_refused));
        vm_->set_memory_region(1, x86::k4GiB, layout.high_size, ram_.back().data());
        regions.push_back({x86::k4GiB, layout.high_size, ram_.back().data()});
    }
    if (thp_refused != 0)
        logger("anchor")->warn("guest RAM: this kernel refuses transparent huge pages (madvise MADV_HUGEPAGE: {}); "
                               "the guest's memory has 4 KiB pages", std::strerror(thp_refused));
    memory_ = GuestMemory(std::move(regions));
}

void Machine::build_devices() {
    const auto layout = x86::ram_layout(manifest_.memory_mb * 1024 * 1024);
    Console* console = console_.get();
    auto devices = install_pc_devices(
        pio_, {layout.low_size, layout.high_size, manifest_.vcpus}, std::make_shared<KvmIrqLine>(*vm_, kCom1Irq),
        [console](std::span<const std::uint8_t> bytes) { console->write(bytes); }, control_);
    serial_ = devices.com1;

    // ACPI fixed-feature PM registers (power button, S5 power-off) at the port the FADT names.
    acpi_pm_ = std::make_shared<legacy::AcpiPm>(std::make_shared<KvmIrqLine>(*vm_, x86::acpi::kSciIrq), [this] {
        control_.guest_stop({StopKind::PowerOff, 0, "ACPI S5 (PM1_CNT SLP_EN)"});
    });
    pio_.insert(x86::acpi::kPmIoBase, legacy::AcpiPm::kPorts, acpi_pm_);

    // The PCI bus replaces the "no PCI" answer of the legacy config ports.
    pio_.remove(0xcf8);
    // Every device I/O thread waits at the jail gate first, then narrows itself (jail_io_thread).
    pci_ = std::make_unique<PciDevices>(*vm_, pio_, mmio_, memory_, layout,
                                        [this](jail::IoThreadKind kind) { jail_io_thread(kind); });
    pci_->add_disks(manifest_.disks);
    pci_->add_nics(manifest_.nics, manifest_.name);
    virtio_console_paths_ = pci_->add_consoles(manifest_.consoles);
    if (!manifest_.pci.empty()) {
        // Memory slots 0 and 1 are RAM (build_memory); BAR mappings start at 8.
        passthrough_ = std::make_unique<VfioPassthrough>(*vm_, memory_, 8);
        passthrough_->add(manifest_.pci, pci_->bus());
    }
}

x86::acpi::AcpiConfig acpi_config_for(const DomainManifest& manifest) {
    x86::acpi::AcpiConfig config;
    config.vcpus = manifest.vcpus;
    config.ram = x86::ram_layout(manifest.memory_mb * 1024 * 1024);
    return config;
}

void Machine::load_guest() {
    boot::KernelSpec spec;
    spec.kernel_path = manifest_.kernel;
    spec.initrd_path = manifest_.initrd;
    spec.cmdline = manifest_.cmdline;
    if (manifest_.flat) {
        spec.flat = boot::FlatSpec{manifest_.flat->load_address, manifest_.flat->entry, entry_mode(manifest_.flat->mode)};
    }
    const auto layout = x86::ram_layout(manifest_.memory_mb * 1024 * 1024);
    auto setup = boot::load_kernel(memory_, layout, spec);
    // An image loaded over the MP table or the BIOS area is the guest's own firmware (a flat
    // image started at the reset vector, as QEMU's -bios): the platform tables are its job, and
    // writing ours would overwrite its code.
    const auto overlaps = [&](std::uint64_t start, std::uint64_t end) {
        return setup.kernel_addr < end && setup.kernel_addr + setup.kernel_size > start;
    };
    if (overlaps(x86::kMpTableAddr, x86::kMpTableAddr + x86::kMpTableSpace) ||
        overlaps(x86::acpi::kAcpiTablesStart, x86::acpi::kAcpiTablesEnd)) {
        logger("anchor")->info("{}: the image occupies the BIOS area: it is the firmware, no MP or ACPI tables written",
                               manifest_.name);
    } else {
        x86::write_mptable(memory_, manifest_.vcpus);
        x86::acpi::write_tables(memory_, x86::acpi::build_tables(acpi_config_for(manifest_)));
    }
    logger("anchor")->info("{}: loaded {} kernel {} at {:#x} ({} bytes), entry {:#x}", manifest_.name, setup.format,
                           manifest_.kernel, setup.kernel_addr, setup.kernel_size, setup.cpu.rip);
    boot_cpu_ = setup.cpu;
}

void Machine::build_vcpus() {
    const auto supported = kvm_->supported_cpuid();
    const x86::CpuidPolicy policy{manifest_.vcpus, manifest_.hide_hypervisor};
    for (unsigned i = 0; i < manifest_.vcpus; ++i) {
        auto vcpu = vm_->create_vcpu(i);
        vcpu->set_cpuid(x86::filter_cpuid(supported, policy, i));
        vcpu->setup_lapic_lints();
        // The BSP starts at the kernel's entry; APs wait in KVM for INIT-SIPI as on hardware.
        if (i == 0) vcpu->set_boot_state(boot_cpu_);
        vcpus_.push_back(std::move(vcpu));
    }
}

void Machine::jail_io_thread(jail::IoThreadKind kind) {
    // Abandoned: the jail step failed (the domain is stopping) or never came (teardown).
    const auto mode = jail_gate_.wait();
    if (!mode) return;
    try {
        jail::install_io_thread_seccomp(*mode, kind);
    } catch (const std::exception& e) {
        // The thread carries on under the process filter alone; the domain stops.
        char name[16] = "?";
        ::pthread_getname_np(::pthread_self(), name, sizeof name);
        control_.request_stop({StopKind::HostError, 0, std::string("jail: ") + name + ": " + e.what()});
    }
}

StopReason Machine::run() {
    namespace asio = boost::asio;
    const auto log = logger("anchor");  // one registry lookup for the milestones below
    asio::io_context io;
    install_kick_handler();
    control_.set_vcpu_count(static_cast<unsigned>(vcpus_.size()));
    control_.set_policy({manifest_.on_poweroff == "pause", manifest_.on_crash == "pause", manifest_.on_reboot == "restart"});
    if (manifest_.start_paused) control_.start_paused();
    control_.set_kicker([this] {
        for (auto& v : vcpus_) v->kick();
    });
    control_.set_stop_hook([&io] { asio::post(io, [&io] { io.stop(); }); });

    asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
    signals.async_wait([this](const boost::system::error_code& ec, int sig) {
        if (!ec) control_.request_stop({StopKind::HostRequest, 0, std::string("signal ") + ::strsignal(sig)});
    });

    // Console input: read from the terminal/pty and feed the UART; what the UART cannot take
    // yet is retried after a short wait, never dropped.
    std::unique_ptr<asio::posix::stream_descriptor> input;
    std::vector<std::uint8_t> pending;
    std::array<std::uint8_t, 512> buf{};
    asio::steady_timer retry(io);
    std::function<void()> read_input;
    std::function<void()> feed = [&] {
        const std::size_t took = pending.empty() ? 0 : serial_->receive(pending);
        pending.erase(pending.begin(), pending.begin() + static_cast<long>(took));
        if (!pending.empty()) {
            retry.expires_after(std::chrono::milliseconds(5));
            retry.async_wait([&](const boost::system::error_code& ec) {
                if (!ec) feed();
            });
        } else {
            read_input();
        }
    };
    read_input = [&] {
        input->async_read_some(asio::buffer(buf), [&](const boost::system::error_code& ec, std::size_t n) {
            if (ec) return;  // EOF or the pty went away: no more input
            pending.assign(buf.begin(), buf.begin() + static_cast<long>(n));
            feed();
        });
    };
    if (console_->input_fd() >= 0) {
        try {
            input = std::make_unique<asio::posix::stream_descriptor>(io, ::dup(console_->input_fd()));
            read_input();
        } catch (const std::exception& e) {
            log->debug("console input not watched: {}", e.what());
        }
    }
    // Flush console output the pty could not take while nobody was reading.
    asio::steady_timer flusher(io);
    std::function<void()> flush = [&] {
        console_->flush();
        flusher.expires_after(std::chrono::milliseconds(50));
        flusher.async_wait([&](const boost::system::error_code& ec) {
            if (!ec) flush();
        });
    };
    flush();

    // virtio consoles: their ptys' input goes to the device (it buffers what the guest has no
    // receive buffers for), their output is flushed with the serial console's.
    struct VirtioConsoleInput {
        std::unique_ptr<asio::posix::stream_descriptor> stream;
        std::function<void(std::span<const std::uint8_t>)> feed;
        std::array<std::uint8_t, 512> buf{};
    };
    std::vector<std::shared_ptr<VirtioConsoleInput>> vc_inputs;
    std::function<void(std::shared_ptr<VirtioConsoleInput>)> read_vc = [&](std::shared_ptr<VirtioConsoleInput> in) {
        in->stream->async_read_some(asio::buffer(in->buf), [&, in](const boost::system::error_code& ec, std::size_t n) {
            if (ec) return;
            in->feed(std::span<const std::uint8_t>(in->buf.data(), n));
            read_vc(in);
        });
    };
    for (auto& ci : pci_->console_inputs()) {
        auto in = std::make_shared<VirtioConsoleInput>();
        in->stream = std::make_unique<asio::posix::stream_descriptor>(io, ::dup(ci.fd));
        in->feed = ci.feed;
        vc_inputs.push_back(in);
        read_vc(in);
    }
    asio::steady_timer vc_flusher(io);
    std::function<void()> vc_flush = [&] {
        pci_->flush_consoles();
        vc_flusher.expires_after(std::chrono::milliseconds(50));
        vc_flusher.async_wait([&](const boost::system::error_code& ec) {
            if (!ec) vc_flush();
        });
    };
    vc_flush();

    // QMP: `qmp` for commands and `listener.qmp` for pillar's event connection; both are full
    // monitors. Guest-caused events reach every client through VmControl's sink.
    AnchorQmpInfo info;
    info.name = manifest_.name;
    info.vcpu_thread_ids = [this] {
        std::vector<int> tids;
        {
            std::lock_guard lock(vcpu_tids_mutex_);
            tids = vcpu_tids_;
        }
        return options_.host_thread_ids ? options_.host_thread_ids(tids) : tids;
    };
    info.disks = manifest_.disks;
    info.chardevs.emplace_back("serial0", console_->pty_path().empty() ? "stdio" : "pty:" + console_->pty_path());
    for (std::size_t i = 0; i < virtio_console_paths_.size(); ++i)
        info.chardevs.emplace_back("virtcon" + std::to_string(i), virtio_console_paths_[i]);
    info.memory = &memory_;
    info.vcpu_dump_states = [this] {
        std::vector<dump::VcpuDumpState> states;
        for (auto& v : vcpus_) states.push_back(v->dump_state());
        return states;
    };
    info.chardevs.emplace_back("monitor0", "unix:" + state_dir_->file("qmp") + ",server=on");
    info.chardevs.emplace_back("monitor1", "unix:" + state_dir_->file("listener.qmp") + ",server=on");
    std::unique_ptr<qmp::QmpServer> qmp_server;
    auto emit = [&qmp_server](const std::string& event, const nlohmann::json& data) {
        if (qmp_server) qmp_server->emit(event, qmp::Json(data));
    };
    AnchorQmpDomain qmp_domain(io, control_, info, [this] { acpi_pm_->press_power_button(); }, emit);
    qmp_server = std::make_unique<qmp::QmpServer>(io, qmp_domain);
    for (const char* leaf : {"qmp", "listener.qmp"}) {
        qmp_server->listen(state_dir_->file(leaf));
        state_dir_->adopt(leaf);
    }
    control_.set_event_sink(emit);
    // A named port's guest side, as QEMU reports a virtserialport's.
    pci_->set_port_event_sink([emit](const std::string& id, bool open) {
        emit("VSERPORT_CHANGE", {{"id", id}, {"open", open}});
    });

    log->debug("startup: QMP listening");
    if (options_.on_ready) options_.on_ready();
    pci_->start();
    if (passthrough_) passthrough_->start();
    // The vCPU threads wait at the jail gate until the process is jailed, then stack their own
    // filter (the process filter's TSYNC must come first: it fails once one thread's filters
    // differ) and only then enter KVM_RUN, in prelaunch as in running. The device I/O threads
    // (made with the devices, and the notify thread just started) wait there too and stack
    // theirs (jail_io_thread).
    jail::SeccompMode seccomp_mode = jail::SeccompMode::Off;
    std::vector<std::thread> threads;
    for (auto& v : vcpus_) {
        KvmVcpu* vcpu = v.get();
        threads.emplace_back([this, vcpu, log] {
            set_thread_name("vcpu" + std::to_string(vcpu->index()));
            {
                std::lock_guard lock(vcpu_tids_mutex_);
                vcpu_tids_.push_back(static_cast<int>(::syscall(SYS_gettid)));
            }
            vcpu->bind_to_current_thread();
            const auto mode = jail_gate_.wait();
            if (!mode || control_.stopping()) return;
            try {
                jail::install_vcpu_seccomp(*mode);
            } catch (const std::exception& e) {
                control_.request_stop({StopKind::HostError, 0,
                                       "jail: vcpu" + std::to_string(vcpu->index()) + ": " + e.what()});
                return;
            }
            if (vcpu->index() == 0) log->debug("startup: vcpu0 enters KVM_RUN");
            run_vcpu_loop(*vcpu, *exit_handler_, control_);
        });
    }
    // Least privilege (docs/SECURITY.md): every fd and thread exists now. Capabilities first,
    // then the syscall filter; both reach every thread of the process. The gate opens even
    // when this fails (abandoned: the domain is stopping then, the vCPU threads just return
    // and the device threads go on without a filter of their own until they are stopped).
    bool jailed = false;
    try {
        seccomp_mode = jail::parse_seccomp_mode(options_.seccomp);
        log->debug("startup: threads started; jail step");
        jail::drop_capabilities(jail::anchor_kept_capabilities(!manifest_.nics.empty(), !manifest_.pci.empty()));
        log->debug("startup: capabilities dropped");
        jail::install_anchor_seccomp(seccomp_mode);
        // This thread serves QMP and tears the machine down: the strict list on top, without
        // the setup syscalls; the restart's execve is the restart thread's (anchor/main.cpp).
        jail::install_main_thread_seccomp(seccomp_mode);
        log->debug("startup: seccomp filter installed");
        jailed = true;
    } catch (const std::exception& e) {
        control_.request_stop({StopKind::HostError, 0, std::string("jail: ") + e.what()});
    }
    if (jailed)
        jail_gate_.open(seccomp_mode);
    else
        jail_gate_.abandon();
    if (!control_.stopping()) io.run();
    for (auto& v : vcpus_) v->kick();
    for (auto& t : threads) t.join();
    log->debug("teardown: vCPU threads joined");
    // No vCPU runs again: the PIT's reinjection goes off now, while nothing else is being torn
    // down (kvm/kvm_vm.h, create_pit: later, once the devices' irqfds are released, the same
    // step waits out a full SRCU grace period).
    if (vm_->stop_pit_reinjection()) log->debug("teardown: PIT reinjection off");
    // The loop's own periodic work ends here (the flushers re-arm forever, the input reads and
    // the signal wait never finish): what still runs below is QMP's flush, and the loop
    // returns as soon as that is done instead of always waiting out the deadline.
    boost::system::error_code ignored;
    flusher.cancel();
    vc_flusher.cancel();
    retry.cancel();
    signals.cancel(ignored);
    if (input) input->cancel(ignored);
    for (auto& in : vc_inputs) in->stream->cancel(ignored);
    console_->flush();
    pci_->flush_consoles();
    // Let QMP clients read what is queued for them (the quit reply, SHUTDOWN) before exiting.
    control_.set_event_sink(nullptr);
    pci_->set_port_event_sink(nullptr);
    qmp_server->close();
    io.restart();
    io.run_for(std::chrono::milliseconds(500));
    qmp_server.reset();
    log->debug("teardown: QMP clients flushed");
    return control_.reason().value_or(StopReason{StopKind::HostError, 0, "event loop ended without a stop reason"});
}

}  // namespace vmm::anchor
