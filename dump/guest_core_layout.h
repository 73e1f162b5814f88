// GuestCoreLayout: where everything goes in an ELF64 core of guest RAM, laid out as QEMU's
// dump-guest-memory with paging=false lays it out for an x86_64 guest (dump/dump.c):
//
//   Elf64_Ehdr       ET_CORE, EM_X86_64, ELFDATA2LSB; no section headers
//   Elf64_Phdr[0]    PT_NOTE: offset of the notes, vaddr = paddr = 0
//   Elf64_Phdr[1..]  PT_LOAD per guest RAM region, in guest-physical order:
//                      p_paddr  = the region's guest physical address
//                      p_vaddr  = p_paddr. With paging=false QEMU builds each mapping with
//                                 virt_addr 0 (qemu_get_guest_simple_memory_mapping), and
//                                 write_elf64_load writes `virt_addr ?: p_paddr`, so current
//                                 QEMU puts the physical address here (older releases wrote 0).
//                      p_offset = where the region's bytes start in the file
//                      p_filesz = p_memsz = the region's size; p_flags = p_align = 0
//   notes            right after the program headers (elf_core_notes.h)
//   memory           right after the notes, the regions back to back, unpadded
//
// Always the x86_64 format: QEMU switches to EM_386 notes when the first vCPU is not in long
// mode; we do not (gdb and crash read an x86_64 core of a 32-bit guest's registers fine).
// Pure functions; any thread.
#pragma once

#include "devicemodel/bus/guest_memory.h"
#include "dump/vcpu_dump_state.h"

#include <cstdint>
#include <span>
#include <vector>

namespace vmm::dump {

struct CoreLoadSegment {
    std::uint64_t gpa = 0;
    std::uint64_t size = 0;
    std::uint64_t file_offset = 0;
};

struct GuestCoreLayout {
    std::uint64_t notes_offset = 0;
    std::uint64_t notes_size = 0;
    std::uint64_t memory_offset = 0;  // = the size of everything before guest RAM
    std::vector<CoreLoadSegment> loads;
    std::uint64_t memory_size = 0;  // sum of the regions: what query-dump calls `total`
    std::uint64_t file_size = 0;    // memory_offset + memory_size
};

// Throws vmm::Error if the regions need more program headers than e_phnum holds (PN_XNUM).
GuestCoreLayout compute_guest_core_layout(const GuestMemory& memory, std::size_t vcpu_count);

// The bytes before guest RAM: ELF header, program headers, notes (layout.memory_offset bytes).
// `vcpus.size()` must be the count the layout was computed for (else vmm::Error).
std::vector<std::uint8_t> build_guest_core_headers(const GuestCoreLayout& layout,
                                                   std::span<const VcpuDumpState> vcpus);

}  // namespace vmm::dump
