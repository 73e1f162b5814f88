; hello64.bin: a flat long-mode guest. Loaded and entered at 0x100000 in 64-bit mode with the
; first 4 GiB identity mapped; it uses no stack. Prints one line on COM1 and exits with
; debug-exit value 0x40.
bits 64
org 0x100000

start:
    cli
    cld
    lea rsi, [rel message]
.next:
    lodsb
    test al, al
    jz .done
    mov bl, al
    mov dx, 0x3fd                       ; LSR
    mov ecx, 0xffff                     ; bounded wait for THRE (bit 5)
.wait:
    in al, dx
    test al, 0x20
    jnz .send
    dec ecx
    jnz .wait
.send:
    mov dx, 0x3f8                       ; THR
    mov al, bl
    out dx, al
    jmp .next
.done:
    mov dx, 0xf4                        ; debug-exit: status (0x40 << 1) | 1
    mov eax, 0x40
    out dx, eax
.park:
    hlt
    jmp .park

message: db "hello64: long mode ok", 10, 0
