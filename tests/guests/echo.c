// echo.bin: console input through COM1, polled (16550 LSR bit 0, data ready; no interrupts):
// prints "echo: ready\n", then writes back every byte it reads, unchanged, until it has read
// and echoed a 'q'.
// Exit (debug-exit value): kExitOk (0x45) after the 'q'; kExitTimeout (0x46) after
// "\necho: FAIL no input for 60 s (exit 46)\n" when no byte arrives for kIdleSeconds.
#include "lib/debug_exit.h"
#include "lib/guest.h"
#include "lib/io.h"
#include "lib/long_wait.h"
#include "lib/serial.h"

enum {
    kExitOk = 0x45,
    kExitTimeout = 0x46,

    kCom1 = 0x3f8,
    kRegRbr = 0,  // receive buffer (read, DLAB=0)
    kRegLsr = 5,
    kLsrDataReady = 1 << 0,

    kIdleSeconds = 60,
    kPollsPerRound = 50u * 1000 * 1000,
};

void guest_main(uint32_t magic, const struct multiboot_info* mbi) {
    (void)magic;
    (void)mbi;
    serial_puts("echo: ready\n");
    struct long_wait w;
    long_wait_start(&w, kIdleSeconds, kPollsPerRound);
    for (;;) {
        if (inb(kCom1 + kRegLsr) & kLsrDataReady) {
            char c = (char)inb(kCom1 + kRegRbr);
            serial_putc(c);
            if (c == 'q') debug_exit(kExitOk);
            long_wait_start(&w, kIdleSeconds, kPollsPerRound);
            continue;
        }
        if (long_wait_expired(&w)) {
            serial_puts("\necho: FAIL no input for 60 s (exit 46)\n");
            debug_exit(kExitTimeout);
        }
        cpu_relax();
    }
}
