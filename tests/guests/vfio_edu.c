// vfio_edu.bin: a driver test for QEMU's "edu" educational PCI device (vendor 1234, device
// 11e8; QEMU docs/specs/edu.rst), the device vmm-anchor's VFIO passthrough is tested with: under
// vmm-anchor the guest sees an edu that L1's QEMU emulates and the VMM passes through, under
// QEMU (tests/integration/guests_vfio_edu_qemu.sh) QEMU's own edu. Steps, one COM1 line each:
//   1. finds 1234:11e8 on bus 0, sets up BAR0 (1 MiB MMIO; lib/pci.h keeps a firmware address
//      or assigns one) with memory decoding and bus mastering on:
//        vfio_edu: 00:04.0 1234:11e8 bar0 febxxxxx size 100000[, assigned by the guest]
//   2. ID register (0x00) = 0x010000ed:         vfio_edu: id 010000ed
//   3. liveness (0x04) inverts what is written: vfio_edu: liveness 12345678 -> edcba987
//   4. factorial (0x08) of 5, polling status (0x20) bit 0 (bounded):
//                                                vfio_edu: factorial 5 -> 120
//   5. DMA (0x80 source, 0x88 destination, 0x90 count, 0x98 command): a 256-byte pattern from
//      guest RAM to the device buffer at 0x40000, then back into a zeroed buffer, compared:
//                                                vfio_edu: dma ok
//   6. MSI: programs the MSI capability (0xfee00000 | BSP APIC ID << 12, data = vector 0x41,
//      fixed, edge), raises an interrupt (0x60) with interrupts off, polls the LAPIC IRR bit of
//      0x41, acknowledges the device (0x64), then sti and waits for the IDT handler to run
//      (it EOIs), cli, and disables MSI again:  vfio_edu: msi ok
//   7. INTx: the interrupt line register (config 0x3c) names the IOAPIC input (vmm-anchor writes
//      GSI 16..19 there; under QEMU the firmware writes the ISA IRQ its PIRQ link routes to,
//      which is also the IOAPIC input); programs that IOAPIC redirection entry (vector 0x42,
//      level, active high, fixed, physical, BSP), and with interrupts on raises an interrupt
//      twice. The handler acknowledges the device (interrupt status 0x24 -> 0x64) before the
//      LAPIC EOI, so the line is low at the EOI; the second interrupt arrives only if the
//      IOAPIC entry was re-armed by that EOI (remote IRR cleared):
//                                                vfio_edu: intx gsi <n>
//                                                vfio_edu: intx ok 2
//   8.                                           vfio_edu: PASS
// Exit (debug-exit value): kExitOk (0x5e), or one of kExit* below after a
// "vfio_edu: FAIL <step> (exit <hex>)" line.
//
// The 8259 PICs are remapped to 0x20..0x2f and fully masked, so only the IOAPIC and MSI deliver.
// An IDT is installed before step 6: exceptions fail the guest (kExitException), vector 0x41 is
// the MSI handler, 0x42 the INTx handler, every other vector is EOIed and ignored.
// Cost: a few thousand instructions plus the waits, which are bounded (lib/deadline.h); the two
// DMA transfers take 100 ms (of the device's virtual clock) each in QEMU's edu.
#include "lib/deadline.h"
#include "lib/debug_exit.h"
#include "lib/fail.h"
#include "lib/guest.h"
#include "lib/io.h"
#include "lib/lapic.h"
#include "lib/pci.h"
#include "lib/serial.h"
#include "lib/string.h"

enum {
    kExitOk = 0x5e,
    kExitNoDevice = 0x70,    // no 1234:11e8 on bus 0
    kExitBar = 0x71,         // BAR0 missing, not memory, smaller than 1 MiB, or not assignable
    kExitId = 0x72,          // the ID register is not 0x010000ed
    kExitLiveness = 0x73,    // 0x04 does not read back the inverse
    kExitFactorial = 0x74,   // status bit 0 never cleared, or 5! != 120
    kExitDmaTimeout = 0x75,  // the DMA command's bit 0 never cleared
    kExitDmaCompare = 0x76,  // the buffer DMAed back differs from the one DMAed out
    kExitMsiCap = 0x77,      // no MSI capability
    kExitMsi = 0x78,         // the vector never showed in the IRR, or the handler never ran
    kExitIntxSetup = 0x79,   // interrupt pin not A, line register unset, or beyond the IOAPIC
    kExitIntx = 0x7a,        // an INTx interrupt did not arrive (or arrived too often)
    kExitException = 0x7c,   // a CPU exception (the line names vector and eip)

    // edu BAR0 registers.
    kEduId = 0x00,
    kEduLiveness = 0x04,
    kEduFactorial = 0x08,
    kEduStatus = 0x20,
    kEduIrqStatus = 0x24,
    kEduIrqRaise = 0x60,
    kEduIrqAck = 0x64,
    kEduDmaSrc = 0x80,
    kEduDmaDst = 0x88,
    kEduDmaCount = 0x90,
    kEduDmaCmd = 0x98,
    kEduStatusComputing = 1 << 0,
    kEduDmaRun = 1 << 0,
    kEduDmaToRam = 1 << 1,  // direction: 0 = RAM -> edu, 1 = edu -> RAM
    kEduDmaBuffer = 0x40000,
    kEduBarSize = 1 << 20,
    kDmaBytes = 256,

    kPciInterruptLine = 0x3c,
    kPciInterruptPin = 0x3d,
    kPciCommandIntxDisable = 1 << 10,
    kPciCapMsi = 0x05,
    kMsiControl = 2,
    kMsiAddress = 4,
    kMsiControlEnable = 1 << 0,
    kMsiControlMultipleEnable = 7 << 4,
    kMsiControl64Bit = 1 << 7,

    kMsiVector = 0x41,
    kIntxVector = 0x42,

    kLapicEoi = 0x0b0,
    kLapicIrr = 0x200,  // 8 registers, 0x10 apart: vector v is bit v % 32 of IRR[v / 32]

    kIoApicRegSel = 0x00,
    kIoApicWindow = 0x10,
    kIoApicVersion = 0x01,
    kIoApicRedirection = 0x10,  // entry n: low dword 0x10 + 2n, high dword 0x11 + 2n
    kIoApicLevel = 1 << 15,
    kIoApicMasked = 1 << 16,

    kPic1Cmd = 0x20,
    kPic1Data = 0x21,
    kPic2Cmd = 0xa0,
    kPic2Data = 0xa1,

    kIdtVectors = 256,
    kInterruptGate32 = 0x8e00,  // present, DPL 0, 32-bit interrupt gate
};
#define kIoApicBase 0xfec00000u
#define kMsiAddressBase 0xfee00000u

static const uint32_t kFactorialTimeoutNs = 2000u * 1000 * 1000;
static const uint32_t kDmaTimeoutNs = 3000u * 1000 * 1000;
static const uint32_t kIrqTimeoutNs = 1000u * 1000 * 1000;
static const uint32_t kMaxPolls = 20u * 1000 * 1000;

// With clear_bar non-zero (patch the u32 after the 16-byte tag in the image), BAR0 is written 0
// before the setup, so that under QEMU (where the firmware assigned it) the guest assigns it
// itself, as it may have to under vmm-anchor.
struct edu_options {
    char tag[16];
    uint32_t clear_bar;
};
volatile struct edu_options edu_options __attribute__((used)) = {"VMM-EDU-CLEARBAR", 0};

static struct pci_dev dev;
static uint32_t bar0;
static uint8_t dma_out[kDmaBytes] __attribute__((aligned(16)));
static uint8_t dma_back[kDmaBytes] __attribute__((aligned(16)));

static volatile uint32_t msi_count;
static volatile uint32_t intx_count;
static volatile uint32_t intx_status;  // interrupt status the INTx handler saw, ORed

static inline void compiler_barrier(void) { __asm__ volatile("" ::: "memory"); }

static uint32_t edu_read(uint32_t reg) { return mmio_read32(bar0 + reg); }
static void edu_write(uint32_t reg, uint32_t v) { mmio_write32(bar0 + reg, v); }

static void put_hex_width(uint32_t v, int digits) {
    for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4) serial_putc("0123456789abcdef"[(v >> shift) & 0xf]);
}

