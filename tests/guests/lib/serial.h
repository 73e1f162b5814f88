// COM1 (16550 at 0x3f8) output for the test guests. Bytes are written as given: no "\n" ->
// "\r\n" translation, so the host sees exactly what the guest printed. Not locked: on SMP guests
// only one CPU prints.
#pragma once

#include <stdint.h>

void serial_putc(char c);
void serial_puts(const char* s);
void serial_put_dec(uint32_t v);
// Lower-case hex without a "0x" prefix and without leading zeros ("0" for zero).
void serial_put_hex(uint32_t v);
