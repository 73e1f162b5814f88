#include "kvm/kvm_vm.h"

#include "common/error.h"
#include "kvm/kvm_flex.h"
#include "kvm/kvm_vcpu.h"

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cstring>
#include <memory>

namespace vmm {

KvmVm::KvmVm(const KvmSystem& kvm) : kvm_(kvm) {
    int fd = -1;
    // EINTR can occur while the kernel sets up the VM; retry as the API recommends.
    do {
        fd = ::ioctl(kvm.fd(), KVM_CREATE_VM, 0);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) throw_errno("KVM_CREATE_VM");
    fd_ = Fd(fd);
}

KvmVm::~KvmVm() {
    // Best effort: the guest is gone, ticks mean nothing now; if it fails the kernel does it.
    if (pit_reinjecting_) (void)stop_pit_reinjection();
}

bool KvmVm::stop_pit_reinjection() noexcept {
    kvm_reinject_control off{};
    off.pit_reinject = 0;
    if (::ioctl(fd_.get(), KVM_REINJECT_CONTROL, &off) != 0) return false;
    pit_reinjecting_ = false;
    return true;
}

void KvmVm::set_memory_region(std::uint32_t slot, std::uint64_t gpa, std::uint64_t size, void* host, bool readonly) {
    kvm_userspace_memory_region r{};
    r.slot = slot;
    r.flags = readonly ? KVM_MEM_READONLY : 0;
    r.guest_phys_addr = gpa;
    r.memory_size = size;
    r.userspace_addr = reinterpret_cast<std::uint64_t>(host);
    if (::ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &r) < 0)
        throw_errno("KVM_SET_USER_MEMORY_REGION slot " + std::to_string(slot));
}

void KvmVm::set_tss_addr(std::uint64_t gpa) {
    if (::ioctl(fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(gpa)) < 0) throw_errno("KVM_SET_TSS_ADDR");
}

void KvmVm::set_identity_map_addr(std::uint64_t gpa) {
    if (kvm_.check_extension(KVM_CAP_SET_IDENTITY_MAP_ADDR) <= 0) return;
    std::uint64_t addr = gpa;
    if (::ioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &addr) < 0) throw_errno("KVM_SET_IDENTITY_MAP_ADDR");
}

void KvmVm::create_irqchip() {
    kvm_.require_extension(KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP");
    if (::ioctl(fd_.get(), KVM_CREATE_IRQCHIP, 0) < 0) throw_errno("KVM_CREATE_IRQCHIP");
    // The PC's wiring, as QEMU sets it up: the PIT's GSI 0 reaches IOAPIC pin 2 (the MP table
    // and MADT announce that override), ISA IRQs 1-15 reach both the PICs and the IOAPIC.
    std::lock_guard lock(routes_mutex_);
    routes_.clear();
    for (std::uint32_t irq = 0; irq < 16; ++irq) {
        if (irq == 2) continue;  // cascade
        routes_.push_back({irq, KVM_IRQ_ROUTING_IRQCHIP, irq < 8 ? std::uint32_t(KVM_IRQCHIP_PIC_MASTER) : std::uint32_t(KVM_IRQCHIP_PIC_SLAVE),
                           irq % 8, 0});
    }
    for (std::uint32_t gsi = 0; gsi < 24; ++gsi) {
        if (gsi == 2) continue;
        routes_.push_back({gsi, KVM_IRQ_ROUTING_IRQCHIP, std::uint32_t(KVM_IRQCHIP_IOAPIC), gsi == 0 ? 2u : gsi, 0});
    }
    commit_routes_locked();
}

void KvmVm::create_pit() {
    kvm_pit_config cfg{};
    // The speaker port 0x61 is then answered in the kernel too (Linux reads it to calibrate).
    cfg.flags = KVM_PIT_SPEAKER_DUMMY;
    if (::ioctl(fd_.get(), KVM_CREATE_PIT2, &cfg) < 0) throw_errno("KVM_CREATE_PIT2");
    pit_reinjecting_ = true;
}

void KvmVm::set_irq_line(std::uint32_t gsi, bool level) {
    kvm_irq_level l{};
    l.irq = gsi;
    l.level = level ? 1 : 0;
    if (::ioctl(fd_.get(), KVM_IRQ_LINE, &l) < 0) throw_errno("KVM_IRQ_LINE " + std::to_string(gsi));
}

void KvmVm::add_irqfd(int eventfd, std::uint32_t gsi, int resample_fd) {
    kvm_irqfd f{};
    f.fd = static_cast<std::uint32_t>(eventfd);
    f.gsi = gsi;
    if (resample_fd >= 0) {
        f.flags = KVM_IRQFD_FLAG_RESAMPLE;
        f.resamplefd = static_cast<std::uint32_t>(resample_fd);
    }
    if (::ioctl(fd_.get(), KVM_IRQFD, &f) < 0) throw_errno("KVM_IRQFD gsi " + std::to_string(gsi));
}

void KvmVm::remove_irqfd(int eventfd, std::uint32_t gsi) {
    kvm_irqfd f{};
    f.fd = static_cast<std::uint32_t>(eventfd);
    f.gsi = gsi;
    f.flags = KVM_IRQFD_FLAG_DEASSIGN;
    if (::ioctl(fd_.get(), KVM_IRQFD, &f) < 0) throw_errno("KVM_IRQFD deassign gsi " + std::to_string(gsi));
}

namespace {
kvm_ioeventfd make_ioeventfd(int eventfd, std::uint64_t addr, std::uint32_t len, bool pio,
                             std::optional<std::uint64_t> datamatch) {
    kvm_ioeventfd e{};
    e.addr = addr;
    e.len = len;
    e.fd = eventfd;
    if (pio) e.flags |= KVM_IOEVENTFD_FLAG_PIO;
    if (datamatch) {
        e.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
        e.datamatch = *datamatch;
    }
    return e;
}
}  // namespace

void KvmVm::add_ioeventfd(int eventfd, std::uint64_t addr, std::uint32_t len, bool pio,
                          std::optional<std::uint64_t> datamatch) {
    auto e = make_ioeventfd(eventfd, addr, len, pio, datamatch);
    if (::ioctl(fd_.get(), KVM_IOEVENTFD, &e) < 0) throw_errno("KVM_IOEVENTFD");
}

void KvmVm::remove_ioeventfd(int eventfd, std::uint64_t addr, std::uint32_t len, bool pio,
                             std::optional<std::uint64_t> datamatch) {
    auto e = make_ioeventfd(eventfd, addr, len, pio, datamatch);
    e.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
    if (::ioctl(fd_.get(), KVM_IOEVENTFD, &e) < 0) throw_errno("KVM_IOEVENTFD deassign");
}

std::uint32_t KvmVm::add_msi_route(std::uint64_t address, std::uint32_t data) {
    std::lock_guard lock(routes_mutex_);
    const std::uint32_t gsi = next_msi_gsi_++;
    routes_.push_back({gsi, KVM_IRQ_ROUTING_MSI, static_cast<std::uint32_t>(address),
                       static_cast<std::uint32_t>(address >> 32), data});
    commit_routes_locked();
    return gsi;
}

void KvmVm::update_msi_route(std::uint32_t gsi, std::uint64_t address, std::uint32_t data) {
    std::lock_guard lock(routes_mutex_);
    for (auto& r : routes_) {
        if (r.gsi == gsi && r.type == KVM_IRQ_ROUTING_MSI) {
            r.a = static_cast<std::uint32_t>(address);
            r.b = static_cast<std::uint32_t>(address >> 32);
            r.data = data;
            commit_routes_locked();
            return;
        }
    }
    throw Error("update_msi_route: no MSI route for GSI " + std::to_string(gsi));
}

void KvmVm::commit_routes_locked() {
    kvm_flex::FlexBuffer<kvm_flex::RoutingHeader, kvm_irq_routing_entry> table(routes_.size());
    table.header()->nr = static_cast<std::uint32_t>(routes_.size());
    for (std::size_t i = 0; i < routes_.size(); ++i) {
        auto& e = table.entries()[i];
        const auto& r = routes_[i];
        e.gsi = r.gsi;
        e.type = r.type;
        if (r.type == KVM_IRQ_ROUTING_IRQCHIP) {
            e.u.irqchip.irqchip = r.a;
            e.u.irqchip.pin = r.b;
        } else {
            e.u.msi.address_lo = r.a;
            e.u.msi.address_hi = r.b;
            e.u.msi.data = r.data;
        }
    }
    if (::ioctl(fd_.get(), kvm_flex::kSetGsiRouting, table.data()) < 0) throw_errno("KVM_SET_GSI_ROUTING");
}

void KvmVm::signal_msi(std::uint64_t address, std::uint32_t data) {
    kvm_msi m{};
    m.address_lo = static_cast<std::uint32_t>(address);
    m.address_hi = static_cast<std::uint32_t>(address >> 32);
    m.data = data;
    if (::ioctl(fd_.get(), KVM_SIGNAL_MSI, &m) < 0) throw_errno("KVM_SIGNAL_MSI");
}

std::unique_ptr<KvmVcpu> KvmVm::create_vcpu(unsigned index) {
    return std::make_unique<KvmVcpu>(*this, index);
}

}  // namespace vmm
