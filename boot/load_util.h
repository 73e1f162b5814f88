// Helpers shared by the boot loaders (internal to boot/): hex formatting, alignment and the
// "which guest-physical ranges may an image occupy" checks.
#pragma once

#include "x86/memory_layout.h"

#include <cstdint>
#include <string>

namespace vmm::boot::detail {

std::string hex(std::uint64_t v);

// Throws vmm::Error("kernel <name>: <msg>").
[[noreturn]] void fail(const std::string& name, const std::string& msg);

constexpr std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }
constexpr std::uint64_t align_down(std::uint64_t v, std::uint64_t a) { return v / a * a; }

// Guest memory below this is used by the loaders: boot GDT/IDT (0x500), zero page (0x7000),
// boot stack (below 0x8ff0), page tables (0x9000..0xefff), multiboot info (0x10000..0x1ffff),
// command line (0x20000..0x2ffff). Images may load below 1 MiB only in [this, kEbdaStart).
inline constexpr std::uint64_t kLowLoadStart = x86::kCmdlineAddr + x86::kCmdlineMax;

// Throws unless [addr, addr+len) lies in RAM an image may use: [kLowLoadStart, kEbdaStart) or
// [1 MiB, end of RAM below 4 GiB). `what` names the piece ("ELF segment 1").
void check_load_range(const std::string& name, const std::string& what, std::uint64_t addr, std::uint64_t len,
                      const x86::RamLayout& ram);

}  // namespace vmm::boot::detail
