; hello16.bin: a flat real-mode guest. Loaded at 0x10000 and entered at CS:IP = 0x1000:0000;
; it assumes nothing else (it takes DS from CS and uses no stack). Prints one line on COM1 and
; exits with debug-exit value 0x16.
bits 16
org 0

start:
    cli
    cld
    mov ax, cs
    mov ds, ax
    mov si, message
.next:
    lodsb
    test al, al
    jz .done
    mov bl, al
    mov dx, 0x3fd                       ; LSR
    mov cx, 0xffff                      ; bounded wait for THRE (bit 5)
.wait:
    in al, dx
    test al, 0x20
    jnz .send
    loop .wait
.send:
    mov dx, 0x3f8                       ; THR
    mov al, bl
    out dx, al
    jmp .next
.done:
    mov dx, 0xf4                        ; debug-exit: status (0x16 << 1) | 1
    mov eax, 0x16
    out dx, eax
.park:
    hlt
    jmp .park

message: db "hello16: real mode ok", 10, 0
