; AP startup trampoline for smp.c (Intel MP spec 1.4 §B.4; SDM Vol. 3 §8.4.4).
;
; smp.c copies smp_trampoline_start..smp_trampoline_end to kTrampolineBase (0x7000) and sends
; STARTUP IPIs with vector 0x07, so each AP starts here in real mode at CS:IP = 0x0700:0000.
; The code is assembled at its link address but only ever runs at 0x7000, so every address it
; uses inside itself goes through AT(); addresses in the main image (ap_main, the stack pool)
; are absolute and need no translation.
;
; The AP takes its own stack out of ap_stack_pool with lock xadd (APs run at the same time),
; switches to 32-bit protected mode with a GDT using the same selectors as lib/entry.S, and
; calls ap_main(), which does not return. An AP that finds the pool empty parks.

%define TRAMPOLINE_BASE 0x7000
%define AT(label) ((label) - smp_trampoline_start + TRAMPOLINE_BASE)
%define CODE_SEL 0x10
%define DATA_SEL 0x18

extern ap_main, ap_stack_pool, ap_stack_bytes, ap_stack_pool_bytes, ap_stack_used
global smp_trampoline_start, smp_trampoline_end

section .rodata
bits 16
smp_trampoline_start:
    cli
    cld
    xor ax, ax
    mov ds, ax
    lgdt [AT(gdt_descriptor)]
    mov eax, cr0
    or eax, 1                           ; CR0.PE; paging stays off
    mov cr0, eax
    jmp dword CODE_SEL:AT(protected_mode)

bits 32
protected_mode:
    mov ax, DATA_SEL
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov ecx, [ap_stack_bytes]
    mov eax, ecx
    lock xadd [ap_stack_used], eax      ; eax = bytes of the pool taken before us
    add eax, ecx                        ; the end of our stack within the pool
    cmp eax, [ap_stack_pool_bytes]
    ja .park
    add eax, ap_stack_pool
    mov esp, eax
    mov eax, ap_main
    call eax
.park:
    cli
    hlt
    jmp .park

    align 8
gdt:
    dq 0
    dq 0
    dq 0x00cf9a000000ffff               ; CODE_SEL: base 0, limit 4 GiB, 32-bit
    dq 0x00cf92000000ffff               ; DATA_SEL: base 0, limit 4 GiB
gdt_descriptor:
    dw gdt_descriptor - gdt - 1
    dd AT(gdt)
smp_trampoline_end:
