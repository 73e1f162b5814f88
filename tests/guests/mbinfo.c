// mbinfo.elf: checks what a multiboot v1 loader hands over (Multiboot 0.6.96 §3.2, §3.3):
// the magic in EAX and, in the info structure at EBX, memory sizes, command line and the
// memory map. Exits with 0x2b if the magic was right, 0x7d if not.
#include "lib/debug_exit.h"
#include "lib/guest.h"
#include "lib/serial.h"

enum { kMagicOk = 0x2b, kMagicBad = 0x7d, kMaxMmapEntries = 1024 };

static uint32_t count_mmap_entries(const struct multiboot_info* mbi) {
    uint32_t count = 0;
    uint32_t offset = 0;
    // Bounded by the length and an entry cap: a bogus size field cannot loop forever.
    while (offset + sizeof(uint32_t) <= mbi->mmap_length && count < kMaxMmapEntries) {
        const struct multiboot_mmap_entry* e = (const void*)(mbi->mmap_addr + offset);
        ++count;
        offset += e->size + sizeof(e->size);
    }
    return count;
}

void guest_main(uint32_t magic, const struct multiboot_info* mbi) {
    if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
        serial_puts("mbinfo: bad magic 0x");
        serial_put_hex(magic);
        serial_putc('\n');
        debug_exit(kMagicBad);
    }
    serial_puts("mbinfo: mem_lower=");
    if (mbi->flags & kMultibootInfoMem) {
        serial_put_dec(mbi->mem_lower);
        serial_puts(" mem_upper=");
        serial_put_dec(mbi->mem_upper);
    } else {
        serial_puts("? mem_upper=?");
    }
    serial_puts(" cmdline=");
    if ((mbi->flags & kMultibootInfoCmdline) && mbi->cmdline) serial_puts((const char*)mbi->cmdline);
    serial_putc('\n');
    serial_puts("mbinfo: mmap entries=");
    serial_put_dec((mbi->flags & kMultibootInfoMmap) ? count_mmap_entries(mbi) : 0);
    serial_putc('\n');
    debug_exit(kMagicOk);
}
