// KvmVm: one KVM virtual machine (KVM_CREATE_VM) and its VM-wide state: memory slots, the
// in-kernel irqchip and PIT, GSI routing, irqfds and ioeventfds.
// Created and configured on the anchor's main thread; set_irq_line/signal_msi are thread-safe
// (the kernel serialises them) and may be called from device threads.
#pragma once

#include "common/fd.h"
#include "kvm/kvm_system.h"

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

namespace vmm {

class KvmVcpu;

class KvmVm {
public:
    explicit KvmVm(const KvmSystem& kvm);
    // Turns the PIT's tick reinjection off before the VM fd closes (see create_pit).
    ~KvmVm();
    KvmVm(const KvmVm&) = delete;
    KvmVm& operator=(const KvmVm&) = delete;

    int fd() const noexcept { return fd_.get(); }
    const KvmSystem& system() const noexcept { return kvm_; }

    // KVM_SET_USER_MEMORY_REGION. host must stay mapped for the VM's life.
    void set_memory_region(std::uint32_t slot, std::uint64_t gpa, std::uint64_t size, void* host, bool readonly = false);
    // Real-mode TSS and EPT identity-map pages (Intel); must be outside RAM.
    void set_tss_addr(std::uint64_t gpa);
    void set_identity_map_addr(std::uint64_t gpa);
    // In-kernel LAPICs + IOAPIC + PIC, and a PIT; then routes GSIs as a PC does (GSI 0 to
    // IOAPIC pin 2, the ISA IRQs to the PICs and IOAPIC pins 1-15, 16-23 to the IOAPIC).
    void create_irqchip();
    // The PIT, with lost ticks reinjected (QEMU's default lost_tick_policy). A VM with a PIT
    // took 27 ms longer to destroy in L1 (40 ms against 13): by our reading of i8254.c, the
    // kernel then turns reinjection off itself and unregisters its ack notifier, which waits
    // for an SRCU grace period. Turned off while the VM still lives, it took 0.3 ms and the
    // destruction 12 ms. So the anchor does it as soon as its vCPUs have stopped, and ~KvmVm
    // (again, if nobody did) before the fd closes (stop_pit_reinjection).
    void create_pit();
    // KVM_REINJECT_CONTROL off: whether the kernel took it (it refuses a VM without a PIT).
    bool stop_pit_reinjection() noexcept;
    // Level of an irqchip GSI (ISA devices).
    void set_irq_line(std::uint32_t gsi, bool level);
    // Binds an eventfd to a GSI (KVM_IRQFD); resample_fd >= 0 for level-triggered INTx.
    void add_irqfd(int eventfd, std::uint32_t gsi, int resample_fd = -1);
    void remove_irqfd(int eventfd, std::uint32_t gsi);
    // KVM_IOEVENTFD: a guest write of `len` bytes (0 = any) to addr signals eventfd.
    void add_ioeventfd(int eventfd, std::uint64_t addr, std::uint32_t len, bool pio,
                       std::optional<std::uint64_t> datamatch = std::nullopt);
    void remove_ioeventfd(int eventfd, std::uint64_t addr, std::uint32_t len, bool pio,
                          std::optional<std::uint64_t> datamatch = std::nullopt);
    // Allocates a GSI routed to an MSI message (for irqfd-backed MSI/MSI-X vectors).
    std::uint32_t add_msi_route(std::uint64_t address, std::uint32_t data);
    void update_msi_route(std::uint32_t gsi, std::uint64_t address, std::uint32_t data);
    // Direct MSI injection (KVM_SIGNAL_MSI).
    void signal_msi(std::uint64_t address, std::uint32_t data);

    std::unique_ptr<KvmVcpu> create_vcpu(unsigned index);

private:
    struct Route {
        std::uint32_t gsi;
        std::uint32_t type;  // KVM_IRQ_ROUTING_*
        std::uint32_t a, b;  // irqchip/pin, or address_lo/hi
        std::uint32_t data;
    };
    void commit_routes_locked();

    const KvmSystem& kvm_;
    Fd fd_;
    std::mutex routes_mutex_;
    std::vector<Route> routes_;
    std::uint32_t next_msi_gsi_ = 24;
    bool pit_reinjecting_ = false;  // a PIT exists and its reinjection is on
};

}  // namespace vmm
