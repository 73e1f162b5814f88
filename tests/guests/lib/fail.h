// A test guest's failure: "<who>: FAIL <step> (exit <code hex>)" on COM1, then the debug-exit
// port with `code` (the tests match both the line and the exit status).
#pragma once

#include <stdint.h>

#include "lib/debug_exit.h"
#include "lib/serial.h"

static inline __attribute__((noreturn)) void guest_fail(const char* who, uint32_t code, const char* step) {
    serial_puts(who);
    serial_puts(": FAIL ");
    serial_puts(step);
    serial_puts(" (exit ");
    serial_put_hex(code);
    serial_puts(")\n");
    debug_exit(code);
}
