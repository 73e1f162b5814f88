// idle.bin: a guest that boots, says "idle: up\n" and then idles for ever, for a domain that
// is started paused and driven through QMP (examples/idle.json). The idle loop is `sti; hlt`:
// the vCPU sleeps in the VMM until an interrupt, so an idle domain costs no CPU.
//
// Before that it remaps the 8259 PICs to vectors 0x20..0x2f and masks every line (the guest
// asks for no interrupts), and loads an IDT (idle_vectors.S), so whatever does arrive is handled:
//   NMI (QMP inject-nmi)      prints "idle: nmi <count>\n" and returns to the idle loop
//   vectors 32..255           EOI to both PICs and the LAPIC, counted, back to idling
//   any other exception       "idle: FAIL exception <n> error <hex> at <eip> (exit 4f)"
// Exit (debug-exit value): none normally (the VMM ends it: QMP quit); kExitException (0x4f).
#include "lib/debug_exit.h"
#include "lib/guest.h"
#include "lib/io.h"
#include "lib/lapic.h"
#include "lib/serial.h"

enum {
    kExitException = 0x4f,

    kPic1Cmd = 0x20,
    kPic1Data = 0x21,
    kPic2Cmd = 0xa0,
    kPic2Data = 0xa1,
    kPicIcw1Init = 0x11,  // ICW1: init, ICW4 follows (cascade, edge)
    kPicIcw4_8086 = 0x01,
    kPicEoi = 0x20,       // OCW2: non-specific EOI
    kPicVectorBase = 0x20,

    kLapicEoi = 0x0b0,
    kIdtVectors = 256,
    kInterruptGate32 = 0x8e00,  // present, DPL 0, 32-bit interrupt gate
};

struct idt_entry {
    uint32_t low;   // selector << 16 | offset 15:0
    uint32_t high;  // offset 31:16 | type and attributes
};

extern const uint32_t idle_exception_stubs[32];
void idle_irq_stub(void);

// Filled entirely before lidt: no zeroing needed.
static struct idt_entry idt[kIdtVectors] GUEST_NOINIT;
static volatile uint32_t nmis;
static volatile uint32_t irqs;

void idle_nmi(void);
void idle_nmi(void) {
    serial_puts("idle: nmi ");
    serial_put_dec(++nmis);
    serial_putc('\n');
}

void idle_irq(void);
void idle_irq(void) {
    ++irqs;
    outb(kPic2Cmd, kPicEoi);
    outb(kPic1Cmd, kPicEoi);
    lapic_write(kLapicDefaultBase, kLapicEoi, 0);
}

__attribute__((noreturn)) void idle_exception(uint32_t vector, uint32_t error, uint32_t eip);
void idle_exception(uint32_t vector, uint32_t error, uint32_t eip) {
    serial_puts("idle: FAIL exception ");
    serial_put_dec(vector);
    serial_puts(" error ");
    serial_put_hex(error);
    serial_puts(" at ");
    serial_put_hex(eip);
    serial_puts(" (exit 4f)\n");
    debug_exit(kExitException);
}

static void set_gate(uint32_t vector, uint32_t handler) {
    idt[vector].low = (uint32_t)kGuestCodeSelector << 16 | (handler & 0xffff);
    idt[vector].high = (handler & 0xffff0000u) | kInterruptGate32;
}

// The 8259A initialization sequence (ICW1..ICW4), then OCW1 masks all eight lines of each.
static void pic_remap_and_mask(void) {
    outb(kPic1Cmd, kPicIcw1Init);
    outb(kPic2Cmd, kPicIcw1Init);
    outb(kPic1Data, kPicVectorBase);
    outb(kPic2Data, kPicVectorBase + 8);
    outb(kPic1Data, 1 << 2);  // slave on IR2
    outb(kPic2Data, 2);       // slave identity
    outb(kPic1Data, kPicIcw4_8086);
    outb(kPic2Data, kPicIcw4_8086);
    outb(kPic1Data, 0xff);
    outb(kPic2Data, 0xff);
}

void guest_main(uint32_t magic, const struct multiboot_info* mbi) {
    (void)magic;
    (void)mbi;
    pic_remap_and_mask();
    for (uint32_t v = 0; v < 32; ++v) set_gate(v, idle_exception_stubs[v]);
    for (uint32_t v = 32; v < kIdtVectors; ++v) set_gate(v, (uint32_t)idle_irq_stub);
    struct {
        uint16_t limit;
        uint32_t base;
    } __attribute__((packed)) idtr = {sizeof(idt) - 1, (uint32_t)idt};
    __asm__ volatile("lidt %0" : : "m"(idtr));

    serial_puts("idle: up\n");
    for (;;) __asm__ volatile("sti; hlt" ::: "memory");
}
