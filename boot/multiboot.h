// Multiboot v1 (the Multiboot Specification 0.6.96): header finder (pure) and loader.
//
// Memory we use (below the areas images may load into, see load_util.h):
//   kMultibootInfoAddr  the multiboot information structure (spec 3.3)
//   kMultibootModsAddr  the module list (one module: the initrd)
//   kMultibootNameAddr  boot loader name; then the module string
//   kMultibootMmapAddr  the memory map (spec 3.3, "mmap_*"), from x86::e820_map
//   x86::kCmdlineAddr   the command line
// Called by load_kernel (kernel_loader.h) on the anchor's main thread; tests call it directly.
#pragma once

#include "boot/boot_setup.h"
#include "devicemodel/bus/guest_memory.h"
#include "x86/memory_layout.h"

#include <cstdint>
#include <optional>
#include <span>

namespace vmm::boot {

inline constexpr std::uint32_t kMultibootHeaderMagic = 0x1badb002;
inline constexpr std::uint32_t kMultibootBootloaderMagic = 0x2badb002;  // in EAX at entry
inline constexpr std::size_t kMultibootSearch = 8192;                   // spec 3.1.1

// Header flags (spec 3.1.2). Bits 0-15 are requirements a loader must meet or refuse.
inline constexpr std::uint32_t kMultibootPageAlign = 1u << 0;  // modules 4 KiB aligned
inline constexpr std::uint32_t kMultibootMemoryInfo = 1u << 1;
inline constexpr std::uint32_t kMultibootVideoMode = 1u << 2;
inline constexpr std::uint32_t kMultibootAoutKludge = 1u << 16;

// Info flags (spec 3.3).
inline constexpr std::uint32_t kMbiMem = 1u << 0, kMbiCmdline = 1u << 2, kMbiMods = 1u << 3,
                               kMbiMmap = 1u << 6, kMbiLoaderName = 1u << 9;

inline constexpr std::uint64_t kMultibootInfoAddr = 0x10000;
inline constexpr std::uint64_t kMultibootModsAddr = 0x10100;
inline constexpr std::uint64_t kMultibootNameAddr = 0x10200;
inline constexpr std::uint64_t kMultibootModStringAddr = 0x10240;
inline constexpr std::uint64_t kMultibootModStringMax = 0x1000 - 0x240;  // with its NUL
inline constexpr std::uint64_t kMultibootMmapAddr = 0x11000;
inline constexpr std::uint64_t kMultibootMmapMax = 0xf000;

struct MultibootHeader {
    std::uint32_t offset = 0;  // of the magic in the file
    std::uint32_t flags = 0, checksum = 0;
    bool checksum_ok = false;  // magic + flags + checksum == 0 (mod 2^32)
    bool fields_present = false;  // the a.out-kludge fields (offsets 12..31) are inside the file
    std::uint32_t header_addr = 0, load_addr = 0, load_end_addr = 0, bss_end_addr = 0, entry_addr = 0;
};

// The first 4-byte aligned header in the first 8192 bytes with a valid checksum; if none has
// one, the first with the magic (checksum_ok false), so the caller can say what is wrong.
std::optional<MultibootHeader> find_multiboot_header(std::span<const std::uint8_t> image);

// The multiboot information structure (spec 3.3) through the VBE fields; framebuffer fields
// (flag 12) are not provided.
struct [[gnu::packed]] MultibootInfo {
    std::uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
    std::uint32_t syms[4];
    std::uint32_t mmap_length, mmap_addr, drives_length, drives_addr, config_table, boot_loader_name, apm_table;
    std::uint32_t vbe_control_info, vbe_mode_info;
    std::uint16_t vbe_mode, vbe_interface_seg, vbe_interface_off, vbe_interface_len;
};
static_assert(sizeof(MultibootInfo) == 88);

struct [[gnu::packed]] MultibootModule {
    std::uint32_t mod_start, mod_end, string, reserved;
};
// One memory map entry; `size` (20) does not count itself (spec 3.3).
struct [[gnu::packed]] MultibootMmapEntry {
    std::uint32_t size;
    std::uint64_t addr, len;
    std::uint32_t type;
};
static_assert(sizeof(MultibootMmapEntry) == 24);

// Loads a multiboot v1 kernel: by the a.out-kludge addresses if header flag 16 is set, else
// as an ELF32 i386 ET_EXEC by its PT_LOAD headers (p_paddr); bss zeroed; the initrd as the
// one module, page aligned after the kernel. Machine state per spec 3.2: EAX = 0x2BADB002,
// EBX = kMultibootInfoAddr, 32-bit flat protected mode, paging off. (KVM has no A20 gate:
// A20 is always on.) Throws vmm::Error naming the file and the problem.
BootSetup load_multiboot(const GuestMemory& mem, const x86::RamLayout& ram, const BootImages& images);

}  // namespace vmm::boot
