; bios-exit16.bin: a 64 KiB firmware image whose first instruction at the reset vector
; (f000:fff0) leaves through the debug-exit port with value 0x17: exec -> exit of the VMM
; measures its start-up to the guest's first instruction plus its tear-down
; (bench/startup.py). Runs unchanged as QEMU's -bios and as vmm-anchor's flat real16 image at
; 0xf0000 entered at 0xffff0.
bits 16
org 0
    times 0xfff0 db 0xf4                ; hlt filler
reset:
    mov dx, 0xf4
    mov al, 0x17
    out dx, al
    hlt
    times 0x10000 - ($ - $$) db 0
