#include "lib/serial.h"

#include "lib/io.h"

enum {
    kCom1 = 0x3f8,
    kRegThr = 0,           // transmit holding register (write, DLAB=0)
    kRegLsr = 5,           // line status register
    kLsrThrEmpty = 1 << 5  // THRE: the THR can take a byte
};

void serial_putc(char c) {
    // Bounded: a UART that never reports THRE must not hang the guest; the byte is then
    // written anyway (an emulated 16550 accepts it).
    for (uint32_t i = 0; i < 100000 && !(inb(kCom1 + kRegLsr) & kLsrThrEmpty); ++i) cpu_relax();
    outb(kCom1 + kRegThr, (uint8_t)c);
}

void serial_puts(const char* s) {
    while (*s) serial_putc(*s++);
}

void serial_put_dec(uint32_t v) {
    char buf[10];  // 4294967295 has 10 digits
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) serial_putc(buf[--n]);
}

void serial_put_hex(uint32_t v) {
    int shift = 28;
    while (shift > 0 && !(v >> shift)) shift -= 4;
    for (; shift >= 0; shift -= 4) serial_putc("0123456789abcdef"[(v >> shift) & 0xf]);
}