static __attribute__((noreturn)) void fail(uint32_t code, const char* step) {
    __asm__ volatile("cli");
    guest_fail("vfio_edu", code, step);
}

// "vfio_edu: <what> <got hex>, want <want hex>" before a failure.
static void print_mismatch(const char* what, uint32_t got, uint32_t want) {
    serial_puts("vfio_edu: ");
    serial_puts(what);
    serial_putc(' ');
    serial_put_hex(got);
    serial_puts(", want ");
    serial_put_hex(want);
    serial_putc('\n');
}

// --- Interrupts -------------------------------------------------------------------------------

// gcc's x86 interrupt attribute: the handler saves what it uses and returns with iret. The
// frame is what the CPU pushes without a privilege change; exceptions with an error code get it
// as a second argument.
typedef unsigned int uword_t __attribute__((mode(__word__)));
struct interrupt_frame {
    uword_t eip, cs, eflags;
};

struct idt_entry {
    uint32_t low;   // selector << 16 | offset 15:0
    uint32_t high;  // offset 31:16 | type and attributes
};
// Filled entirely before lidt: no zeroing needed.
static struct idt_entry idt[kIdtVectors] GUEST_NOINIT;

static void lapic_eoi(void) { lapic_write(kLapicDefaultBase, kLapicEoi, 0); }

__attribute__((interrupt)) static void msi_handler(struct interrupt_frame* frame) {
    (void)frame;
    ++msi_count;
    lapic_eoi();
}

// Level-triggered: acknowledge the device first, so the line is low when the EOI reaches the
// IOAPIC (otherwise the entry would fire again at once).
__attribute__((interrupt)) static void intx_handler(struct interrupt_frame* frame) {
    (void)frame;
    uint32_t status = edu_read(kEduIrqStatus);
    if (status) edu_write(kEduIrqAck, status);
    intx_status |= status;
    ++intx_count;
    lapic_eoi();
}

// Nothing else is unmasked; should a stray interrupt come anyway (a spurious LAPIC vector), it
// is ignored after an EOI (a no-op when nothing is in service).
__attribute__((interrupt)) static void other_handler(struct interrupt_frame* frame) {
    (void)frame;
    lapic_eoi();
}

static __attribute__((noreturn)) void exception(uint32_t vector, uint32_t eip) {
    serial_puts("vfio_edu: exception ");
    serial_put_dec(vector);
    serial_puts(" at ");
    serial_put_hex(eip);
    serial_putc('\n');
    fail(kExitException, "exception");
}

#define EXCEPTION(n)                                                                          \
    __attribute__((interrupt)) static void exception_##n(struct interrupt_frame* f) { exception(n, f->eip); }
#define EXCEPTION_ERR(n)                                                                      \
    __attribute__((interrupt)) static void exception_##n(struct interrupt_frame* f, uword_t e) { \
        (void)e;                                                                              \
        exception(n, f->eip);                                                                 \
    }
// Intel SDM Vol. 3 §6.13: 8, 10-14, 17, 21, 29 and 30 push an error code.
EXCEPTION(0) EXCEPTION(1) EXCEPTION(2) EXCEPTION(3) EXCEPTION(4) EXCEPTION(5) EXCEPTION(6)
EXCEPTION(7) EXCEPTION_ERR(8) EXCEPTION(9) EXCEPTION_ERR(10) EXCEPTION_ERR(11)
EXCEPTION_ERR(12) EXCEPTION_ERR(13) EXCEPTION_ERR(14) EXCEPTION(15) EXCEPTION(16)
EXCEPTION_ERR(17) EXCEPTION(18) EXCEPTION(19) EXCEPTION(20) EXCEPTION_ERR(21) EXCEPTION(22)
EXCEPTION(23) EXCEPTION(24) EXCEPTION(25) EXCEPTION(26) EXCEPTION(27) EXCEPTION(28)
EXCEPTION_ERR(29) EXCEPTION_ERR(30) EXCEPTION(31)
#define H(n) (void (*)(void)) exception_##n
static void (*const exception_handlers[32])(void) = {
    H(0),  H(1),  H(2),  H(3),  H(4),  H(5),  H(6),  H(7),  H(8),  H(9),  H(10),
    H(11), H(12), H(13), H(14), H(15), H(16), H(17), H(18), H(19), H(20), H(21),
    H(22), H(23), H(24), H(25), H(26), H(27), H(28), H(29), H(30), H(31),
};
#undef H

