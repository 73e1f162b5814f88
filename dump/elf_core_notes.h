// The PT_NOTE contents of an x86_64 guest core, as QEMU's dump-guest-memory writes them
// (dump/dump.c write_elf64_notes, target/i386/arch_dump.c): first, for every vCPU in order, an
// NT_PRSTATUS note named "CORE" holding the kernel's x86_64 struct elf_prstatus (gdb reads the
// registers from it); then, for every vCPU, a note named "QEMU" of type 0 holding QEMUCPUState
// (segments, descriptor tables, control registers; the `crash` utility reads it).
// Pure functions; any thread.
#pragma once

#include "dump/vcpu_dump_state.h"

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace vmm::dump {

// sizeof the x86_64 struct elf_prstatus (linux/elfcore.h): pr_pid at 32, pr_reg at 112.
inline constexpr std::size_t kX86_64PrstatusSize = 336;
// sizeof QEMUCPUState with kernel_gs_base (version 1; readers check `size` for the tail).
inline constexpr std::size_t kQemuCpuStateSize = 440;
inline constexpr std::uint32_t kQemuCpuStateVersion = 1;

// Bytes of the note segment for `vcpu_count` vCPUs.
std::size_t x86_64_core_notes_size(std::size_t vcpu_count) noexcept;

// The note segment for `vcpus`, in the given order (QEMU's CPU_FOREACH order: by index).
std::vector<std::uint8_t> build_x86_64_core_notes(std::span<const VcpuDumpState> vcpus);

}  // namespace vmm::dump
