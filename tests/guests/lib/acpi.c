#include "lib/acpi.h"

#include "lib/debug_exit.h"
#include "lib/serial.h"
#include "lib/string.h"

enum {
    kRsdpV1Length = 20,  // §5.2.5.3: the ACPI 1.0 part the first checksum covers
    kRsdpV2Length = 36,
    kRsdpMaxLength = 4096,
    kSdtHeaderLength = 36,
    // No VM this guest runs in has a table this large; a garbage length must not make the
    // checksum loop walk through memory for millions of instructions.
    kMaxTableLength = 256 * 1024,
};

// The signature as it sits in memory, read as one little-endian word.
#define SIG(a, b, c, d) ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)(d) << 24)

static uint8_t checksum(const void* p, uint32_t len) {
    const uint8_t* b = p;
    uint32_t sum = 0;
    while (len--) sum += *b++;
    return (uint8_t)sum;
}

static uint32_t signature(const struct acpi_sdt_header* h) { return acpi_u32(h, 0); }

// §5.2.5.1: "RSD PTR " on a 16-byte boundary with a valid ACPI 1.0 checksum. *seen_bad records a
// signature whose checksum was wrong, to tell that apart from no RSDP at all.
static uint32_t scan(uint32_t start, uint32_t end, bool* seen_bad) {
    for (uint32_t a = start; a + kRsdpV2Length <= end; a += 16) {
        const uint32_t* w = (const uint32_t*)a;
        if (w[0] != SIG('R', 'S', 'D', ' ') || w[1] != SIG('P', 'T', 'R', ' ')) continue;
        if (checksum(w, kRsdpV1Length) == 0) return a;
        *seen_bad = true;
    }
    return 0;
}

static enum acpi_status check_table(struct acpi_tables* t, const struct acpi_sdt_header* h) {
    t->bad = h;
    if (h->length < kSdtHeaderLength || h->length > kMaxTableLength) return kAcpiBadTableLength;
    if (checksum(h, h->length) != 0) return kAcpiBadTableChecksum;
    t->bad = 0;
    return kAcpiOk;
}

// The DSDT the FADT names: X_DSDT when the FADT has it and it is set (and below 4 GiB, which a
// paging-off guest can reach), else the 32-bit DSDT field.
static enum acpi_status read_dsdt(struct acpi_tables* t) {
    const struct acpi_sdt_header* f = t->fadt;
    uint32_t addr = f->length >= kFadtDsdt + 4 ? acpi_u32(f, kFadtDsdt) : 0;
    if (f->length >= kFadtXDsdt + 8 && acpi_u32(f, kFadtXDsdt) && !acpi_u32(f, kFadtXDsdt + 4))
        addr = acpi_u32(f, kFadtXDsdt);
    if (!addr) return kAcpiNoDsdt;
    const struct acpi_sdt_header* d = (const void*)addr;
    if (signature(d) != SIG('D', 'S', 'D', 'T')) {
        t->bad = d;
        return kAcpiNoDsdt;
    }
    enum acpi_status s = check_table(t, d);
    if (s == kAcpiOk) t->dsdt = d;
    return s;
}

enum acpi_status acpi_read_tables(struct acpi_tables* t) {
    memset(t, 0, sizeof(*t));
    bool seen_bad = false;
    uint32_t ebda = (uint32_t)(*(const volatile uint16_t*)0x40e) << 4;
    uint32_t rsdp = 0;
    if (ebda >= 0x1000 && ebda < 0xa0000) rsdp = scan(ebda, ebda + 1024, &seen_bad);
    if (!rsdp) rsdp = scan(0xe0000, 0x100000, &seen_bad);
    if (!rsdp) return seen_bad ? kAcpiBadRsdpChecksum : kAcpiNoRsdp;
    t->rsdp = rsdp;
    t->rsdp_revision = acpi_u8((const void*)rsdp, 15);
    memcpy(t->rsdp_oem_id, (const char*)rsdp + 9, 6);