static void set_gate(uint32_t vector, void (*handler)(void)) {
    uint32_t h = (uint32_t)handler;
    idt[vector].low = (uint32_t)kGuestCodeSelector << 16 | (h & 0xffff);
    idt[vector].high = (h & 0xffff0000u) | kInterruptGate32;
}

static void install_idt(void) {
    for (uint32_t v = 0; v < 32; ++v) set_gate(v, exception_handlers[v]);
    for (uint32_t v = 32; v < kIdtVectors; ++v) set_gate(v, (void (*)(void))other_handler);
    set_gate(kMsiVector, (void (*)(void))msi_handler);
    set_gate(kIntxVector, (void (*)(void))intx_handler);
    struct {
        uint16_t limit;
        uint32_t base;
    } __attribute__((packed)) idtr = {sizeof(idt) - 1, (uint32_t)idt};
    __asm__ volatile("lidt %0" : : "m"(idtr));
}

// The 8259A initialization sequence (ICW1..ICW4) to vectors 0x20..0x2f, then every line masked:
// this guest takes interrupts from the IOAPIC and MSI only.
static void pic_remap_and_mask(void) {
    outb(kPic1Cmd, 0x11);
    outb(kPic2Cmd, 0x11);
    outb(kPic1Data, 0x20);
    outb(kPic2Data, 0x28);
    outb(kPic1Data, 1 << 2);
    outb(kPic2Data, 2);
    outb(kPic1Data, 0x01);
    outb(kPic2Data, 0x01);
    outb(kPic1Data, 0xff);
    outb(kPic2Data, 0xff);
}

static uint32_t ioapic_read(uint32_t reg) {
    mmio_write32(kIoApicBase + kIoApicRegSel, reg);
    return mmio_read32(kIoApicBase + kIoApicWindow);
}
static void ioapic_write(uint32_t reg, uint32_t v) {
    mmio_write32(kIoApicBase + kIoApicRegSel, reg);
    mmio_write32(kIoApicBase + kIoApicWindow, v);
}

// Waits (bounded, interrupts on) until *counter reaches want.
static bool wait_count(volatile uint32_t* counter, uint32_t want) {
    struct deadline d;
    deadline_start(&d, kIrqTimeoutNs, kMaxPolls);
    while (*counter < want) {
        if (deadline_expired(&d)) return false;
        cpu_relax();
    }
    return true;
}

// --- Steps -----------------------------------------------------------------------------------

static void step_probe(void) {
    if (!pci_find_device(0x1234, 0x11e8, &dev)) fail(kExitNoDevice, "no edu device (1234:11e8)");
    if (edu_options.clear_bar) {
        uint16_t cmd = pci_read16(&dev, kPciCommand);
        pci_write16(&dev, kPciCommand, cmd & ~(kPciCommandIo | kPciCommandMemory));
        pci_write32(&dev, kPciBar0, 0);
    }
    struct pci_bar bars[kPciMaxBars];
    enum pci_status s = pci_setup_bars(&dev, bars);  // memory decoding and bus mastering on
    serial_puts("vfio_edu: ");
    put_hex_width(dev.bus, 2);
    serial_putc(':');
    put_hex_width(dev.slot, 2);
    serial_putc('.');
    put_hex_width(dev.fn, 1);
    serial_puts(" 1234:11e8 bar0 ");
    serial_put_hex(bars[0].addr);
    serial_puts(" size ");
    serial_put_hex(bars[0].size);
    if (bars[0].assigned) serial_puts(", assigned by the guest");
    serial_putc('\n');
    if (s != kPciOk || bars[0].io || bars[0].addr == 0 || bars[0].size < kEduBarSize) fail(kExitBar, "bar0");
    uint16_t cmd = pci_read16(&dev, kPciCommand);
    if ((cmd & (kPciCommandMemory | kPciCommandBusMaster)) != (kPciCommandMemory | kPciCommandBusMaster))
        fail(kExitBar, "command register");
    bar0 = bars[0].addr;
}

