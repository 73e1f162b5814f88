// KvmVcpu: one KVM vCPU (KVM_CREATE_VCPU) and its shared kvm_run page.
// Configured on the main thread before its thread starts; run() only on its own thread;
// kick() from any thread (immediate_exit + a signal to the vCPU thread).
#pragma once

#include "dump/vcpu_dump_state.h"

#include "common/fd.h"
#include "common/mapping.h"
#include "kvm/vcpu.h"
#include "x86/cpu_state.h"
#include "x86/cpuid.h"

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <vector>

struct kvm_run;

namespace vmm {

class KvmVm;

class KvmVcpu : public Vcpu {
public:
    KvmVcpu(KvmVm& vm, unsigned index);

    unsigned index() const override { return index_; }
    VcpuExit run() override;
    void kick() override;
    std::string describe_state() override;
    // Registers, segments, descriptor tables, control registers and KERNEL_GS_BASE for a guest
    // memory dump (QMP dump-guest-memory). Call while the vCPU is out of KVM_RUN (parked);
    // throws std::system_error if KVM refuses.
    dump::VcpuDumpState dump_state();

    void set_cpuid(const std::vector<x86::CpuidEntry>& entries);
    // Registers, segments, control registers, FPU and boot MSRs (MTRRs write-back, MISC_ENABLE).
    void set_boot_state(const x86::BootCpuState& state);
    // LAPIC LINT0 = ExtINT (legacy PIC), LINT1 = NMI, as a BIOS leaves them.
    void setup_lapic_lints();
    // Call on the vCPU's own thread before run(): kick() signals this thread.
    void bind_to_current_thread();
    // The signal kick() uses; the anchor installs a no-op handler for it (without SA_RESTART).
    static int kick_signal();

private:
    unsigned index_;
    Fd fd_;
    Mapping run_map_;
    kvm_run* run_ = nullptr;
    std::atomic<bool> kicked_{false};
    std::atomic<bool> bound_{false};
    pthread_t thread_{};
};

}  // namespace vmm
