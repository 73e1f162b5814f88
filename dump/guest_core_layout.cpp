#include "dump/guest_core_layout.h"

#include "common/error.h"
#include "dump/elf_core_notes.h"

#include <elf.h>

#include <cstring>
#include <string>

namespace vmm::dump {

GuestCoreLayout compute_guest_core_layout(const GuestMemory& memory, std::size_t vcpu_count) {
    const auto& regions = memory.regions();
    // One PT_NOTE plus one PT_LOAD per region; QEMU would switch to the PN_XNUM section-header
    // escape beyond this, which no memory map of ours needs.
    if (regions.size() + 1 >= PN_XNUM)
        throw Error("guest core: " + std::to_string(regions.size()) + " memory regions need too many program headers");

    GuestCoreLayout layout;
    const std::uint64_t phnum = regions.size() + 1;
    layout.notes_offset = sizeof(Elf64_Ehdr) + phnum * sizeof(Elf64_Phdr);
    layout.notes_size = x86_64_core_notes_size(vcpu_count);
    layout.memory_offset = layout.notes_offset + layout.notes_size;
    std::uint64_t offset = layout.memory_offset;
    layout.loads.reserve(regions.size());
    for (const GuestRegion& r : regions) {
        layout.loads.push_back(CoreLoadSegment{r.gpa, r.size, offset});
        offset += r.size;
        layout.memory_size += r.size;
    }
    layout.file_size = offset;
    return layout;
}

std::vector<std::uint8_t> build_guest_core_headers(const GuestCoreLayout& layout,
                                                   std::span<const VcpuDumpState> vcpus) {
    const std::vector<std::uint8_t> notes = build_x86_64_core_notes(vcpus);
    if (notes.size() != layout.notes_size)
        throw Error("guest core: layout computed for a different number of vCPUs");

    std::vector<std::uint8_t> out(layout.memory_offset, 0);
    std::uint8_t* p = out.data();

    // dump/dump.c write_elf64_header.
    Elf64_Ehdr eh{};
    std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_CORE;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_ehsize = sizeof(Elf64_Ehdr);
    eh.e_phoff = sizeof(Elf64_Ehdr);
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = static_cast<Elf64_Half>(layout.loads.size() + 1);
    std::memcpy(p, &eh, sizeof eh);
    p += sizeof eh;

    // write_elf64_note.
    Elf64_Phdr note{};
    note.p_type = PT_NOTE;
    note.p_offset = layout.notes_offset;
    note.p_filesz = layout.notes_size;
    note.p_memsz = layout.notes_size;
    std::memcpy(p, &note, sizeof note);
    p += sizeof note;

    // write_elf64_load.
    for (const CoreLoadSegment& seg : layout.loads) {
        Elf64_Phdr ph{};
        ph.p_type = PT_LOAD;
        ph.p_offset = seg.file_offset;
        ph.p_paddr = seg.gpa;
        ph.p_vaddr = seg.gpa;
        ph.p_filesz = seg.size;
        ph.p_memsz = seg.size;
        std::memcpy(p, &ph, sizeof ph);
        p += sizeof ph;
    }

    if (!notes.empty()) std::memcpy(out.data() + layout.notes_offset, notes.data(), notes.size());
    return out;
}

}  // namespace vmm::dump
