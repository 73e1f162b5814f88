// acpi.bin: checks the firmware's ACPI tables as an OS would find them (lib/acpi.h): the RSDP
// (both checksums), the XSDT or RSDT, every table's checksum and the DSDT's, then requires a
// FADT ("FACP"), a MADT ("APIC") and an MCFG, and counts the enabled Processor Local APIC
// structures of the MADT (type 0, flags bit 0; ACPI 6.4 §5.2.12.2).
// Output on COM1:
//   acpi: RSDP at <hex> revision <n> oem "<6 chars>"
//   acpi: XSDT at <hex> length <n>, <n> tables        (or RSDT)
//   acpi: <sig> at <hex> length <n> oem "<6 chars>"   (each listed table, in order, then DSDT)
//   acpi: <n> cpus enabled
// Exit (debug-exit value): 0x60 + the number of enabled LAPICs (1..31) on success; a lib/acpi.h
// status (0x30..0x3a) after "acpi: FAIL <step> ..."; kExitCpuCount after
// "acpi: FAIL cpu count <n>".
#include "lib/acpi.h"
#include "lib/debug_exit.h"
#include "lib/guest.h"
#include "lib/serial.h"

enum {
    kExitBase = 0x60,
    kExitCpuCount = 0x3b,  // no enabled LAPIC, or more than 31 (the exit value would overflow)
    kMaxCpus = 0x1f,

    kMadtEntries = 44,  // after the header, Local Interrupt Controller Address and Flags
    kMadtTypeLocalApic = 0,
    kLocalApicEnabled = 1 << 0,
};

static void put_table(const struct acpi_sdt_header* h) {
    serial_puts("acpi: ");
    acpi_put_chars(h->signature, 4);
    serial_puts(" at ");
    serial_put_hex((uint32_t)h);
    serial_puts(" length ");
    serial_put_dec(h->length);
    serial_puts(" oem \"");
    acpi_put_chars(h->oem_id, 6);
    serial_puts("\"\n");
}

void guest_main(uint32_t magic, const struct multiboot_info* mbi) {
    (void)magic;
    (void)mbi;
    static struct acpi_tables t;
    enum acpi_status s = acpi_read_tables(&t);
    if (t.rsdp) {
        serial_puts("acpi: RSDP at ");
        serial_put_hex(t.rsdp);
        serial_puts(" revision ");
        serial_put_dec(t.rsdp_revision);
        serial_puts(" oem \"");
        acpi_put_chars(t.rsdp_oem_id, 6);
        serial_puts("\"\n");
    }
    if (s != kAcpiOk) acpi_fail("acpi", &t, s);

    serial_puts("acpi: ");
    acpi_put_chars(t.root->signature, 4);
    serial_puts(" at ");
    serial_put_hex((uint32_t)t.root);
    serial_puts(" length ");
    serial_put_dec(t.root->length);
    serial_puts(", ");
    serial_put_dec(t.count);
    serial_puts(" tables\n");
    for (uint32_t i = 0; i < t.count; ++i) put_table(t.tables[i]);
    if (t.dsdt) put_table(t.dsdt);

    if (!t.fadt) acpi_fail("acpi", 0, kAcpiNoFadt);
    if (!t.madt) acpi_fail("acpi", 0, kAcpiNoMadt);
    if (!t.mcfg) acpi_fail("acpi", 0, kAcpiNoMcfg);

    // §5.2.12: type, length, then the structure; a length below 2 would loop forever.
    uint32_t cpus = 0;
    const uint8_t* madt = (const uint8_t*)t.madt;
    for (uint32_t off = kMadtEntries; off < t.madt->length;) {
        uint32_t type = madt[off];
        uint32_t len = off + 1 < t.madt->length ? madt[off + 1] : 0;
        if (len < 2 || off + len > t.madt->length || (type == kMadtTypeLocalApic && len < 8)) {
            t.bad = t.madt;
            acpi_fail("acpi", &t, kAcpiBadMadt);
        }
        if (type == kMadtTypeLocalApic && (acpi_u32(madt, off + 4) & kLocalApicEnabled)) ++cpus;
        off += len;
    }
    if (cpus == 0 || cpus > kMaxCpus) {
        serial_puts("acpi: FAIL cpu count ");
        serial_put_dec(cpus);
        serial_puts(" (exit 3b)\n");
        debug_exit(kExitCpuCount);
    }
    serial_puts("acpi: ");
    serial_put_dec(cpus);
    serial_puts(" cpus enabled\n");
    debug_exit(kExitBase + cpus);
}
