// powerdown.bin: the fixed-hardware ACPI power button and soft-off (ACPI 6.4 §4.8.3, §7.4.2),
// as an OS drives them, polled: finds the FADT and DSDT (lib/acpi.h), reads PM1a_EVT_BLK,
// PM1a_CNT_BLK, PM1_EVT_LEN and SCI_INT from the FADT and SLP_TYPa of \_S5 from the DSDT,
// switches to ACPI mode through SMI_CMD if SCI_EN is clear (firmware with SMM, e.g. SeaBIOS),
// sets PWRBTN_EN, and polls PWRBTN_STS for up to kButtonWaitSeconds (30). On the press it clears the
// status and writes SLP_TYPa | SLP_EN to PM1a_CNT: the VM should power off.
//
// \_S5 is not evaluated: the DSDT is scanned for the NameSeg "_S5_" followed by a PackageOp
// (0x12), and the package's first element is decoded as BytePrefix (0x0a) <byte>, ZeroOp or
// OneOp, which is how QEMU's and vmm-anchor's DSDTs encode it.
// Output on COM1:
//   powerdown: PM1a_EVT_BLK <hex> len <n>, PM1a_CNT_BLK <hex>, SCI <n>, S5 SLP_TYPa <n>
//   powerdown: ACPI mode enabled        (only when SCI_EN was clear and SMI_CMD is set)
//   powerdown: waiting
//   powerdown: button
// Exit (debug-exit value): none on success (the VM powers off); a lib/acpi.h status (0x30..0x3a)
// or a kExit* below after "powerdown: FAIL <step> (exit <hex>)".
#include "lib/acpi.h"
#include "lib/debug_exit.h"
#include "lib/fail.h"
#include "lib/deadline.h"
#include "lib/guest.h"
#include "lib/io.h"
#include "lib/long_wait.h"
#include "lib/serial.h"

enum {
    kExitNoPm1 = 0x20,        // the FADT has no PM1a event or control block
    kExitNoS5 = 0x21,         // no decodable \_S5 package in the DSDT
    kExitAcpiEnable = 0x22,   // SCI_EN did not come on after the ACPI_ENABLE write to SMI_CMD
    kExitNoButton = 0x23,     // no PWRBTN_STS within kButtonWaitSeconds
    kExitStillRunning = 0x24, // the S5 write did not power the VM off

    kPwrbtn = 1 << 8,     // PM1_STS.PWRBTN_STS and PM1_EN.PWRBTN_EN (Tables 4.16, 4.17)
    kSciEn = 1 << 0,      // PM1_CNT (Table 4.18)
    kSlpTypShift = 10,
    kSlpTypMask = 7 << kSlpTypShift,
    kSlpEn = 1 << 13,

    kAmlPackageOp = 0x12,
    kAmlBytePrefix = 0x0a,
    kAmlZeroOp = 0x00,
    kAmlOneOp = 0x01,
    kGasSystemIo = 1,

    kButtonWaitSeconds = 30,
    kPollsPerRound = 50u * 1000 * 1000,
};

// The button wait in seconds; tests/integration/guests_acpi_qemu.sh patches the u32 after the
// 16-byte tag to test the timeout without waiting kButtonWaitSeconds.
static volatile struct {
    char tag[16];
    uint32_t seconds;
} button_wait __attribute__((used)) = {"VMM-PWR-WAIT-SEC", kButtonWaitSeconds};

static __attribute__((noreturn)) void fail(uint32_t code, const char* step) {
    guest_fail("powerdown", code, step);
}

// A PM1 block: the 32-bit FADT field, else the X_ generic address structure when it is in
// system I/O space (ACPI 2.0+ FADTs may set only that).
static uint32_t pm1_block(const struct acpi_sdt_header* fadt, uint32_t field, uint32_t x_field) {
    uint32_t port = acpi_u32(fadt, field);
    if (!port && fadt->length >= x_field + 12 && acpi_u8(fadt, x_field) == kGasSystemIo)
        port = acpi_u32(fadt, x_field + 4);
    return port;
}

