; A multiboot kernel that runs hello64.bin for QEMU, which has no loader for a flat long-mode
; image: it recreates vmm-anchor's long-mode boot (image at 0x100000, entered there in 64-bit
; mode, the first 4 GiB identity mapped with 2 MiB pages).
;
; Flat image with a multiboot a.out-kludge header (Multiboot 0.6.96 §3.1.3), loaded at 0x200000.
; Page tables at 0x300000: PML4, one PDPT, four page directories (SDM Vol. 3 §4.5).

%define LOAD_ADDR 0x200000
%define PML4 0x300000
%define PDPT 0x301000
%define PD0 0x302000
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
    mov edi, 0x100000
    mov ecx, payload_end - payload
    rep movsb

    mov edi, PML4
    mov ecx, 6 * 4096 / 4
    xor eax, eax
    rep stosd
    mov dword [PML4], PDPT | 3          ; present, writable
    mov dword [PDPT + 0], (PD0 + 0x0000) | 3
    mov dword [PDPT + 8], (PD0 + 0x1000) | 3
    mov dword [PDPT + 16], (PD0 + 0x2000) | 3
    mov dword [PDPT + 24], (PD0 + 0x3000) | 3
    mov edi, PD0
    mov eax, 0x83                       ; present, writable, 2 MiB page
    mov ecx, 2048
.fill:
    mov [edi], eax
    add eax, 0x200000
    add edi, 8
    loop .fill

    mov eax, cr4
    or eax, 1 << 5                      ; CR4.PAE
    mov cr4, eax
    mov eax, PML4
    mov cr3, eax
    mov ecx, 0xc0000080                 ; IA32_EFER
    rdmsr
    or eax, 1 << 8                      ; LME
    wrmsr
    lgdt [gdt_descriptor]
    mov eax, cr0
    or eax, 1 << 31                     ; CR0.PG: long mode becomes active
    mov cr0, eax
    jmp 0x08:long_mode

bits 64
long_mode:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov rsp, 0x8ff0
    mov rax, 0x100000
    jmp rax

    align 8
gdt:
    dq 0
    dq 0x00af9a000000ffff               ; 0x08: 64-bit code
    dq 0x00cf92000000ffff               ; 0x10: data
gdt_descriptor:
    dw gdt_descriptor - gdt - 1
    dd gdt

payload:
    incbin "hello64.bin"
payload_end:
image_end:
