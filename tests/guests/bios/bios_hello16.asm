; bios-hello16.bin: hello16.bin as a 64 KiB firmware image, so that the same guest starts at
; the x86 reset vector under any VMM: QEMU's -bios (also -M microvm), or vmm-anchor with a flat
; real16 image loaded at 0xf0000 and entered at 0xffff0 (CS:IP f000:fff0). The reset vector
; jumps to hello16's code at f000:0000, which prints one line on COM1 and exits through the
; debug-exit port (0x16). bench/startup.py times exec -> exit with it.
bits 16
org 0
hello:
    incbin "hello16.bin"
    times 0xfff0 - ($ - $$) db 0xf4     ; hlt filler
reset:
    jmp 0xf000:hello
    times 0x10000 - ($ - $$) db 0
