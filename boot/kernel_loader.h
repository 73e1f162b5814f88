// load_kernel: the one entry point the anchor calls to put a guest's kernel, initrd and command
// line into guest RAM and get the boot vCPU's state. It reads the files, picks the format by
// header (bzImage, multiboot v1, else the flat binary the caller described) and hands over to
// bzimage.h, multiboot.h or flat_binary.h.
//
// Caller: the anchor's wiring, on its main thread, after guest RAM is mapped and before any
// vCPU runs. Errors: std::system_error naming the path if a file cannot be read; vmm::Error
// naming the file and the problem for anything malformed or not fitting in RAM.
#pragma once

#include "boot/boot_setup.h"
#include "boot/bzimage.h"
#include "boot/flat_binary.h"
#include "boot/multiboot.h"
#include "devicemodel/bus/guest_memory.h"
#include "x86/memory_layout.h"

#include <optional>
#include <span>
#include <string>

namespace vmm::boot {

struct KernelSpec {
    std::string kernel_path;
    std::string initrd_path;  // empty = none
    std::string cmdline;
    std::optional<FlatSpec> flat;  // given: load as a raw binary whatever headers it has
};

// "bzImage" ("HdrS" at 0x202, 0xAA55 at 0x1fe), "multiboot" (a multiboot v1 magic in the
// first 8192 bytes, 4-byte aligned; with a bad checksum it still counts, so the loader can
// say so), or "" for anything else.
std::string detect_format(std::span<const std::uint8_t> image);

BootSetup load_kernel(const GuestMemory& mem, const x86::RamLayout& ram, const KernelSpec& spec);

}  // namespace vmm::boot
