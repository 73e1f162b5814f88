// Intel MultiProcessor Specification 1.4 table reader (§4: MP floating pointer and MP
// configuration table). Used by the SMP guest to learn how many CPUs exist, their local APIC IDs
// and where the LAPIC and IOAPICs are. Call from one CPU; reads memory only.
#pragma once

#include <stdbool.h>
#include <stdint.h>

enum { kMpMaxCpus = 64, kMpMaxIoApics = 8 };

struct mp_ioapic {
    uint8_t id;
    uint32_t addr;
};

struct mp_config {
    uint32_t floating_pointer;  // physical address of "_MP_"
    uint32_t lapic_addr;
    uint32_t cpu_count;                 // enabled processor entries (capped at kMpMaxCpus)
    uint8_t cpu_apic_ids[kMpMaxCpus];   // in table order
    bool cpu_is_bsp[kMpMaxCpus];
    uint32_t ioapic_count;
    struct mp_ioapic ioapics[kMpMaxIoApics];
};

enum mp_status {
    kMpOk = 0,
    kMpNoFloatingPointer,  // no "_MP_" with a valid checksum in the EBDA, base memory or BIOS ROM
    kMpDefaultConfig,      // §4.1 feature byte 1 != 0: a default configuration, no table
    kMpBadConfigTable      // "PCMP" missing, bad checksum or truncated entries
};

enum mp_status mptable_read(struct mp_config* out);
