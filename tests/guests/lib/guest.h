// The entry contract between lib/entry.S and a guest: entry.S zeroes .bss, loads its own GDT
// (selector 0x10 flat code, 0x18 flat data, like vmm-anchor's protected32 boot), sets a stack and
// calls guest_main on the BSP with interrupts off and paging off.
#pragma once

#include <stdint.h>

#include "lib/multiboot.h"

// magic/mbi are EAX/EBX at entry: MULTIBOOT_BOOTLOADER_MAGIC and the boot information when
// booted as a multiboot kernel; whatever the loader left there for a flat protected32 boot, so
// only a multiboot-only guest may rely on them. If guest_main returns, the guest exits with
// debug-exit value 0x7b.
void guest_main(uint32_t magic, const struct multiboot_info* mbi);

// The flat GDT entry.S loaded; APs (tests/guests/smp_trampoline.asm) use the same selectors.
enum { kGuestCodeSelector = 0x10, kGuestDataSelector = 0x18 };

// For a large buffer that needs no zeroing (the device or the guest fills it before reading):
// it goes with the stacks (lib/guest.ld .stack), which lib/entry.S does not clear, so it costs
// no boot-time instructions.
#define GUEST_NOINIT __attribute__((section(".stack.noinit"), aligned(16)))
