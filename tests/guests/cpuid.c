// cpuid.bin: what the guest sees of the hypervisor through CPUID: leaf 1 ECX bit 31 (the
// hypervisor-present bit) and, when it is set, the hypervisor leaf 0x40000000 (EAX = the highest
// hypervisor leaf, EBX:ECX:EDX = the vendor signature, e.g. "KVMKVMKVM\0\0\0"). A manifest with
// hide_hypervisor must make this guest report bit 0.
// Output on COM1, one line:
//   cpuid: hypervisor bit 0
//   cpuid: hypervisor bit 1, max leaf <hex>, signature "<up to 12 chars>"
// (the signature up to its first NUL, non-printable bytes as '.').
// Exit (debug-exit value): 0x50 | the hypervisor bit.
#include <stdbool.h>

#include "lib/debug_exit.h"
#include "lib/guest.h"
#include "lib/serial.h"

enum {
    kExitBase = 0x50,
    kLeafHypervisor = 0x40000000,
};

struct cpuid_regs {
    uint32_t eax, ebx, ecx, edx;
};

static struct cpuid_regs cpuid(uint32_t leaf) {
    struct cpuid_regs r;
    __asm__ volatile("cpuid" : "=a"(r.eax), "=b"(r.ebx), "=c"(r.ecx), "=d"(r.edx) : "a"(leaf), "c"(0));
    return r;
}

static void put_reg_chars(uint32_t v, bool* done) {
    for (int i = 0; i < 4 && !*done; ++i, v >>= 8) {
        char c = (char)(v & 0xff);
        if (!c) *done = true;
        else serial_putc(c >= 0x20 && c < 0x7f ? c : '.');
    }
}

void guest_main(uint32_t magic, const struct multiboot_info* mbi) {
    (void)magic;
    (void)mbi;
    uint32_t bit = cpuid(1).ecx >> 31;
    serial_puts("cpuid: hypervisor bit ");
    serial_put_dec(bit);
    if (bit) {
        struct cpuid_regs h = cpuid(kLeafHypervisor);
        serial_puts(", max leaf ");
        serial_put_hex(h.eax);
        serial_puts(", signature \"");
        bool done = false;
        put_reg_chars(h.ebx, &done);
        put_reg_chars(h.ecx, &done);
        put_reg_chars(h.edx, &done);
        serial_putc('"');
    }
    serial_putc('\n');
    debug_exit(kExitBase | bit);
}
