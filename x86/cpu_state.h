// BootCpuState: the register state a vCPU starts with, as plain data. Boot loaders compute it
// (pure, unit-tested); the KVM layer applies it with KVM_SET_REGS/SREGS.
#pragma once

#include "devicemodel/bus/guest_memory.h"

#include <cstdint>

namespace vmm::x86 {

struct Segment {
    std::uint64_t base = 0;
    std::uint32_t limit = 0xffff;
    std::uint16_t selector = 0;
    std::uint8_t type = 0;  // descriptor type field
    std::uint8_t present = 1, dpl = 0, db = 0, s = 1, l = 0, g = 0;
};

struct BootCpuState {
    std::uint64_t rax = 0, rbx = 0, rcx = 0, rdx = 0, rsi = 0, rdi = 0, rsp = 0, rbp = 0;
    std::uint64_t rip = 0, rflags = 0x2;
    Segment cs, ds, es, fs, gs, ss;
    std::uint64_t cr0 = 0x60000010, cr3 = 0, cr4 = 0, efer = 0;
    std::uint64_t gdt_base = 0, idt_base = 0;
    std::uint16_t gdt_limit = 0xffff, idt_limit = 0xffff;
};

// CR0/CR4/EFER bits used at boot (Intel SDM vol. 3, 2.5).
inline constexpr std::uint64_t kCr0Pe = 1ull << 0, kCr0Et = 1ull << 4, kCr0Pg = 1ull << 31;
inline constexpr std::uint64_t kCr4Pae = 1ull << 5;
inline constexpr std::uint64_t kEferLme = 1ull << 8, kEferLma = 1ull << 10;

// Selectors of the boot GDT written by write_boot_gdt (Linux boot protocol wants
// __BOOT_CS = 0x10 and __BOOT_DS = 0x18).
inline constexpr std::uint16_t kBootCs32 = 0x10, kBootDs = 0x18, kBootCs64 = 0x08;

// Real mode at cs:ip (ds = es = ss = cs), stack at ss:sp.
BootCpuState real_mode_state(std::uint16_t cs, std::uint16_t ip, std::uint16_t sp);
// 32-bit flat protected mode, paging off (multiboot v1 machine state; Linux 32-bit protocol).
// Needs write_boot_gdt().
BootCpuState protected32_state(std::uint32_t entry);
// 64-bit long mode with the first 4 GiB identity-mapped (Linux 64-bit boot protocol).
// Needs write_boot_gdt() and write_identity_page_tables().
BootCpuState long64_state(std::uint64_t entry);

// Writes the boot GDT at kGdtAddr and an empty IDT at kIdtAddr. Throws if RAM is missing.
void write_boot_gdt(const GuestMemory& mem);
// Identity-maps [0, 4 GiB) with 2 MiB pages at kPml4Addr.. (PML4, PDPT, 4 PDs).
void write_identity_page_tables(const GuestMemory& mem);

}  // namespace vmm::x86
