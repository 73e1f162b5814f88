// Linux bzImage: the setup-header parser (pure) and the 64-bit boot protocol loader.
//
// References: Documentation/arch/x86/boot.rst ("THE REAL-MODE KERNEL HEADER", "LOADING THE
// REST OF THE KERNEL", "64-bit BOOT PROTOCOL"). Layouts come from <asm/bootparam.h>.
// Called by load_kernel (kernel_loader.h) on the anchor's main thread; tests call both
// functions directly with synthetic images.
#pragma once

#include "boot/boot_setup.h"
#include "devicemodel/bus/guest_memory.h"
#include "x86/memory_layout.h"

#include <cstddef>
#include <cstdint>
#include <span>

namespace vmm::boot {

// What the setup header says. Fields a protocol version predates get the defaults boot.rst
// gives for older kernels (initrd_addr_max 0x37ffffff, cmdline_size 255, pref_address 1 MiB).
struct BzImageInfo {
    std::uint8_t setup_sects = 0;  // effective: 0 in the header means 4
    std::uint16_t protocol = 0;    // e.g. 0x020f for 2.15
    std::uint8_t loadflags = 0;
    std::uint16_t xloadflags = 0;
    std::uint32_t code32_start = 0;
    std::uint32_t kernel_alignment = 0;
    bool relocatable = false;
    std::uint32_t initrd_addr_max = 0;
    std::uint32_t cmdline_size = 0;  // without the terminating NUL
    std::uint64_t pref_address = 0;
    std::uint32_t init_size = 0;  // linear memory the kernel needs from its runtime start
    std::size_t header_end = 0;   // 0x202 + byte at 0x201: end of the setup header to copy
    std::size_t kernel_offset = 0;  // protected-mode payload: (setup_sects + 1) * 512
    std::size_t kernel_size = 0;    // the rest of the file

    bool supports_64bit_entry() const;  // protocol >= 2.12 and XLF_KERNEL_64
};

// Smallest image the parser reads: boot sector plus the setup header through init_size.
inline constexpr std::size_t kBzImageMinSize = 0x264;

// Parses and cross-checks the setup header. Throws vmm::Error saying what is wrong (truncated,
// not a bzImage, setup_sects past the end of the file, ...); the message names no file.
// `head`: the file's first bytes (at least the setup header; the loader reads
// kKernelHeadBytes), `file_size`: the whole file's size, which the payload's bounds are
// checked against.
BzImageInfo parse_bzimage(std::span<const std::uint8_t> head, std::uint64_t file_size);
inline BzImageInfo parse_bzimage(std::span<const std::uint8_t> image) { return parse_bzimage(image, image.size()); }

// Loads a bzImage for the 64-bit entry point: the payload at 1 MiB (or at pref_address when
// the kernel is relocatable and it fits), the zero page at x86::kBootParamsAddr, the command
// line at x86::kCmdlineAddr, the initrd as high as allowed below 4 GiB; GDT and identity page
// tables. Throws vmm::Error naming images.kernel_name (or the initrd) and the problem.
BootSetup load_bzimage(const GuestMemory& mem, const x86::RamLayout& ram, const BootImages& images);

}  // namespace vmm::boot
