; A multiboot kernel that runs hello16.bin for QEMU, which has no loader for a flat real-mode
; image: it recreates vmm-anchor's real-mode boot (image at 0x10000, CS:IP = 0x1000:0000).
;
; Flat image with a multiboot a.out-kludge header (Multiboot 0.6.96 §3.1.3), loaded at 0x200000
; so neither the payload's destination nor 0x7000 overlaps it. Entered in 32-bit protected
; mode, it copies the payload to 0x10000 and a thunk to 0x7000, enters 16-bit protected mode in
; the thunk, clears CR0.PE (SDM Vol. 3 §9.9.2) and far-jumps to the payload.

%define LOAD_ADDR 0x200000
%define THUNK_BASE 0x7000
%define AT(label) ((label) - thunk + THUNK_BASE)
%define MB_MAGIC 0x1BADB002
%define MB_FLAGS 0x00010000

bits 32
org LOAD_ADDR

start:
    jmp entry
    align 4
multiboot_header:
    dd MB_MAGIC, MB_FLAGS, -(MB_MAGIC + MB_FLAGS)
    dd multiboot_header, LOAD_ADDR, image_end, 0, entry

entry:
    cli
    cld
    mov esi, payload
    mov edi, 0x10000
    mov ecx, payload_end - payload
    rep movsb
    mov esi, thunk
    mov edi, THUNK_BASE
    mov ecx, thunk_end - thunk
    rep movsb
    lgdt [gdt_descriptor]
    jmp 0x08:THUNK_BASE

    align 8
gdt:
    dq 0
    dq 0x00009a000000ffff               ; 0x08: 16-bit code, base 0, limit 64 KiB
    dq 0x000092000000ffff               ; 0x10: 16-bit data, base 0, limit 64 KiB
gdt_descriptor:
    dw gdt_descriptor - gdt - 1
    dd gdt

bits 16
thunk:
    mov ax, 0x10                        ; real-mode compatible limits before leaving PM
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    mov eax, cr0
    and eax, ~1
    mov cr0, eax
    jmp 0x0000:AT(real_mode)
real_mode:
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov sp, THUNK_BASE
    lidt [AT(real_mode_ivt)]
    jmp 0x1000:0x0000
real_mode_ivt:
    dw 0x3ff
    dd 0
thunk_end:

payload:
    incbin "hello16.bin"
payload_end:
image_end:
