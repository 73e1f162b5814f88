#include "kvm/kvm_vcpu.h"

#include "common/error.h"
#include "kvm/kvm_flex.h"
#include "kvm/kvm_vm.h"

#include <linux/kvm.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cstdio>
#include <cstring>
#include <memory>

namespace vmm {

namespace {

// Architectural MSR numbers (Intel SDM vol. 4, table 2-2); the kernel's msr-index.h is not
// exported to userspace.
constexpr std::uint32_t kMsrSysenterCs = 0x174, kMsrSysenterEsp = 0x175, kMsrSysenterEip = 0x176;
constexpr std::uint32_t kMsrStar = 0xc0000081, kMsrLstar = 0xc0000082, kMsrCstar = 0xc0000083;
constexpr std::uint32_t kMsrKernelGsBase = 0xc0000102, kMsrMiscEnable = 0x1a0, kMsrMtrrDefType = 0x2ff;
constexpr std::uint64_t kMiscEnableFastString = 1;

kvm_segment to_kvm(const x86::Segment& s) {
    kvm_segment k{};
    k.base = s.base;
    k.limit = s.limit;
    k.selector = s.selector;
    k.type = s.type;
    k.present = s.present;
    k.dpl = s.dpl;
    k.db = s.db;
    k.s = s.s;
    k.l = s.l;
    k.g = s.g;
    return k;
}

void ioctl_or_throw(int fd, unsigned long req, void* arg, const char* what, unsigned index) {
    if (::ioctl(fd, req, arg) < 0) throw_errno(std::string(what) + " (vcpu " + std::to_string(index) + ")");
}

}  // namespace

KvmVcpu::KvmVcpu(KvmVm& vm, unsigned index) : index_(index) {
    const int fd = ::ioctl(vm.fd(), KVM_CREATE_VCPU, static_cast<unsigned long>(index));
    if (fd < 0) throw_errno("KVM_CREATE_VCPU " + std::to_string(index));
    fd_ = Fd(fd);
    // The kvm_run structure is shared with the kernel through this mapping, which is at least
    // sizeof(kvm_run) long (KVM_GET_VCPU_MMAP_SIZE).
    run_map_ = Mapping::of_fd(fd_.get(), vm.system().vcpu_mmap_size(), PROT_READ | PROT_WRITE);
    run_ = reinterpret_cast<kvm_run*>(run_map_.data());
}

int KvmVcpu::kick_signal() { return SIGRTMIN + 1; }

void KvmVcpu::bind_to_current_thread() {
    thread_ = ::pthread_self();
    bound_.store(true, std::memory_order_release);
}

void KvmVcpu::kick() {
    kicked_.store(true, std::memory_order_release);
    // immediate_exit makes a KVM_RUN that has not entered the guest yet return EINTR at once;
    // the signal interrupts one that has.
    run_->immediate_exit = 1;
    if (bound_.load(std::memory_order_acquire)) ::pthread_kill(thread_, kick_signal());
}

VcpuExit KvmVcpu::run() {
    VcpuExit exit;
    if (kicked_.exchange(false, std::memory_order_acq_rel)) {
        run_->immediate_exit = 0;
        exit.kind = VcpuExit::Kind::Interrupted;
        return exit;
    }
    if (::ioctl(fd_.get(), KVM_RUN, 0) < 0) {
        if (errno == EINTR || errno == EAGAIN) {
            run_->immediate_exit = 0;
            kicked_.store(false, std::memory_order_release);
            exit.kind = VcpuExit::Kind::Interrupted;
            return exit;
        }
        throw_errno("KVM_RUN (vcpu " + std::to_string(index_) + ")");
    }
    auto* base = reinterpret_cast<std::uint8_t*>(run_);
    switch (run_->exit_reason) {
    case KVM_EXIT_IO:
        exit.kind = VcpuExit::Kind::Io;
        exit.addr = run_->io.port;
        exit.size = run_->io.size;
        exit.count = run_->io.count;
        exit.is_write = run_->io.direction == KVM_EXIT_IO_OUT;
        // KVM places size*count data bytes at data_offset inside the mapped kvm_run area.
        if (run_->io.data_offset + std::uint64_t(exit.size) * exit.count > run_map_.size())
            throw Error("KVM_EXIT_IO data outside the kvm_run mapping");
        exit.data = std::span<std::uint8_t>(base + run_->io.data_offset, std::size_t(exit.size) * exit.count);
        break;
    case KVM_EXIT_MMIO:
        exit.kind = VcpuExit::Kind::Mmio;
        exit.addr = run_->mmio.phys_addr;
        exit.size = run_->mmio.len > 8 ? 8 : run_->mmio.len;
        exit.is_write = run_->mmio.is_write != 0;
        exit.data = std::span<std::uint8_t>(run_->mmio.data, exit.size);
        break;
    case KVM_EXIT_HLT: exit.kind = VcpuExit::Kind::Hlt; break;
    case KVM_EXIT_SHUTDOWN: exit.kind = VcpuExit::Kind::Shutdown; break;
    case KVM_EXIT_SYSTEM_EVENT:
        exit.kind = VcpuExit::Kind::SystemEvent;
        static_assert(KVM_SYSTEM_EVENT_SHUTDOWN == std::uint64_t(SystemEvent::Shutdown) &&
                      KVM_SYSTEM_EVENT_RESET == std::uint64_t(SystemEvent::Reset) &&
                      KVM_SYSTEM_EVENT_CRASH == std::uint64_t(SystemEvent::Crash));
        exit.detail = run_->system_event.type;
        break;
    case KVM_EXIT_INTERNAL_ERROR:
        exit.kind = VcpuExit::Kind::InternalError;
        exit.detail = run_->internal.suberror;
        break;
    case KVM_EXIT_FAIL_ENTRY:
        exit.kind = VcpuExit::Kind::FailEntry;
        exit.detail = run_->fail_entry.hardware_entry_failure_reason;
        break;
    case KVM_EXIT_INTR:
        exit.kind = VcpuExit::Kind::Interrupted;
        break;
    default:
        exit.kind = VcpuExit::Kind::Unknown;
        exit.detail = run_->exit_reason;
        break;
    }
    return exit;
}

void KvmVcpu::set_cpuid(const std::vector<x86::CpuidEntry>& entries) {
    kvm_flex::FlexBuffer<kvm_flex::CpuidHeader, kvm_cpuid_entry2> buf(entries.size());
    buf.header()->nent = static_cast<std::uint32_t>(entries.size());
    for (std::size_t i = 0; i < entries.size(); ++i) {
        auto& e = buf.entries()[i];
        e.function = entries[i].function;
        e.index = entries[i].index;
        e.flags = entries[i].flags;
        e.eax = entries[i].eax;
        e.ebx = entries[i].ebx;
        e.ecx = entries[i].ecx;
        e.edx = entries[i].edx;
    }
    ioctl_or_throw(fd_.get(), kvm_flex::kSetCpuid2, buf.data(), "KVM_SET_CPUID2", index_);
}

void KvmVcpu::set_boot_state(const x86::BootCpuState& st) {
    kvm_sregs sregs{};
    ioctl_or_throw(fd_.get(), KVM_GET_SREGS, &sregs, "KVM_GET_SREGS", index_);
    sregs.cs = to_kvm(st.cs);
    sregs.ds = to_kvm(st.ds);
    sregs.es = to_kvm(st.es);
    sregs.fs = to_kvm(st.fs);
    sregs.gs = to_kvm(st.gs);
    sregs.ss = to_kvm(st.ss);
    sregs.gdt.base = st.gdt_base;
    sregs.gdt.limit = st.gdt_limit;
    sregs.idt.base = st.idt_base;
    sregs.idt.limit = st.idt_limit;
    sregs.cr0 = st.cr0;
    sregs.cr3 = st.cr3;
    sregs.cr4 = st.cr4;
    sregs.efer = st.efer;
    ioctl_or_throw(fd_.get(), KVM_SET_SREGS, &sregs, "KVM_SET_SREGS", index_);

    kvm_regs regs{};
    regs.rax = st.rax;
    regs.rbx = st.rbx;
    regs.rcx = st.rcx;
    regs.rdx = st.rdx;
    regs.rsi = st.rsi;
    regs.rdi = st.rdi;
    regs.rsp = st.rsp;
    regs.rbp = st.rbp;
    regs.rip = st.rip;
    regs.rflags = st.rflags;
    ioctl_or_throw(fd_.get(), KVM_SET_REGS, &regs, "KVM_SET_REGS", index_);

    kvm_fpu fpu{};
    fpu.fcw = 0x37f;     // x87 reset control word
    fpu.mxcsr = 0x1f80;  // SSE reset value: all exceptions masked
    ioctl_or_throw(fd_.get(), KVM_SET_FPU, &fpu, "KVM_SET_FPU", index_);

    // Boot MSRs (as Firecracker and QEMU leave them): syscall MSRs clear, fast strings on,
    // MTRRs enabled with write-back default so guest RAM is cacheable.
    const std::pair<std::uint32_t, std::uint64_t> values[] = {
        {kMsrSysenterCs, 0}, {kMsrSysenterEsp, 0}, {kMsrSysenterEip, 0},
        {kMsrStar, 0},       {kMsrLstar, 0},       {kMsrCstar, 0},
        {kMsrKernelGsBase, 0}, {kMsrMiscEnable, kMiscEnableFastString},
        {kMsrMtrrDefType, (1u << 11) | 6},  // MTRR enable, default type WB
    };
    constexpr std::size_t kCount = std::size(values);
    kvm_flex::FlexBuffer<kvm_flex::MsrsHeader, kvm_msr_entry> msrs(kCount);
    msrs.header()->nmsrs = kCount;
    for (std::size_t i = 0; i < kCount; ++i) {
        msrs.entries()[i].index = values[i].first;
        msrs.entries()[i].data = values[i].second;
    }
    const int set = ::ioctl(fd_.get(), kvm_flex::kSetMsrs, msrs.data());
    if (set < 0) throw_errno("KVM_SET_MSRS (vcpu " + std::to_string(index_) + ")");
    // KVM returns how many it set; MISC_ENABLE or MTRRs may be refused by some hosts, which a
    // guest survives, so a partial result is not fatal.
}

void KvmVcpu::setup_lapic_lints() {
    kvm_lapic_state lapic{};
    ioctl_or_throw(fd_.get(), KVM_GET_LAPIC, &lapic, "KVM_GET_LAPIC", index_);
    constexpr int kLvtLint0 = 0x350, kLvtLint1 = 0x360;
    constexpr std::uint32_t kDeliveryExtInt = 0x7 << 8, kDeliveryNmi = 0x4 << 8, kDeliveryMask = 0x7 << 8;
    auto patch = [&](int reg, std::uint32_t mode) {
        std::uint32_t v;
        std::memcpy(&v, lapic.regs + reg, sizeof v);
        v = (v & ~kDeliveryMask) | mode;
        std::memcpy(lapic.regs + reg, &v, sizeof v);
    };
    patch(kLvtLint0, kDeliveryExtInt);
    patch(kLvtLint1, kDeliveryNmi);
    ioctl_or_throw(fd_.get(), KVM_SET_LAPIC, &lapic, "KVM_SET_LAPIC", index_);
}

std::string KvmVcpu::describe_state() {
    kvm_regs r{};
    kvm_sregs s{};
    if (::ioctl(fd_.get(), KVM_GET_REGS, &r) < 0 || ::ioctl(fd_.get(), KVM_GET_SREGS, &s) < 0) return {};
    char buf[640];
    std::snprintf(buf, sizeof buf,
                  "vcpu%u: rip=%016llx rsp=%016llx rflags=%08llx rax=%016llx rbx=%016llx rcx=%016llx "
                  "rdx=%016llx rsi=%016llx rdi=%016llx rbp=%016llx cs=%04x(base %llx) ss=%04x "
                  "cr0=%llx cr2=%llx cr3=%llx cr4=%llx efer=%llx",
                  index_, (unsigned long long)r.rip, (unsigned long long)r.rsp, (unsigned long long)r.rflags,
                  (unsigned long long)r.rax, (unsigned long long)r.rbx, (unsigned long long)r.rcx,
                  (unsigned long long)r.rdx, (unsigned long long)r.rsi, (unsigned long long)r.rdi,
                  (unsigned long long)r.rbp, s.cs.selector, (unsigned long long)s.cs.base, s.ss.selector,
                  (unsigned long long)s.cr0, (unsigned long long)s.cr2, (unsigned long long)s.cr3,
                  (unsigned long long)s.cr4, (unsigned long long)s.efer);
    return buf;
}

namespace {

dump::DumpSegment dump_segment(const kvm_segment& k) {
    dump::DumpSegment d;
    d.base = k.base;
    d.limit = k.limit;
    d.selector = k.selector;
    d.type = k.type;
    d.present = k.present;
    d.dpl = k.dpl;
    d.db = k.db;
    d.s = k.s;
    d.l = k.l;
    d.g = k.g;
    d.avl = k.avl;
    d.unusable = k.unusable;
    return d;
}

}  // namespace

dump::VcpuDumpState KvmVcpu::dump_state() {
    kvm_regs r{};
    kvm_sregs s{};
    ioctl_or_throw(fd_.get(), KVM_GET_REGS, &r, "KVM_GET_REGS", index_);
    ioctl_or_throw(fd_.get(), KVM_GET_SREGS, &s, "KVM_GET_SREGS", index_);
    dump::VcpuDumpState d;
    d.index = index_;
    d.rax = r.rax, d.rbx = r.rbx, d.rcx = r.rcx, d.rdx = r.rdx;
    d.rsi = r.rsi, d.rdi = r.rdi, d.rsp = r.rsp, d.rbp = r.rbp;
    d.r8 = r.r8, d.r9 = r.r9, d.r10 = r.r10, d.r11 = r.r11;
    d.r12 = r.r12, d.r13 = r.r13, d.r14 = r.r14, d.r15 = r.r15;
    d.rip = r.rip, d.rflags = r.rflags;
    d.cs = dump_segment(s.cs), d.ds = dump_segment(s.ds), d.es = dump_segment(s.es);
    d.fs = dump_segment(s.fs), d.gs = dump_segment(s.gs), d.ss = dump_segment(s.ss);
    d.tr = dump_segment(s.tr), d.ldt = dump_segment(s.ldt);
    d.gdt = {s.gdt.base, s.gdt.limit};
    d.idt = {s.idt.base, s.idt.limit};
    d.cr0 = s.cr0, d.cr2 = s.cr2, d.cr3 = s.cr3, d.cr4 = s.cr4, d.efer = s.efer;
    kvm_flex::FlexBuffer<kvm_flex::MsrsHeader, kvm_msr_entry> msrs(1);
    msrs.header()->nmsrs = 1;
    msrs.entries()[0].index = kMsrKernelGsBase;
    if (::ioctl(fd_.get(), kvm_flex::kGetMsrs, msrs.data()) == 1) d.kernel_gs_base = msrs.entries()[0].data;
    return d;
}

}  // namespace vmm
