// Multiboot v1 boot information (Multiboot Specification 0.6.96, §3.3). Only the fields the
// guests read; the layout is fixed by the spec.
#pragma once

#include <stdint.h>

#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002u

enum {
    kMultibootInfoMem = 1u << 0,      // mem_lower, mem_upper valid
    kMultibootInfoCmdline = 1u << 2,  // cmdline valid
    kMultibootInfoMmap = 1u << 6      // mmap_length, mmap_addr valid
};

struct multiboot_info {
    uint32_t flags;
    uint32_t mem_lower;  // KiB below 1 MiB
    uint32_t mem_upper;  // KiB above 1 MiB, up to the first hole
    uint32_t boot_device;
    uint32_t cmdline;  // physical address of a NUL-terminated string
    uint32_t mods_count;
    uint32_t mods_addr;
    uint32_t syms[4];
    uint32_t mmap_length;  // bytes
    uint32_t mmap_addr;
};

// Each entry is preceded by its own size (not counting the size field itself), §3.3.
struct multiboot_mmap_entry {
    uint32_t size;
    uint64_t addr;
    uint64_t len;
    uint32_t type;
} __attribute__((packed));
