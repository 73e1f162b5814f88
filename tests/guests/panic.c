// panic.bin: a guest kernel panic as Linux reports it through QEMU's ISA pvpanic device
// (docs/specs/pvpanic.rst in QEMU: port 0x505, a read returns the supported events, writing
// bit 0 reports PANICKED). Before the report it leaves kPatternBytes of a recognisable pattern
// at physical kPatternAddr, so a test can check that a VMM's post-mortem view of guest memory
// (a dump, QMP pmemsave) is the guest's memory.
// Output on COM1:
//   panic: pvpanic caps <hex>
//   panic: pattern at 200000, reporting
// then the VMM is expected to act (QEMU: GUEST_PANICKED event, -action panic=...; vmm-anchor:
// exit status 6). If the guest is still running kGraceNs later it says so and exits.
// Exit (debug-exit value): kExitStillRunning (0x59) after "panic: still running after pvpanic
// (exit 59)"; kExitNoPvpanic (0x58) after "panic: FAIL no pvpanic (exit 58)" when the port reads
// 0xff or lacks the PANICKED bit.
#include "lib/deadline.h"
#include "lib/debug_exit.h"
#include "lib/guest.h"
#include "lib/io.h"
#include "lib/serial.h"

enum {
    kExitNoPvpanic = 0x58,
    kExitStillRunning = 0x59,

    kPvpanicPort = 0x505,
    kPvpanicPanicked = 1 << 0,
    kPatternAddr = 0x200000,
    kPatternBytes = 64,
};
#define kGraceNs 2000000000u

static const char kPattern[] = "VMM-PANIC-PATTERN-";

void guest_main(uint32_t magic, const struct multiboot_info* mbi) {
    (void)magic;
    (void)mbi;
    uint8_t caps = inb(kPvpanicPort);
    serial_puts("panic: pvpanic caps ");
    serial_put_hex(caps);
    serial_putc('\n');
    if (caps == 0xff || !(caps & kPvpanicPanicked)) {
        serial_puts("panic: FAIL no pvpanic (exit 58)\n");
        debug_exit(kExitNoPvpanic);
    }
    volatile char* dst = (volatile char*)kPatternAddr;
    for (uint32_t i = 0; i < kPatternBytes; ++i) dst[i] = kPattern[i % (sizeof(kPattern) - 1)];
    serial_puts("panic: pattern at 200000, reporting\n");
    outb(kPvpanicPort, kPvpanicPanicked);

    struct deadline d;
    deadline_start(&d, kGraceNs, 100u * 1000 * 1000);
    while (!deadline_expired(&d)) cpu_relax();
    serial_puts("panic: still running after pvpanic (exit 59)\n");
    debug_exit(kExitStillRunning);
}
