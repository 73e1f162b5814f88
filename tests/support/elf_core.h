// Reading back an ELF core as dump-guest-memory writes it (dump/), for the kvm tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace vmm::test {

// The guest-physical bytes [gpa, gpa+len) of `core` (the PT_LOAD whose p_paddr range holds
// them), or "" if no PT_LOAD does; checks the header too (ELF magic, ET_CORE, EM_X86_64).
std::string core_bytes(const std::string& core, std::uint64_t gpa, std::size_t len);

}  // namespace vmm::test
