/*
 * Interrupt entry stubs of idle.bin (idle.c builds the IDT from them). Vectors 0..31: the NMI
 * (2) is survivable and goes to idle_nmi(); every other exception pushes a zero in place of the
 * error code where the CPU pushes none (Intel SDM Vol. 3 §6.13), then its vector, and calls
 * idle_exception(vector, error, eip), which does not return. Vectors 32..255 share one stub that
 * calls idle_irq() (EOIs) and returns. Interrupt gates: IF is clear inside the handlers.
 */
    .section .text
    .code32

    .section .rodata
    .balign 4
    .globl idle_exception_stubs
idle_exception_stubs:
    .section .text

.macro exception_stub n
    .section .rodata
    .long exception_\n
    .section .text
exception_\n:
.if \n == 2
    pushal
    cld
    call idle_nmi
    popal
    iret
.else
.if (\n == 8) || (\n == 10) || (\n == 11) || (\n == 12) || (\n == 13) || (\n == 14) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
.else
    pushl $0
.endif
    pushl $\n
    jmp exception_common
.endif
.endm

    .altmacro
.set vector, 0
.rept 32
    exception_stub %vector
.set vector, vector + 1
.endr

exception_common:
    cld
    /* [esp] vector, [esp+4] error code, [esp+8] eip: the cdecl arguments of idle_exception. */
    call idle_exception
1:
    cli
    hlt
    jmp 1b

    .globl idle_irq_stub
idle_irq_stub:
    pushal
    cld
    call idle_irq
    popal
    iret
