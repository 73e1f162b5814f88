// Raw binaries (test guests, firmware-like blobs): copied as-is to FlatSpec::load_address and
// entered in the mode FlatSpec::mode asks for. No header, so nothing to validate but ranges.
// Called by load_kernel (kernel_loader.h) on the anchor's main thread; tests call it directly.
#pragma once

#include "boot/boot_setup.h"
#include "devicemodel/bus/guest_memory.h"
#include "x86/memory_layout.h"

namespace vmm::boot {

// Entry state (rsp = x86::kBootStackTop in every mode):
//   Real16:      entry < 1 MiB; cs = (entry >> 4) & 0xf000, ip = entry - cs * 16; ds = es = cs;
//                ss = 0 so that ss:sp is the boot stack whatever cs is.
//   Protected32: entry < 4 GiB; flat 32-bit segments from the boot GDT (written).
//   Long64:      entry < 4 GiB; boot GDT and the 4 GiB identity map (written).
// The image must lie in guest RAM and, in the modes that need them, must not overlap the boot
// GDT/IDT or the page tables. The command line, if any, is copied NUL-terminated to
// x86::kCmdlineAddr; an initrd is refused (a raw binary would not know where it is).
// Throws vmm::Error naming the file and the problem.
BootSetup load_flat(const GuestMemory& mem, const x86::RamLayout& ram, const BootImages& images, const FlatSpec& flat);

}  // namespace vmm::boot
