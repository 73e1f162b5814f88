// hello.bin / hello.elf: the smallest end-to-end guest. Prints one line on COM1 and exits with
// debug-exit value 0 (status 1). Works with or without the multiboot magic.
#include "lib/debug_exit.h"
#include "lib/guest.h"
#include "lib/serial.h"

void guest_main(uint32_t magic, const struct multiboot_info* mbi) {
    (void)magic;
    (void)mbi;
    serial_puts("Hello from the vmm test guest!\n");
    debug_exit(0);
}
