// Port and MMIO access for the freestanding test guests (32-bit protected mode, paging off).
// Called by the runtime and by guests, on any CPU.
#pragma once

#include <stdint.h>

static inline void outb(uint16_t port, uint8_t v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outw(uint16_t port, uint16_t v) { __asm__ volatile("outw %0, %1" : : "a"(v), "Nd"(port)); }
static inline void outl(uint16_t port, uint32_t v) { __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port)); }

static inline uint8_t inb(uint16_t port) {
    uint8_t v;
    __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint16_t inw(uint16_t port) {
    uint16_t v;
    __asm__ volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}
static inline uint32_t inl(uint16_t port) {
    uint32_t v;
    __asm__ volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
    return v;
}

// Paging is off, so a physical address is the pointer. volatile: every access is a device access.
static inline uint32_t mmio_read32(uint32_t addr) { return *(volatile uint32_t*)addr; }
static inline void mmio_write32(uint32_t addr, uint32_t v) { *(volatile uint32_t*)addr = v; }
static inline uint8_t mmio_read8(uint32_t addr) { return *(volatile uint8_t*)addr; }
static inline void mmio_write8(uint32_t addr, uint8_t v) { *(volatile uint8_t*)addr = v; }
static inline uint16_t mmio_read16(uint32_t addr) { return *(volatile uint16_t*)addr; }
static inline void mmio_write16(uint32_t addr, uint16_t v) { *(volatile uint16_t*)addr = v; }

static inline void cpu_relax(void) { __asm__ volatile("pause" ::: "memory"); }

// Never returns. With the in-kernel irqchip, hlt blocks inside KVM, so a guest ends through
// debug_exit(); this is the parking loop after that (or for an AP that has nothing left to do).
static inline __attribute__((noreturn)) void cpu_park(void) {
    for (;;) __asm__ volatile("cli; hlt" ::: "memory");
}
