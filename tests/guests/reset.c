// reset.bin: asks the i8042 for a system reset (command 0xFE, pulse the reset line). The VMM
// must reset or stop the VM on that write; if it does not, the guest exits with 0x7e.
#include "lib/debug_exit.h"
#include "lib/guest.h"
#include "lib/io.h"
#include "lib/serial.h"

enum { kI8042Command = 0x64, kI8042PulseReset = 0xfe, kResetIgnored = 0x7e };

void guest_main(uint32_t magic, const struct multiboot_info* mbi) {
    (void)magic;
    (void)mbi;
    serial_puts("reset: pulsing i8042\n");
    outb(kI8042Command, kI8042PulseReset);
    // KVM exits on the outb itself; QEMU TCG acts on its reset request when the vCPU next
    // leaves its loop, which pause forces. A few thousand iterations are plenty for both.
    for (int i = 0; i < 5000; ++i) cpu_relax();
    debug_exit(kResetIgnored);
}
