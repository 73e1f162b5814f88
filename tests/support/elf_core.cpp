#include "tests/support/elf_core.h"

#include <elf.h>
#include <gtest/gtest.h>

#include <cstring>

namespace vmm::test {

std::string core_bytes(const std::string& core, std::uint64_t gpa, std::size_t len) {
    if (core.size() < sizeof(Elf64_Ehdr)) return {};
    Elf64_Ehdr eh;
    std::memcpy(&eh, core.data(), sizeof eh);
    EXPECT_EQ(std::memcmp(eh.e_ident, ELFMAG, SELFMAG), 0);
    EXPECT_EQ(eh.e_type, ET_CORE);
    EXPECT_EQ(eh.e_machine, EM_X86_64);
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
        Elf64_Phdr ph;
        const std::size_t at = eh.e_phoff + i * sizeof ph;
        if (at + sizeof ph > core.size()) return {};
        std::memcpy(&ph, core.data() + at, sizeof ph);
        if (ph.p_type != PT_LOAD || gpa < ph.p_paddr || gpa + len > ph.p_paddr + ph.p_filesz) continue;
        const std::size_t off = ph.p_offset + (gpa - ph.p_paddr);
        return off + len <= core.size() ? core.substr(off, len) : std::string();
    }
    return {};
}

}  // namespace vmm::test