    // §5.2.5.3: revision 2+ adds the length, the XSDT address and a checksum over all of it.
    bool use_xsdt = false;
    if (t->rsdp_revision >= 2) {
        uint32_t len = acpi_u32((const void*)rsdp, 20);
        if (len < kRsdpV2Length || len > kRsdpMaxLength || checksum((const void*)rsdp, len) != 0)
            return kAcpiBadRsdpExtChecksum;
        use_xsdt = acpi_u32((const void*)rsdp, 24) != 0 && acpi_u32((const void*)rsdp, 28) == 0;
    }
    uint32_t root_addr = acpi_u32((const void*)rsdp, use_xsdt ? 24 : 16);
    if (!root_addr) return kAcpiBadRootTable;
    const struct acpi_sdt_header* root = (const void*)root_addr;
    t->root = root;
    t->bad = root;
    if (signature(root) != (use_xsdt ? SIG('X', 'S', 'D', 'T') : SIG('R', 'S', 'D', 'T')) ||
        root->length < kSdtHeaderLength || root->length > kMaxTableLength)
        return kAcpiBadRootTable;
    if (checksum(root, root->length) != 0) return kAcpiBadTableChecksum;
    t->bad = 0;

    // §5.2.7 / §5.2.8: 32- or 64-bit physical addresses after the header (XSDT entries are only
    // 4-byte aligned, hence the byte-wise reads).
    uint32_t entry_size = use_xsdt ? 8 : 4;
    uint32_t n = (root->length - kSdtHeaderLength) / entry_size;
    if (n > kAcpiMaxTables) {
        t->bad = root;
        return kAcpiBadRootTable;
    }
    for (uint32_t i = 0; i < n; ++i) {
        uint32_t off = kSdtHeaderLength + i * entry_size;
        uint32_t addr = acpi_u32(root, off);
        if (!addr || (use_xsdt && acpi_u32(root, off + 4))) {
            t->bad = root;
            return kAcpiBadRootTable;
        }
        const struct acpi_sdt_header* h = (const void*)addr;
        enum acpi_status s = check_table(t, h);
        if (s != kAcpiOk) return s;
        t->tables[t->count++] = h;
        uint32_t sig = signature(h);
        if (sig == SIG('F', 'A', 'C', 'P') && !t->fadt) t->fadt = h;
        if (sig == SIG('A', 'P', 'I', 'C') && !t->madt) t->madt = h;
        if (sig == SIG('M', 'C', 'F', 'G') && !t->mcfg) t->mcfg = h;
    }
    return t->fadt ? read_dsdt(t) : kAcpiOk;
}

void acpi_put_chars(const char* s, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) serial_putc(s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '.');
}

void acpi_fail(const char* who, const struct acpi_tables* t, enum acpi_status status) {
    static const char* const kWhat[] = {
        [kAcpiNoRsdp - kAcpiNoRsdp] = "no RSDP",
        [kAcpiBadRsdpChecksum - kAcpiNoRsdp] = "bad RSDP checksum",
        [kAcpiBadRsdpExtChecksum - kAcpiNoRsdp] = "bad RSDP extended checksum",
        [kAcpiBadRootTable - kAcpiNoRsdp] = "bad root table",
        [kAcpiBadTableChecksum - kAcpiNoRsdp] = "bad checksum of table",
        [kAcpiBadTableLength - kAcpiNoRsdp] = "bad length of table",
        [kAcpiNoFadt - kAcpiNoRsdp] = "no FADT",
        [kAcpiNoMadt - kAcpiNoRsdp] = "no MADT",
        [kAcpiNoMcfg - kAcpiNoRsdp] = "no MCFG",
        [kAcpiBadMadt - kAcpiNoRsdp] = "bad MADT entry",
        [kAcpiNoDsdt - kAcpiNoRsdp] = "no DSDT",
    };
    serial_puts(who);
    serial_puts(": FAIL ");
    uint32_t i = (uint32_t)status - kAcpiNoRsdp;
    serial_puts(i < sizeof(kWhat) / sizeof(kWhat[0]) ? kWhat[i] : "acpi");
    if (t && t->bad) {
        serial_putc(' ');
        acpi_put_chars(t->bad->signature, 4);
        serial_puts(" at ");
        serial_put_hex((uint32_t)t->bad);
    }
    serial_puts(" (exit ");
    serial_put_hex(status);
    serial_puts(")\n");
    debug_exit(status);
}
