/*
 * Entry of every protected-mode test guest. The image starts at its load address (0x100000)
 * with this code, so the first byte is the entry point both of the flat protected32 boot
 * (vmm-anchor: entered at the load address) and of the multiboot boot (EAX=0x2BADB002, EBX=mbi).
 *
 * Built twice: without MULTIBOOT_AOUT_KLUDGE for the ELF images (the loader uses the program
 * headers), with it for the flat .bin images: flags bit 16 makes the header carry the load
 * addresses (Multiboot 0.6.96 §3.1.3), so the flat file is also a multiboot kernel and QEMU
 * -kernel runs the very bytes vmm-anchor runs.
 */

#define MB_HEADER_MAGIC 0x1BADB002
#define MB_PAGE_ALIGN (1 << 0)
#define MB_MEMORY_INFO (1 << 1)
#define MB_AOUT_KLUDGE (1 << 16)
#ifdef MULTIBOOT_AOUT_KLUDGE
#define MB_FLAGS (MB_PAGE_ALIGN | MB_MEMORY_INFO | MB_AOUT_KLUDGE)
#else
#define MB_FLAGS (MB_PAGE_ALIGN | MB_MEMORY_INFO)
#endif

#define CODE_SEL 0x10
#define DATA_SEL 0x18
#define STACK_SIZE 16384

    .section .text.entry, "ax"
    .code32
    .globl _start
_start:
    jmp 1f

    /* §3.1.1: 32-bit aligned, within the first 8192 bytes of the image. */
    .balign 4
multiboot_header:
    .long MB_HEADER_MAGIC
    .long MB_FLAGS
    .long -(MB_HEADER_MAGIC + MB_FLAGS)
#ifdef MULTIBOOT_AOUT_KLUDGE
    .long multiboot_header  /* header_addr */
    .long __image_start     /* load_addr: the file starts here */
    .long __load_end        /* load_end_addr: end of .data, the end of the flat file */
    .long __image_end       /* bss_end_addr: .bss and the stacks; the loader zeroes them */
    .long _start            /* entry_addr */
#endif

1:
    cli
    cld
    /* EAX/EBX hold the multiboot magic and info pointer: keep them out of the way of stosl. */
    mov %eax, %esi
    mov %ebx, %ebp

    /* Our own GDT: a multiboot loader's GDTR may point anywhere (§3.2). */
    lgdt gdt_descriptor
    ljmp $CODE_SEL, $2f
2:
    mov $DATA_SEL, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs

    /* Zero .bss ourselves: a flat load does not, and the stack lives there. */
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    shr $2, %ecx
    xor %eax, %eax
    rep stosl

    mov $boot_stack_top, %esp
    push %ebp
    push %esi
    call guest_main
    mov $0xf4, %dx
    mov $0x7b, %eax
    out %eax, %dx
3:
    hlt
    jmp 3b

    .section .rodata
    .balign 8
gdt:
    .quad 0
    .quad 0
    .quad 0x00cf9a000000ffff /* 0x10: code, base 0, limit 4 GiB, 32-bit */
    .quad 0x00cf92000000ffff /* 0x18: data, base 0, limit 4 GiB */
gdt_end:
gdt_descriptor:
    .word gdt_end - gdt - 1
    .long gdt

    /* Not in .bss: nothing needs the stack zeroed, and every instruction counts (rep stosl
       runs one emulated iteration per word under TCG). */
    .section .stack, "aw", @nobits
    .balign 16
boot_stack:
    .skip STACK_SIZE
boot_stack_top:
