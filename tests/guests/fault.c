// fault.bin: a deliberate triple fault. With an empty IDT, #UD cannot be delivered (#GP), nor
// can the #GP (#DF), nor the #DF: the CPU shuts down (Intel SDM Vol. 3 §6.15, interrupt 8).
// KVM reports KVM_EXIT_SHUTDOWN; QEMU resets, or exits with -no-reboot.
#include "lib/debug_exit.h"
#include "lib/guest.h"
#include "lib/serial.h"

enum { kNoTripleFault = 0x7c };

void guest_main(uint32_t magic, const struct multiboot_info* mbi) {
    (void)magic;
    (void)mbi;
    serial_puts("fault: triple fault now\n");
    static const struct {
        uint16_t limit;
        uint32_t base;
    } __attribute__((packed)) empty_idt = {0, 0};
    __asm__ volatile("lidt %0; ud2" : : "m"(empty_idt) : "memory");
    debug_exit(kNoTripleFault);
}
