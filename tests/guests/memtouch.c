// memtouch.bin: touches guest RAM a page at a time, the way a guest's first use of its memory
// does, so a benchmark can time what each VMM's backing of guest RAM costs per MiB first touched
// (bench/vm_bench.py memtouch: 4 KiB pages fault once per page, 2 MiB pages once per 2 MiB).
// memtouch_options.mib (patched by tests: find the 16-byte tag, the u32s follow) MiB from
// kBase up: one 32-bit store at the start of every 4 KiB page (its own address), then every
// page read back. The stores are the only work, a few instructions a page.
// Output on COM1:
//   memtouch: <N> MiB ok                  (N = 0: nothing touched, the same exit path)
// Exit (debug-exit value): kExitOk (0x4d), or none with memtouch_options.hold set;
// kExitMismatch (0x4c) after "memtouch: FAIL page <addr>" when a page does not read back what
// was stored; kExitTooBig (0x4b) after "memtouch: FAIL <N> MiB is past the RAM the multiboot
// info reports" (or past 3 GiB, where a flat boot gives no RAM size).
#include "lib/debug_exit.h"
#include "lib/guest.h"
#include "lib/serial.h"

struct memtouch_options {
    char tag[16];
    uint32_t mib;
    uint32_t hold;  // non-zero: stay (cli; hlt) after the line instead of exiting, for a test to look
};
volatile struct memtouch_options memtouch_options __attribute__((used)) = {"VMM-MEMTOUCH:xxx", 0, 0};

enum {
    kExitOk = 0x4d,
    kExitMismatch = 0x4c,
    kExitTooBig = 0x4b,
    kBase = 0x400000,  // above the image, its stack and the low firmware areas
    kPage = 4096,
    kMaxMib = 3068,  // up to 3 GiB: below the PCI hole, no overflow of the 32-bit addresses
};

void guest_main(uint32_t magic, const struct multiboot_info* mbi) {
    const uint32_t mib = memtouch_options.mib;
    const uint32_t end = kBase + (mib < kMaxMib ? mib : kMaxMib) * (1u << 20);
    // Booted as a multiboot kernel (QEMU -kernel), the RAM size is known: mem_upper is the KiB
    // above 1 MiB (multiboot 0.6.96 §3.3). A flat boot passes no such information.
    if (mib > kMaxMib || (magic == MULTIBOOT_BOOTLOADER_MAGIC && (mbi->flags & kMultibootInfoMem) && mib > 0 &&
                          end > 0x100000u + mbi->mem_upper * 1024u)) {
        serial_puts("memtouch: FAIL ");
        serial_put_dec(mib);
        serial_puts(" MiB is past the RAM the multiboot info reports\n");
        debug_exit(kExitTooBig);
    }
    for (uint32_t a = kBase; a < end; a += kPage) *(volatile uint32_t*)a = a;
    for (uint32_t a = kBase; a < end; a += kPage) {
        if (*(volatile uint32_t*)a != a) {
            serial_puts("memtouch: FAIL page ");
            serial_put_hex(a);
            serial_putc('\n');
            debug_exit(kExitMismatch);
        }
    }
    serial_puts("memtouch: ");
    serial_put_dec(mib);
    serial_puts(" MiB ok\n");
    if (memtouch_options.hold) cpu_park();  // a test reads the VMM's view of the RAM, then ends it
    debug_exit(kExitOk);
}