static void step_id(void) {
    uint32_t id = edu_read(kEduId);
    serial_puts("vfio_edu: id ");
    put_hex_width(id, 8);
    serial_putc('\n');
    if (id != 0x010000edu) fail(kExitId, "id");
}

static void step_liveness(void) {
    edu_write(kEduLiveness, 0x12345678u);
    uint32_t v = edu_read(kEduLiveness);
    serial_puts("vfio_edu: liveness 12345678 -> ");
    put_hex_width(v, 8);
    serial_putc('\n');
    if (v != 0xedcba987u) fail(kExitLiveness, "liveness");
}

static void step_factorial(void) {
    edu_write(kEduFactorial, 5);
    struct deadline d;
    deadline_start(&d, kFactorialTimeoutNs, kMaxPolls);
    while (edu_read(kEduStatus) & kEduStatusComputing) {
        if (deadline_expired(&d)) fail(kExitFactorial, "factorial: still computing");
        cpu_relax();
    }
    uint32_t v = edu_read(kEduFactorial);
    serial_puts("vfio_edu: factorial 5 -> ");
    serial_put_dec(v);
    serial_putc('\n');
    if (v != 120) fail(kExitFactorial, "factorial");
}

static void dma(uint32_t src, uint32_t dst, uint32_t cmd, const char* step) {
    edu_write(kEduDmaSrc, src);
    edu_write(kEduDmaDst, dst);
    edu_write(kEduDmaCount, kDmaBytes);
    edu_write(kEduDmaCmd, cmd | kEduDmaRun);
    struct deadline d;
    deadline_start(&d, kDmaTimeoutNs, kMaxPolls);
    while (edu_read(kEduDmaCmd) & kEduDmaRun) {
        if (deadline_expired(&d)) fail(kExitDmaTimeout, step);
        cpu_relax();
    }
    compiler_barrier();
}

static void step_dma(void) {
    // Paging is off and there is no IOMMU in the guest: a pointer is the bus address. Both
    // buffers are below 2 MiB, well inside edu's 28-bit DMA mask.
    for (uint32_t i = 0; i < kDmaBytes; ++i) dma_out[i] = (uint8_t)(i * 13 + 0x5a);
    memset(dma_back, 0, sizeof(dma_back));
    compiler_barrier();
    dma((uint32_t)dma_out, kEduDmaBuffer, 0, "dma ram->edu");
    dma(kEduDmaBuffer, (uint32_t)dma_back, kEduDmaToRam, "dma edu->ram");
    if (memcmp(dma_out, dma_back, kDmaBytes) != 0) {
        uint32_t i = 0;
        while (i < kDmaBytes && dma_out[i] == dma_back[i]) ++i;
        serial_puts("vfio_edu: dma byte ");
        serial_put_dec(i);
        serial_puts(" is ");
        serial_put_hex(dma_back[i]);
        serial_puts(", want ");
        serial_put_hex(dma_out[i]);
        serial_putc('\n');
        fail(kExitDmaCompare, "dma compare");
    }
    serial_puts("vfio_edu: dma ok\n");
}

static bool irr_set(uint32_t vector) {
    return (lapic_read(kLapicDefaultBase, kLapicIrr + 0x10 * (vector / 32)) >> (vector % 32)) & 1;
}

