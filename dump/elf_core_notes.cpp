#include "dump/elf_core_notes.h"

#include <elf.h>

#include <cstddef>
#include <cstring>
#include <string_view>

namespace vmm::dump {
namespace {

// x86_64 struct user_regs_struct (sys/user.h), the pr_reg of elf_prstatus; QEMU's
// x86_64_user_regs_struct in target/i386/arch_dump.c.
struct X86_64UserRegs {
    std::uint64_t r15, r14, r13, r12, rbp, rbx, r11, r10;
    std::uint64_t r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax;
    std::uint64_t rip, cs, eflags;
    std::uint64_t rsp, ss;
    std::uint64_t fs_base, gs_base;
    std::uint64_t ds, es, fs, gs;
};
static_assert(sizeof(X86_64UserRegs) == 27 * 8);

// struct elf_prstatus with only what a guest dump fills (QEMU's x86_64_elf_prstatus): the
// signal info, times and ppid/pgrp/sid stay zero.
struct X86_64Prstatus {
    std::uint8_t pad1[32];
    std::uint32_t pid;
    std::uint8_t pad2[76];
    X86_64UserRegs regs;
    std::uint8_t pad3[8];  // pr_fpvalid and tail padding
};
static_assert(sizeof(X86_64Prstatus) == kX86_64PrstatusSize);
static_assert(offsetof(X86_64Prstatus, regs) == 112);

struct QemuCpuSegment {
    std::uint32_t selector;
    std::uint32_t limit;
    std::uint32_t flags;
    std::uint32_t pad;
    std::uint64_t base;
};
static_assert(sizeof(QemuCpuSegment) == 24);

// QEMUCPUState (target/i386/arch_dump.c), version 1.
struct QemuCpuState {
    std::uint32_t version;
    std::uint32_t size;
    std::uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
    std::uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    std::uint64_t rip, rflags;
    QemuCpuSegment cs, ds, es, fs, gs, ss;
    QemuCpuSegment ldt, tr, gdt, idt;
    std::uint64_t cr[5];
    std::uint64_t kernel_gs_base;
};
static_assert(sizeof(QemuCpuState) == kQemuCpuStateSize);

constexpr std::string_view kCoreName{"CORE", 5};  // namesz counts the NUL
constexpr std::string_view kQemuName{"QEMU", 5};

constexpr std::size_t align4(std::size_t n) noexcept { return (n + 3) & ~std::size_t{3}; }

constexpr std::size_t note_size(std::size_t name_size, std::size_t desc_size) noexcept {
    return align4(sizeof(Elf64_Nhdr)) + align4(name_size) + align4(desc_size);
}

// Appends one note: header, name and descriptor, each padded to 4 bytes (gABI "Note Section").
void append_note(std::vector<std::uint8_t>& out, std::string_view name, std::uint32_t type,
                 const void* desc, std::size_t desc_size) {
    Elf64_Nhdr hdr{};
    hdr.n_namesz = static_cast<Elf64_Word>(name.size());
    hdr.n_descsz = static_cast<Elf64_Word>(desc_size);
    hdr.n_type = type;
    const std::size_t start = out.size();
    out.resize(start + note_size(name.size(), desc_size), 0);
    std::uint8_t* p = out.data() + start;
    std::memcpy(p, &hdr, sizeof hdr);
    p += align4(sizeof hdr);
    std::memcpy(p, name.data(), name.size());
    p += align4(name.size());
    std::memcpy(p, desc, desc_size);
}

X86_64Prstatus make_prstatus(const VcpuDumpState& v) {
    X86_64Prstatus pr{};
    pr.pid = v.index + 1;
    X86_64UserRegs& r = pr.regs;
    r.r15 = v.r15;
    r.r14 = v.r14;
    r.r13 = v.r13;
    r.r12 = v.r12;
    r.rbp = v.rbp;
    r.rbx = v.rbx;
    r.r11 = v.r11;
    r.r10 = v.r10;
    r.r9 = v.r9;
    r.r8 = v.r8;
    r.rax = v.rax;
    r.rcx = v.rcx;
    r.rdx = v.rdx;
    r.rsi = v.rsi;
    r.rdi = v.rdi;
    r.orig_rax = 0;  // no system call in progress; QEMU writes 0 too
    r.rip = v.rip;
    r.cs = v.cs.selector;
    r.eflags = v.rflags;
    r.rsp = v.rsp;
    r.ss = v.ss.selector;
    r.fs_base = v.fs.base;
    r.gs_base = v.gs.base;
    r.ds = v.ds.selector;
    r.es = v.es.selector;
    r.fs = v.fs.selector;
    r.gs = v.gs.selector;
    return pr;
}

QemuCpuSegment qemu_segment(const DumpSegment& s) {
    return QemuCpuSegment{s.selector, s.limit, qemu_segment_flags(s), 0, s.base};
}

// QEMU keeps GDTR/IDTR in a SegmentCache with only base and limit set.
QemuCpuSegment qemu_segment(const DumpDtable& t) { return QemuCpuSegment{0, t.limit, 0, 0, t.base}; }

QemuCpuState make_qemu_state(const VcpuDumpState& v) {
    QemuCpuState s{};
    s.version = kQemuCpuStateVersion;
    s.size = sizeof(QemuCpuState);
    s.rax = v.rax;
    s.rbx = v.rbx;
    s.rcx = v.rcx;
    s.rdx = v.rdx;
    s.rsi = v.rsi;
    s.rdi = v.rdi;
    s.rsp = v.rsp;
    s.rbp = v.rbp;
    s.r8 = v.r8;
    s.r9 = v.r9;
    s.r10 = v.r10;
    s.r11 = v.r11;
    s.r12 = v.r12;
    s.r13 = v.r13;
    s.r14 = v.r14;
    s.r15 = v.r15;
    s.rip = v.rip;
    s.rflags = v.rflags;
    s.cs = qemu_segment(v.cs);
    s.ds = qemu_segment(v.ds);
    s.es = qemu_segment(v.es);
    s.fs = qemu_segment(v.fs);
    s.gs = qemu_segment(v.gs);
    s.ss = qemu_segment(v.ss);
    s.ldt = qemu_segment(v.ldt);
    s.tr = qemu_segment(v.tr);
    s.gdt = qemu_segment(v.gdt);
    s.idt = qemu_segment(v.idt);
    s.cr[0] = v.cr0;
    s.cr[1] = 0;  // CR1 does not exist
    s.cr[2] = v.cr2;
    s.cr[3] = v.cr3;
    s.cr[4] = v.cr4;
    s.kernel_gs_base = v.kernel_gs_base;
    return s;
}

}  // namespace

std::size_t x86_64_core_notes_size(std::size_t vcpu_count) noexcept {
    return vcpu_count * (note_size(kCoreName.size(), sizeof(X86_64Prstatus)) +
                         note_size(kQemuName.size(), sizeof(QemuCpuState)));
}

std::vector<std::uint8_t> build_x86_64_core_notes(std::span<const VcpuDumpState> vcpus) {
    std::vector<std::uint8_t> out;
    out.reserve(x86_64_core_notes_size(vcpus.size()));
    for (const VcpuDumpState& v : vcpus) {
        const X86_64Prstatus pr = make_prstatus(v);
        append_note(out, kCoreName, NT_PRSTATUS, &pr, sizeof pr);
    }
    for (const VcpuDumpState& v : vcpus) {
        const QemuCpuState s = make_qemu_state(v);
        append_note(out, kQemuName, 0, &s, sizeof s);
    }
    return out;
}

}  // namespace vmm::dump
