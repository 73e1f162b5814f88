// pci_probe.bin: lists every function on PCI bus 0 through configuration mechanism #1
// (lib/pci.h) and exits with their number as the debug-exit value. Reads configuration space
// only: no BAR is sized or moved.
// Output on COM1, one line per function in bdf order, then a total:
//   pci 00:00.0 8086:29c0 class 060000
//   ...
//   pci_probe: 4 devices
#include "lib/debug_exit.h"
#include "lib/guest.h"
#include "lib/pci.h"
#include "lib/serial.h"

// Fixed-width lower-case hex, as lspci prints it.
static void put_hex_width(uint32_t v, int digits) {
    for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4) serial_putc("0123456789abcdef"[(v >> shift) & 0xf]);
}

static bool print_device(const struct pci_dev* d, void* ctx) {
    (void)ctx;
    serial_puts("pci ");
    put_hex_width(d->bus, 2);
    serial_putc(':');
    put_hex_width(d->slot, 2);
    serial_putc('.');
    put_hex_width(d->fn, 1);
    serial_putc(' ');
    put_hex_width(d->vendor, 4);
    serial_putc(':');
    put_hex_width(d->device, 4);
    serial_puts(" class ");
    put_hex_width(d->class_code, 6);
    serial_putc('\n');
    return true;
}

void guest_main(uint32_t magic, const struct multiboot_info* mbi) {
    (void)magic;
    (void)mbi;
    uint32_t count = pci_scan_bus0(print_device, 0);
    serial_puts("pci_probe: ");
    serial_put_dec(count);
    serial_puts(" devices\n");
    debug_exit(count);
}
