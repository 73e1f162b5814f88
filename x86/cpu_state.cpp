#include "x86/cpu_state.h"

#include "x86/memory_layout.h"

#include <array>

namespace vmm::x86 {

namespace {

// A GDT descriptor from base, limit (20 bits) and the flags/access word, the layout in Intel
// SDM vol. 3, 3.4.5: flags (G, D/B, L, AVL) in bits 12..15 of `flags`, access byte in 0..7.
constexpr std::uint64_t gdt_entry(std::uint16_t flags, std::uint32_t base, std::uint32_t limit) {
    return ((std::uint64_t(base) & 0xff000000ull) << (56 - 24)) | ((std::uint64_t(flags) & 0x0000f0ffull) << 40) |
           ((std::uint64_t(limit) & 0x000f0000ull) << (48 - 16)) | ((std::uint64_t(base) & 0x00ffffffull) << 16) |
           (std::uint64_t(limit) & 0x0000ffffull);
}

// Index 1: 64-bit code, 2: 32-bit code, 3: flat data.
constexpr std::array<std::uint64_t, 4> kBootGdt = {
    0,
    gdt_entry(0xa09b, 0, 0xfffff),  // L=1, G=1, P, code exec/read, accessed
    gdt_entry(0xc09b, 0, 0xfffff),  // D=1, G=1, P, code exec/read, accessed
    gdt_entry(0xc093, 0, 0xfffff),  // D=1, G=1, P, data read/write, accessed
};

Segment segment_from(std::uint16_t selector) {
    const std::uint64_t e = kBootGdt[selector >> 3];
    Segment s;
    s.base = ((e >> 16) & 0xffffff) | (((e >> 56) & 0xff) << 24);
    s.limit = std::uint32_t((e & 0xffff) | (((e >> 48) & 0xf) << 16));
    s.g = (e >> 55) & 1;
    if (s.g) s.limit = (s.limit << 12) | 0xfff;  // KVM wants the byte-granular limit
    s.selector = selector;
    s.type = (e >> 40) & 0xf;
    s.s = (e >> 44) & 1;
    s.dpl = (e >> 45) & 3;
    s.present = (e >> 47) & 1;
    s.l = (e >> 53) & 1;
    s.db = (e >> 54) & 1;
    return s;
}

void set_flat_protected(BootCpuState& st, std::uint16_t code_selector) {
    st.cs = segment_from(code_selector);
    st.ds = st.es = st.fs = st.gs = st.ss = segment_from(kBootDs);
    st.gdt_base = kGdtAddr;
    st.gdt_limit = sizeof(kBootGdt) - 1;
    st.idt_base = kIdtAddr;
    st.idt_limit = 0;
    st.cr0 = kCr0Pe | kCr0Et;
}

}  // namespace

BootCpuState real_mode_state(std::uint16_t cs, std::uint16_t ip, std::uint16_t sp) {
    BootCpuState st;
    Segment seg;
    seg.selector = cs;
    seg.base = std::uint64_t(cs) << 4;
    seg.limit = 0xffff;
    seg.type = 3;  // data read/write, accessed
    st.ds = st.es = st.fs = st.gs = st.ss = seg;
    seg.type = 0xb;  // code exec/read, accessed
    st.cs = seg;
    st.rip = ip;
    st.rsp = sp;
    st.cr0 = 0x60000010;  // reset value
    return st;
}

BootCpuState protected32_state(std::uint32_t entry) {
    BootCpuState st;
    set_flat_protected(st, kBootCs32);
    st.rip = entry;
    return st;
}

BootCpuState long64_state(std::uint64_t entry) {
    BootCpuState st;
    set_flat_protected(st, kBootCs64);
    st.rip = entry;
    st.cr0 = kCr0Pe | kCr0Et | kCr0Pg;
    st.cr3 = kPml4Addr;
    st.cr4 = kCr4Pae;
    st.efer = kEferLme | kEferLma;
    return st;
}

void write_boot_gdt(const GuestMemory& mem) {
    mem.write_or_throw(kGdtAddr, kBootGdt.data(), sizeof kBootGdt, "boot GDT");
    const std::uint64_t empty_idt = 0;
    mem.write_or_throw(kIdtAddr, &empty_idt, sizeof empty_idt, "boot IDT");
}

void write_identity_page_tables(const GuestMemory& mem) {
    constexpr std::uint64_t kPresentRw = 0x3, kPageSize = 0x80;
    const std::uint64_t pml4e = kPdptAddr | kPresentRw;
    mem.write_or_throw(kPml4Addr, &pml4e, sizeof pml4e, "PML4");
    for (std::uint64_t i = 0; i < 4; ++i) {
        const std::uint64_t pdpte = (kPdAddr + i * 0x1000) | kPresentRw;
        mem.write_or_throw(kPdptAddr + i * 8, &pdpte, sizeof pdpte, "PDPT");
    }
    for (std::uint64_t i = 0; i < 4 * 512; ++i) {
        const std::uint64_t pde = (i << 21) | kPresentRw | kPageSize;
        mem.write_or_throw(kPdAddr + i * 8, &pde, sizeof pde, "page directory");
    }
}

}  // namespace vmm::x86
