// ACPI table reader for the test guests (ACPI 6.4 §5.2): finds the RSDP the way an OS on a PC
// does (§5.2.5.1: the first KiB of the EBDA, whose segment is in the BDA at 0x40e, then the BIOS
// area 0xe0000..0xfffff, both on 16-byte boundaries), checks its checksum (and the extended
// checksum of a revision 2+ RSDP), follows the XSDT (revision 2+ with an XSDT address below
// 4 GiB) or else the RSDT, checks every listed table's checksum and that of the DSDT the FADT
// points to, and records the tables the guests need. Reads memory only; BSP only.
//
// Failures are enum acpi_status values, which the guests pass to debug_exit() unchanged, so the
// exit status names the failing step; acpi_fail() prints "<who>: FAIL <step> (exit <hex>)"
// first (with the offending table's signature where there is one).
#pragma once

#include <stdbool.h>
#include <stdint.h>

enum acpi_status {
    kAcpiOk = 0,
    kAcpiNoRsdp = 0x30,            // no "RSD PTR " anywhere
    kAcpiBadRsdpChecksum = 0x31,   // "RSD PTR " found, but no copy with a valid 20-byte checksum
    kAcpiBadRsdpExtChecksum = 0x32,  // revision 2+: the 36-byte extended checksum is wrong
    kAcpiBadRootTable = 0x33,      // RSDT/XSDT: wrong signature, length, or too many entries
    kAcpiBadTableChecksum = 0x34,  // a table (named in the message) fails its checksum
    kAcpiBadTableLength = 0x35,    // a table's length is below the header or absurdly large
    kAcpiNoFadt = 0x36,
    kAcpiNoMadt = 0x37,
    kAcpiNoMcfg = 0x38,
    kAcpiBadMadt = 0x39,           // an interrupt controller structure overruns the MADT
    kAcpiNoDsdt = 0x3a,            // the FADT has no DSDT address, or it is not a "DSDT"
};

// The common header of every system description table (§5.2.6, Table 5.4).
struct acpi_sdt_header {
    char signature[4];
    uint32_t length;
    uint8_t revision;
    uint8_t checksum;
    char oem_id[6];
    char oem_table_id[8];
    uint32_t oem_revision;
    uint32_t creator_id;
    uint32_t creator_revision;
} __attribute__((packed));

enum { kAcpiMaxTables = 32 };

struct acpi_tables {
    uint32_t rsdp;           // physical address of "RSD PTR "
    uint8_t rsdp_revision;   // 0: ACPI 1.0 (RSDT only), 2+: XSDT
    char rsdp_oem_id[6];
    const struct acpi_sdt_header* root;  // the XSDT or RSDT followed
    uint32_t count;                      // tables listed in root (all checked)
    const struct acpi_sdt_header* tables[kAcpiMaxTables];
    const struct acpi_sdt_header* fadt;  // "FACP" or NULL
    const struct acpi_sdt_header* madt;  // "APIC" or NULL
    const struct acpi_sdt_header* mcfg;  // "MCFG" or NULL
    const struct acpi_sdt_header* dsdt;  // from the FADT (X_DSDT if set), checked; or NULL
    const struct acpi_sdt_header* bad;   // the table a failure is about, if any
};

// Finds and checks everything above. A missing FADT, MADT or MCFG is not an error here (the
// guest decides what it needs); a FADT whose DSDT is missing or not a "DSDT" is kAcpiNoDsdt.
enum acpi_status acpi_read_tables(struct acpi_tables* out);

// Prints "<who>: FAIL <what> (exit <status hex>)\n" (naming t->bad's signature for table
// errors) and ends the guest with debug-exit value `status`.
__attribute__((noreturn)) void acpi_fail(const char* who, const struct acpi_tables* t, enum acpi_status status);

// Prints `n` bytes of s, non-printable ones as '.'.
void acpi_put_chars(const char* s, uint32_t n);

// Little-endian field reads at a byte offset of a table (no alignment assumed).
static inline uint8_t acpi_u8(const void* table, uint32_t off) { return ((const uint8_t*)table)[off]; }
static inline uint16_t acpi_u16(const void* table, uint32_t off) {
    const uint8_t* p = (const uint8_t*)table + off;
    return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t acpi_u32(const void* table, uint32_t off) {
    const uint8_t* p = (const uint8_t*)table + off;
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

// FADT field offsets (§5.2.9, Table 5.9).
enum {
    kFadtDsdt = 40,
    kFadtSciInt = 46,
    kFadtSmiCmd = 48,
    kFadtAcpiEnable = 52,
    kFadtPm1aEvtBlk = 56,
    kFadtPm1aCntBlk = 64,
    kFadtPm1EvtLen = 88,
    kFadtXDsdt = 140,       // 8 bytes, present when the FADT is at least 148 bytes long
    kFadtXPm1aEvtBlk = 148, // generic address structures (12 bytes: space id, ..., address at +4)
    kFadtXPm1aCntBlk = 172,
};