static void step_msi(uint8_t apic_id) {
    uint8_t caps[kPciMaxCaps];
    uint32_t n = pci_caps(&dev, caps);
    uint8_t cap = 0;
    for (uint32_t i = 0; i < n && !cap; ++i)
        if (pci_read8(&dev, caps[i]) == kPciCapMsi) cap = caps[i];
    if (!cap) fail(kExitMsiCap, "no msi capability");

    uint16_t control = pci_read16(&dev, (uint8_t)(cap + kMsiControl));
    uint8_t data_off = (uint8_t)(cap + ((control & kMsiControl64Bit) ? 12 : 8));
    pci_write32(&dev, (uint8_t)(cap + kMsiAddress), kMsiAddressBase | (uint32_t)apic_id << 12);
    if (control & kMsiControl64Bit) pci_write32(&dev, (uint8_t)(cap + kMsiAddress + 4), 0);
    pci_write16(&dev, data_off, kMsiVector);  // fixed delivery, edge
    control = (uint16_t)((control & ~kMsiControlMultipleEnable) | kMsiControlEnable);
    pci_write16(&dev, (uint8_t)(cap + kMsiControl), control);

    edu_write(kEduIrqRaise, 1);
    struct deadline d;
    deadline_start(&d, kIrqTimeoutNs, kMaxPolls);
    while (!irr_set(kMsiVector)) {
        if (deadline_expired(&d)) fail(kExitMsi, "msi: vector not pending in the irr");
        cpu_relax();
    }
    edu_write(kEduIrqAck, edu_read(kEduIrqStatus));
    __asm__ volatile("sti" ::: "memory");
    bool delivered = wait_count(&msi_count, 1);
    __asm__ volatile("cli" ::: "memory");
    if (!delivered) fail(kExitMsi, "msi: handler not called");
    if (msi_count != 1) fail(kExitMsi, "msi: handler called more than once");
    serial_puts("vfio_edu: msi ok\n");

    pci_write16(&dev, (uint8_t)(cap + kMsiControl), (uint16_t)(control & ~kMsiControlEnable));
}

static void step_intx(uint8_t apic_id) {
    uint8_t pin = pci_read8(&dev, kPciInterruptPin);
    uint8_t gsi = pci_read8(&dev, kPciInterruptLine);
    serial_puts("vfio_edu: intx gsi ");
    serial_put_dec(gsi);
    serial_putc('\n');
    if (pin != 1) fail(kExitIntxSetup, "intx: interrupt pin is not INTA");
    uint32_t entries = ((ioapic_read(kIoApicVersion) >> 16) & 0xff) + 1;
    if (gsi == 0 || gsi >= entries) fail(kExitIntxSetup, "intx: line register is not an ioapic input");

    uint16_t cmd = pci_read16(&dev, kPciCommand);
    if (cmd & kPciCommandIntxDisable) pci_write16(&dev, kPciCommand, cmd & ~kPciCommandIntxDisable);

    uint32_t reg = kIoApicRedirection + 2u * gsi;
    ioapic_write(reg, kIoApicMasked);
    ioapic_write(reg + 1, (uint32_t)apic_id << 24);
    ioapic_write(reg, kIntxVector | kIoApicLevel);  // fixed, physical, active high, unmasked

    __asm__ volatile("sti" ::: "memory");
    edu_write(kEduIrqRaise, 1);
    bool first = wait_count(&intx_count, 1);
    bool second = false;
    if (first) {
        edu_write(kEduIrqRaise, 2);
        second = wait_count(&intx_count, 2);
    }
    __asm__ volatile("cli" ::: "memory");
    ioapic_write(reg, kIoApicMasked);
    if (!first) fail(kExitIntx, "intx: first interrupt not delivered");
    if (!second) fail(kExitIntx, "intx: second interrupt not delivered (line not re-armed after eoi?)");
    if (intx_count != 2) {
        print_mismatch("intx count", intx_count, 2);
        fail(kExitIntx, "intx: interrupt delivered too often");
    }
    if (intx_status != 3) {
        print_mismatch("intx status seen", intx_status, 3);
        fail(kExitIntx, "intx: handler saw the wrong interrupt status");
    }
    serial_puts("vfio_edu: intx ok ");
    serial_put_dec(intx_count);
    serial_putc('\n');
}

void guest_main(uint32_t magic, const struct multiboot_info* mbi) {
    (void)magic;
    (void)mbi;
    step_probe();
    step_id();
    step_liveness();
    step_factorial();
    step_dma();

    pic_remap_and_mask();
    install_idt();
    // Software-enabled LAPIC (spurious vector 0xff), as deadline_start() leaves it too.
    lapic_write(kLapicDefaultBase, kLapicSvr, kLapicSvrEnable | 0xff);
    uint8_t apic_id = lapic_id(kLapicDefaultBase);
    step_msi(apic_id);
    step_intx(apic_id);

    serial_puts("vfio_edu: PASS\n");
    debug_exit(kExitOk);
}
