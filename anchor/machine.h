// Machine: one domain's VM as the anchor builds it from a manifest: KVM VM, guest RAM and its
// slots, in-kernel irqchip and PIT, the legacy PC devices on the port bus, the loaded kernel,
// per-vCPU CPUID and boot state, one thread per vCPU, and the console.
//
// Threads: the caller's (main) thread runs the event loop in run(): console input, signals,
// and the stop notification; vcpuN threads run KVM_RUN and the exit handler; the device I/O
// threads (anchor/pci_devices.h) serve the virtio devices. The vCPU and device I/O threads
// wait at the jail gate (anchor/jail_gate.h) until run() has jailed the process.
#pragma once

#include "anchor/console.h"
#include "anchor/exit_handler.h"
#include "anchor/jail_gate.h"
#include "anchor/stop_reason.h"
#include "anchor/vm_control.h"
#include "devicemodel/bus/guest_memory.h"
#include "common/mapping.h"
#include "devicemodel/bus/io_bus.h"
#include "manifest/domain_manifest.h"
#include "x86/acpi/acpi_tables.h"
#include "x86/cpu_state.h"

#include <sys/types.h>

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace vmm {
class KvmSystem;
class KvmVm;
class KvmVcpu;
namespace legacy {
class Serial16550;
class AcpiPm;
}
namespace qmp {
class QmpServer;
}
namespace run {
class StateDir;
}
}  // namespace vmm

namespace vmm::anchor {

class VfioPassthrough;

enum class ConsoleMode { Stdio, Pty };

struct MachineOptions {
    std::string run_dir = "/run/hypervisor";
    ConsoleMode console = ConsoleMode::Stdio;
    std::string seccomp = "on";  // on | log | off: jail/seccomp_policy.h, installed by run()
    // In a pid namespace of its own (--jail-pid-ns): the pid the `pid` file holds (the keeper's,
    // which the host knows; 0: getpid()), and the host's ids of the given thread ids (what QMP's
    // query-cpus-fast reports; empty: the ids as they are). main() sets both.
    pid_t pid_file_pid = 0;
    std::function<std::vector<int>(const std::vector<int>&)> host_thread_ids;
    // Called once the QMP sockets listen (--ready-fd: tells vmmd the domain is up).
    std::function<void()> on_ready;
};

class PciDevices;

// The ACPI tables' configuration for a domain (also what --dump-acpi writes).
x86::acpi::AcpiConfig acpi_config_for(const DomainManifest& manifest);

class Machine {
public:
    // Builds the whole VM; throws (vmm::Error / std::system_error) with context on failure.
    Machine(const DomainManifest& manifest, const MachineOptions& options);
    ~Machine();

    // Starts the vCPUs and runs until the domain stops; returns why.
    StopReason run();

    const std::string& state_dir() const;

private:
    void build_memory();
    void build_devices();
    void load_guest();
    void build_vcpus();
    // The device I/O threads' first act (PciDevices' hook): wait at the jail gate, then stack
    // the filter of the thread's kind. A failure stops the domain (HostError).
    void jail_io_thread(jail::IoThreadKind kind);

    DomainManifest manifest_;
    MachineOptions options_;
    std::unique_ptr<run::StateDir> state_dir_;
    std::unique_ptr<KvmSystem> kvm_;
    std::unique_ptr<KvmVm> vm_;
    std::vector<Mapping> ram_;
    GuestMemory memory_;
    IoBus pio_{"pio"};
    IoBus mmio_{"mmio"};
    VmControl control_;
    // Before pci_: the device threads wait on it until they are joined in pci_'s destruction.
    JailGate jail_gate_;
    std::unique_ptr<ExitHandler> exit_handler_;
    std::unique_ptr<Console> console_;
    std::shared_ptr<legacy::Serial16550> serial_;
    std::shared_ptr<legacy::AcpiPm> acpi_pm_;
    // Declared before pci_: the root bus lets go of the passed-through functions first, then
    // they are released (interrupts off, reset) while their KVM hooks and RAM still exist.
    std::unique_ptr<VfioPassthrough> passthrough_;
    std::unique_ptr<PciDevices> pci_;
    // After pci_, so destroyed first (also when the constructor throws): abandons the gate, so a
    // device thread still waiting there (run() never got to the jail step) lets pci_ join it.
    struct GateRelease {
        JailGate& gate;
        ~GateRelease() { gate.abandon(); }
    };
    GateRelease gate_release_{jail_gate_};
    std::vector<std::string> virtio_console_paths_;
    std::vector<int> vcpu_tids_;
    std::mutex vcpu_tids_mutex_;
    std::vector<std::unique_ptr<KvmVcpu>> vcpus_;
    x86::BootCpuState boot_cpu_;
};

}  // namespace vmm::anchor
