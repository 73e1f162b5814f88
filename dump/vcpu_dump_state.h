// VcpuDumpState: one vCPU's registers as a guest-memory dump records them, without KVM.
//
// The anchor fills it from KVM_GET_REGS, KVM_GET_SREGS and MSR_KERNEL_GS_BASE; the field names
// follow struct kvm_regs, kvm_sregs and kvm_segment so the copy is one field to one field.
// Plain data: filled on a vCPU thread (or the main thread while the vCPUs are parked), then
// copied into the dump job.
#pragma once

#include <cstdint>

namespace vmm::dump {

// A segment register: the selector and the cached descriptor, attributes broken out as in
// struct kvm_segment.
struct DumpSegment {
    std::uint64_t base = 0;
    std::uint32_t limit = 0;  // in bytes (KVM and QEMU both keep the expanded limit)
    std::uint16_t selector = 0;
    std::uint8_t type = 0;  // 4-bit descriptor type
    std::uint8_t present = 0, dpl = 0, db = 0, s = 0, l = 0, g = 0, avl = 0;
    std::uint8_t unusable = 0;
};

// GDTR / IDTR.
struct DumpDtable {
    std::uint64_t base = 0;
    std::uint16_t limit = 0;
};

struct VcpuDumpState {
    // 0-based vCPU index; the notes carry index + 1 as pr_pid, as QEMU's cpu_index(cpu) does
    // (gdb shows it as "LWP index+1").
    std::uint32_t index = 0;

    std::uint64_t rax = 0, rbx = 0, rcx = 0, rdx = 0, rsi = 0, rdi = 0, rsp = 0, rbp = 0;
    std::uint64_t r8 = 0, r9 = 0, r10 = 0, r11 = 0, r12 = 0, r13 = 0, r14 = 0, r15 = 0;
    std::uint64_t rip = 0, rflags = 0;

    DumpSegment cs, ds, es, fs, gs, ss, tr, ldt;
    DumpDtable gdt, idt;

    std::uint64_t cr0 = 0, cr2 = 0, cr3 = 0, cr4 = 0;
    // Not in QEMU's x86_64 notes; kept so a caller (or a later 32-bit format, which QEMU picks
    // when EFER.LMA is clear) can tell long mode from legacy mode.
    std::uint64_t efer = 0;
    std::uint64_t kernel_gs_base = 0;  // MSR 0xc0000102
};

// The attribute bits as QEMU's SegmentCache.flags holds them, i.e. the high dword of a
// descriptor (SDM vol. 3 §3.4.5): type bits 8-11, S 12, DPL 13-14, P 15, AVL 20, L 21, D/B 22,
// G 23. QEMU's target/i386/kvm/kvm.c get_seg() builds it from kvm_segment the same way, with
// P cleared for an unusable segment; this is the `flags` of a segment in the "QEMU" note.
constexpr std::uint32_t qemu_segment_flags(const DumpSegment& seg) noexcept {
    return (std::uint32_t{seg.type} & 0xf) << 8 | (seg.s ? 1u << 12 : 0u) |
           (std::uint32_t{seg.dpl} & 3) << 13 | (seg.present && !seg.unusable ? 1u << 15 : 0u) |
           (seg.avl ? 1u << 20 : 0u) | (seg.l ? 1u << 21 : 0u) | (seg.db ? 1u << 22 : 0u) |
           (seg.g ? 1u << 23 : 0u);
}

}  // namespace vmm::dump