// SLP_TYPa of \_S5 (§7.4.2: Package {SLP_TYPa, SLP_TYPb, reserved, reserved}), or -1.
static int32_t s5_slp_typ(const struct acpi_sdt_header* dsdt) {
    const uint8_t* p = (const uint8_t*)dsdt;
    const uint32_t len = dsdt->length;
    for (uint32_t i = sizeof(*dsdt); i + 8 <= len; ++i) {
        if (p[i] != '_' || p[i + 1] != 'S' || p[i + 2] != '5' || p[i + 3] != '_' || p[i + 4] != kAmlPackageOp)
            continue;
        // PkgLength (§20.2.4): bits 7:6 of the lead byte count the bytes that follow it; then
        // NumElements, then the first element.
        uint32_t at = i + 5;
        at += 1 + (p[at] >> 6);
        at += 1;
        if (at + 2 > len) return -1;
        if (p[at] == kAmlBytePrefix) return p[at + 1];
        if (p[at] == kAmlZeroOp) return 0;
        if (p[at] == kAmlOneOp) return 1;
        return -1;
    }
    return -1;
}

void guest_main(uint32_t magic, const struct multiboot_info* mbi) {
    (void)magic;
    (void)mbi;
    static struct acpi_tables t;
    enum acpi_status s = acpi_read_tables(&t);
    if (s != kAcpiOk) acpi_fail("powerdown", &t, s);
    if (!t.fadt) acpi_fail("powerdown", 0, kAcpiNoFadt);
    if (!t.dsdt) acpi_fail("powerdown", 0, kAcpiNoDsdt);

    const struct acpi_sdt_header* f = t.fadt;
    uint32_t evt = pm1_block(f, kFadtPm1aEvtBlk, kFadtXPm1aEvtBlk);
    uint32_t cnt = pm1_block(f, kFadtPm1aCntBlk, kFadtXPm1aCntBlk);
    uint32_t evt_len = acpi_u8(f, kFadtPm1EvtLen);
    if (!evt || !cnt || evt > 0xffff || cnt > 0xffff || evt_len < 4) fail(kExitNoPm1, "no PM1a blocks");
    int32_t slp_typ = s5_slp_typ(t.dsdt);
    serial_puts("powerdown: PM1a_EVT_BLK ");
    serial_put_hex(evt);
    serial_puts(" len ");
    serial_put_dec(evt_len);
    serial_puts(", PM1a_CNT_BLK ");
    serial_put_hex(cnt);
    serial_puts(", SCI ");
    serial_put_dec(acpi_u16(f, kFadtSciInt));
    serial_puts(", S5 SLP_TYPa ");
    if (slp_typ < 0 || slp_typ > 7) {
        serial_puts("?\n");
        fail(kExitNoS5, "no _S5");
    }
    serial_put_dec((uint32_t)slp_typ);
    serial_putc('\n');

    // §16.3.1 (legacy/ACPI mode): an OS writes ACPI_ENABLE to SMI_CMD and waits for SCI_EN.
    const uint16_t pm1_sts = (uint16_t)evt, pm1_en = (uint16_t)(evt + evt_len / 2), pm1_cnt = (uint16_t)cnt;
    uint32_t smi_cmd = acpi_u32(f, kFadtSmiCmd);
    uint8_t acpi_enable = acpi_u8(f, kFadtAcpiEnable);
    if (!(inw(pm1_cnt) & kSciEn) && smi_cmd && smi_cmd <= 0xffff && acpi_enable) {
        outb((uint16_t)smi_cmd, acpi_enable);
        struct deadline d;
        deadline_start(&d, 1000u * 1000 * 1000, 1000000);
        while (!(inw(pm1_cnt) & kSciEn))
            if (deadline_expired(&d)) fail(kExitAcpiEnable, "ACPI enable");
        serial_puts("powerdown: ACPI mode enabled\n");
    }

    outw(pm1_sts, kPwrbtn);  // a stale press must not count
    outw(pm1_en, inw(pm1_en) | kPwrbtn);
    serial_puts("powerdown: waiting\n");
    struct long_wait w;
    long_wait_start(&w, button_wait.seconds, kPollsPerRound);
    while (!(inw(pm1_sts) & kPwrbtn)) {
        if (long_wait_expired(&w)) fail(kExitNoButton, "no power button press");
        cpu_relax();
    }
    outw(pm1_sts, kPwrbtn);
    serial_puts("powerdown: button\n");

    // Soft off. The VMM acts on the write asynchronously (QEMU's main loop, the anchor's stop
    // request), so the vCPU may run on briefly: give it a bounded grace period first.
    outw(pm1_cnt, (uint16_t)((inw(pm1_cnt) & ~(kSlpTypMask | kSlpEn)) | (uint32_t)slp_typ << kSlpTypShift | kSlpEn));
    struct deadline d;
    deadline_start(&d, 2000u * 1000 * 1000, 100u * 1000 * 1000);
    while (!deadline_expired(&d)) cpu_relax();
    fail(kExitStillRunning, "still running after the S5 write");
}
