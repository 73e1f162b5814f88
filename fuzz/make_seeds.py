#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/corpus/<target>/: a few small valid inputs per fuzz target,
in the input format each target's header comment describes. Re-run after changing a format;
the files are committed so CI does not need this script.

Sources: the manifest seeds follow examples/*.json (with file names the fuzz target creates);
the bzImage seeds are the synthetic images of tests/fixtures/boot/synthetic_images.h, cut short,
plus the first 1 KiB of the test kernel when tests/fixtures/downloaded/vmlinuz exists."""
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(ROOT, "corpus")


def put(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- manifest: the fuzz target's base dir holds kernel, initrd, disk.img, disk2.img ----
def manifests():
    put("manifest", "hello.json", json.dumps({
        "name": "hello", "vcpus": 1, "memory_mb": 16, "kernel": "kernel",
        "flat": {"load_address": "0x100000", "entry": "0x100000", "mode": "protected32"}}, indent=2))
    put("manifest", "linux.json", json.dumps({
        "name": "linux", "vcpus": 2, "memory_mb": 512, "kernel": "kernel", "initrd": "initrd",
        "cmdline": "console=ttyS0 earlyprintk=serial,ttyS0,115200 nokaslr panic=-1"}, indent=2))
    put("manifest", "full.json", json.dumps({
        "name": "full-vm_1", "hypervisor": "kvm", "vcpus": 4, "memory_mb": 1024,
        "kernel": "kernel", "initrd": "initrd", "cmdline": "root=/dev/vda1",
        "hide_hypervisor": True, "hugepages": False, "start_paused": True,
        "on_poweroff": "pause", "on_reboot": "restart", "on_crash": "pause",
        "disks": [{"path": "disk.img", "readonly": True, "serial": "disk0"},
                  {"path": "disk2.img", "partuuid": "0fc63daf-8483-4772-8e79-3d69d8477de4"}],
        "nics": [{"tap": "tap0", "mac": "52:54:00:12:34:56"}, {"tap": "tap1"}],
        "consoles": [{"kind": "pty"}, {"kind": "socket", "path": "/run/vm/console.sock"}],
        "pci": [{"bdf": "03:00.0"}, {"vendor": "0x8086", "device": "0x1533", "index": 1}]}, indent=2))
    put("manifest", "real16.json",
        '{"name": "r", "kernel": "kernel", "flat": {"load_address": 65536, "entry": 65536, "mode": "real16"}}')
    put("manifest", "duplicate-key.json", '{"name": "a", "name": "b", "kernel": "kernel"}')


# ---- qmp: byte 0 is the control byte (chunking, limits, run state) ----
def qmp():
    session = [
        {"execute": "qmp_capabilities"},
        {"execute": "query-status", "id": 1},
        {"execute": "cont", "id": "c"},
        {"execute": "stop"},
        {"execute": "human-monitor-command", "arguments": {"command-line": "info status"}},
        {"execute": "query-commands", "id": [1, {"x": None}]},
        {"execute": "system_powerdown"},
        {"execute": "quit"},
    ]
    put("qmp", "session", b"\x03" + "".join(json.dumps(m) + "\r\n" for m in session).encode())
    put("qmp", "before-negotiation", b"\x21" + b'{"execute": "query-name", "id": 7}\n{"execute":"qmp_capabilities","arguments":{"enable":["oob"]}}')
    put("qmp", "qemu-extensions", b"\x05" + b"{'execute': 'qmp_capabilities', 'id': 'it\\'s'}\xff{\"execute\": \"query-version\"}")
    put("qmp", "errors", b"\x12" + b'[1, 2]\n"str"\n{"execute": 3}\n{"execute": "stop", "extra": 1}\n{"execute":"cont","arguments":{"x":1}}\n{"a": 1e400, "b": -0.5e-3, "c": true, "d": null, "e": "\\u00e9\\ud83d\\ude00"}')
    put("qmp", "nested", b"\x10" + b'{"execute": "query-status", "id": [[[[[[[[[[[[1]]]]]]]]]]]]}')


# ---- virtqueue: 16-byte header, then guest RAM; packed layout desc@0, avail, used ----
def virtqueue():
    def image(qsize, feats, descs, avail_ring, ram_size=0x2000, extra=()):
        ram = bytearray(ram_size)
        for i, (addr, ln, flags, nxt) in enumerate(descs):
            struct.pack_into("<QIHH", ram, 16 * i, addr, ln, flags, nxt)
        avail = 16 * qsize
        struct.pack_into("<HH", ram, avail, 0, len(avail_ring))
        for i, head in enumerate(avail_ring):
            struct.pack_into("<H", ram, avail + 4 + 2 * i, head)
        for off, data in extra:
            ram[off:off + len(data)] = data
        qlog = qsize.bit_length() - 1
        return bytes([qlog, feats]) + bytes(14) + bytes(ram)

    NEXT, WRITE, INDIRECT = 1, 2, 4
    blk_in = struct.pack("<IIQ", 0, 0, 8)      # VIRTIO_BLK_T_IN, sector 8
    blk_out = struct.pack("<IIQ", 1, 0, 0)     # VIRTIO_BLK_T_OUT
    blk_getid = struct.pack("<IIQ", 8, 0, 0)   # VIRTIO_BLK_T_GET_ID
    blk_discard = struct.pack("<IIQ", 11, 0, 0) + struct.pack("<QII", 4, 8, 0)
    # A read: header, 512-byte data, status.
    put("virtqueue", "blk-read", image(8, 0, [(0x1000, 16, NEXT, 1), (0x1100, 512, NEXT | WRITE, 2), (0x1300, 1, WRITE, 0)],
                                       [0], extra=[(0x1000, blk_in)]))
    put("virtqueue", "blk-write-getid", image(8, 2, [(0x1000, 16, NEXT, 1), (0x1100, 512, NEXT, 2), (0x1300, 1, WRITE, 0),
                                                     (0x1010, 16, NEXT, 4), (0x1400, 21, WRITE, 0)],
                                              [0, 3], extra=[(0x1000, blk_out), (0x1010, blk_getid)]))
    # An indirect chain (INDIRECT_DESC negotiated): table at 0x1800 with a discard request.
    table = struct.pack("<QIHH", 0x1000, 32, NEXT, 1) + struct.pack("<QIHH", 0x1300, 1, WRITE, 0)
    put("virtqueue", "blk-indirect-discard", image(4, 1, [(0x1800, 32, INDIRECT, 0)], [0],
                                                   extra=[(0x1000, blk_discard), (0x1800, table)]))
    # Hostile: a loop and a buffer past the end of RAM.
    put("virtqueue", "loop-and-oob", image(4, 0, [(0x1000, 16, NEXT, 1), (0x1010, 16, NEXT, 0), (0xfffff000, 64, 0, 0)], [0, 2]))


# ---- virtio_pci: byte 0 RAM size, then ops (see virtio_pci_fuzz.cpp) ----
def virtio_pci():
    ops = bytearray([1])  # 8 KiB RAM

    def bar_write(off, width_log, value):
        ops.extend(struct.pack("<BHBQ", 3, off, width_log, value))

    def bar_read(off, width_log):
        ops.extend(struct.pack("<BHB", 2, off, width_log))

    def ram_write(off, data):
        ops.extend(struct.pack("<BHB", 6, off, len(data)) + data)

    # Config space: enable memory decoding and bus mastering, read the capability list.
    ops.extend(struct.pack("<BHBI", 1, 0x04, 1, 0x0006))
    ops.extend(struct.pack("<BHB", 0, 0x34, 0))
    ops.extend(struct.pack("<BI", 5, 0xc0000000))  # BAR0 mapped
    # virtio_pci_common_cfg (§4.1.4.3): status ACK|DRIVER, features, FEATURES_OK, queue 0.
    bar_write(0x14, 0, 1)
    bar_write(0x14, 0, 3)
    bar_write(0x00, 2, 0)
    bar_read(0x04, 2)
    bar_write(0x08, 2, 0)
    bar_write(0x0c, 2, 0)  # driver_feature[0..31] = 0
    bar_write(0x08, 2, 1)
    bar_write(0x0c, 2, 1)  # driver_feature[32..63] = VERSION_1
    bar_write(0x14, 0, 0x0b)
    bar_write(0x16, 1, 0)  # queue_select 0
    bar_write(0x18, 1, 8)  # queue_size 8
    bar_write(0x20, 3, 0x0000)  # desc
    bar_write(0x28, 3, 0x0080)  # driver (avail)
    bar_write(0x30, 3, 0x00c0)  # device (used)
    bar_write(0x1c, 1, 1)  # queue_enable
    bar_write(0x14, 0, 0x0f)  # DRIVER_OK
    # One chain: a 16-byte readable buffer and a 1-byte writable one; avail idx 1.
    ram_write(0x0000, struct.pack("<QIHH", 0x1000, 16, 1, 1) + struct.pack("<QIHH", 0x1100, 1, 2, 0))
    ram_write(0x0080, struct.pack("<HHH", 0, 1, 0))
    ops.extend(b"\x04\x00")  # notify queue 0
    bar_write(0x3000, 1, 0)  # trapped notify write
    bar_read(0x1000, 0)      # ISR (read-to-clear)
    put("virtio_pci", "bring-up", bytes(ops))
    # Reset then MSI-X enable through config space.
    ops2 = bytearray(ops)
    ops2.extend(struct.pack("<BHBQ", 3, 0x14, 0, 0))
    ops2.extend(struct.pack("<BHB", 0, 0x40, 2))
    put("virtio_pci", "bring-up-reset", bytes(ops2))


# ---- bzimage: kernel images (synthetic_images.h's make_bzimage, smaller) ----
# ---- virtio_net: features byte, queue-size byte, then operations (virtio_net_fuzz.cpp) ----
def virtio_net():
    def rx(*lens):
        return bytes([0, len(lens) - 1]) + b"".join(struct.pack("<H", n) for n in lens)

    def tx(length, pieces=1, fill=0x11):
        return bytes([1, pieces - 1]) + struct.pack("<HB", length, fill)

    def send(length, fill=0x22):
        return bytes([2]) + struct.pack("<HB", length, fill)

    KICK_RX, KICK_TX, PASS, DRAIN, RESET = b"\x03", b"\x04", b"\x05", b"\x06", b"\x08"
    plain = (rx(1530) * 4 + send(76) + send(1526) + send(90) + KICK_RX + PASS +
             tx(76) + tx(600, 2) + tx(20) + KICK_TX + PASS + DRAIN)
    put("virtio_net", "plain", bytes([0, 4]) + plain)
    # MRG_RXBUF + GUEST_TSO4: small buffers, a frame that spans several, one that must wait for more.
    merged = (rx(1536) * 6 + send(4000) + send(64) + KICK_RX + PASS + send(9000) + PASS +
              rx(1536) * 6 + KICK_RX + PASS + tx(3000, 3) + KICK_TX + PASS + DRAIN)
    put("virtio_net", "mergeable", bytes([0x05, 6]) + merged)
    # MRG_RXBUF + GUEST_TSO4, a run of small frames that narrows the read window to none (read
    # into the bounce area, copied), then frames that span chains or wait for more from there.
    small_run = (rx(600) * 110 + KICK_RX + PASS + send(70) * 66 + PASS + send(1000) + send(1500) + PASS +
                 send(20000) + PASS + rx(1536) * 20 + KICK_RX + PASS + send(80) + PASS + DRAIN)
    put("virtio_net", "mergeable-small-run", bytes([0x05, 7]) + small_run)
    # EVENT_IDX + INDIRECT_DESC, a reset with a frame half delivered, then traffic again.
    resets = (rx(600, 600) + rx(2000) + send(3000) + KICK_RX + PASS + RESET + rx(1530, 10) + send(100) +
              KICK_RX + PASS + tx(200, 2) + KICK_TX + PASS + DRAIN)
    put("virtio_net", "event-idx-indirect-reset", bytes([0x0f, 3]) + resets)
    # A descriptor scribbled over after posting (the checks stop, the sanitizers go on).
    scribble = rx(1530) + bytes([7]) + struct.pack("<IB", 0, 16) + b"\xff" * 16 + send(80) + KICK_RX + PASS
    put("virtio_net", "scribble", bytes([0x01, 2]) + scribble)


# ---- virtio_blk: flags byte, queue-size byte, then operations (virtio_blk_fuzz.cpp) ----
def virtio_blk():
    IN, OUT, FLUSH, GET_ID, DISCARD, WZ = range(6)

    def req(kind, sector, lens=(), fill=0x10):
        return (bytes([0, kind]) + struct.pack("<HB", sector, len(lens)) +
                b"".join(struct.pack("<H", n) for n in lens) + bytes([fill]))

    KICK, KICK_NOWAIT, RESET = b"\x01", b"\x02", b"\x04"
    rw = (req(OUT, 3, (512, 1024)) + KICK + req(IN, 3, (1536,)) + KICK + req(FLUSH, 0) + KICK +
          req(GET_ID, 0, (20,)) + KICK + req(IN, 130, (512,)) + KICK + req(IN, 0, (100,)) + KICK +
          req(9, 0, (512,)) + KICK + req(IN, 3, (512,), fill=0x11) + KICK)
    put("virtio_blk", "read-write", bytes([0x04, 6]) + rw)
    batch = b"".join(req(OUT, 8 * i, (4096,), fill=i) for i in range(8)) + KICK + req(IN, 0, (4096, 4096)) + KICK
    put("virtio_blk", "uring-event-idx-poll", bytes([0x13, 5]) + batch)
    put("virtio_blk", "read-only", bytes([0x08, 4]) + req(OUT, 1, (512,)) + KICK + req(IN, 1, (512,)) + KICK +
        req(FLUSH, 0) + KICK)
    inflight = b"".join(req(IN, i, (2048,)) for i in range(4)) + KICK_NOWAIT + RESET + req(OUT, 5, (512,)) + KICK
    put("virtio_blk", "reset-in-flight", bytes([0x00, 3]) + inflight)
    put("virtio_blk", "discard-write-zeroes", bytes([0x00, 4]) + req(DISCARD, 0, (16,)) + KICK +
        req(WZ, 0, (16,), fill=0) + KICK + req(IN, 0, (512,)) + KICK)


# ---- virtio_console: features byte, queue-size byte, then operations (virtio_console_fuzz.cpp) ----
def virtio_console():
    def rx(*lens):
        return bytes([0, len(lens) - 1, *lens])

    def tx(*lens, fill=0x41):
        return bytes([1, len(lens) - 1, *lens, fill])

    def typed(length8, fill=0x61):
        return bytes([2, length8, fill])

    KICK_RX, KICK_TX, RESET = b"\x03", b"\x04", b"\x08"
    chat = (rx(64) * 4 + typed(10) + KICK_RX + tx(20, 30) + KICK_TX + bytes([5, 0x21]) + bytes([6, 132, 43]) +
            typed(100) + rx(255, 255) + KICK_RX + KICK_TX)
    put("virtio_console", "chat", bytes([0x00, 4]) + chat)
    # EVENT_IDX + INDIRECT_DESC; input waits over a reset (it is the backend's), output does not.
    resets = typed(40) + tx(16) + RESET + rx(200, 200) + KICK_RX + tx(8, 8, 8) + KICK_TX + typed(255) + typed(255) + KICK_RX
    put("virtio_console", "event-idx-indirect-reset", bytes([0x03, 3]) + resets)
    put("virtio_console", "scribble", bytes([0x00, 2]) + rx(32) + bytes([7]) + struct.pack("<IB", 0, 8) + b"\xff" * 8 +
        typed(4) + KICK_RX)
    # A named port (MULTIPORT): the handshake, input held until PORT_OPEN, then closed again.
    def control(event, port, value):  # port 0, 1 for the DEVICE_READY id (VIRTIO_CONSOLE_BAD_ID), 2 for port 1
        return bytes([10, event, port, value])

    def control_rx(length):
        return bytes([9, length])

    port = (control_rx(200) * 4 + control(0, 1, 1) + control(3, 0, 1) + rx(64) + typed(3) + KICK_RX +
            control(6, 0, 1) + tx(12) + KICK_TX + control(6, 0, 0) + typed(2) + rx(16) + KICK_RX + control_rx(8) +
            control(0, 1, 1))
    put("virtio_console", "named-port", bytes([0x04, 4]) + port)
    # The host side closed at PORT_READY, then a client comes and goes.
    host = (control_rx(200) * 6 + bytes([11, 0]) + control(0, 1, 1) + control(3, 0, 1) + bytes([11, 1]) +
            control(6, 0, 1) + bytes([11, 0]) + bytes([11, 1]))
    put("virtio_console", "named-port-host", bytes([0x04, 4]) + host)
    # Two ports: port 1 made ready and opened through the control queue, its host side comes
    # and goes, and port 0's input still waits for port 0's own PORT_OPEN.
    two = (control_rx(200) * 8 + control(0, 1, 1) + control(3, 2, 1) + control(3, 0, 1) + control(6, 2, 1) + rx(64) +
           typed(3) + KICK_RX + bytes([11, 2]) + bytes([11, 3]) + control(6, 0, 1) + KICK_RX + control(6, 2, 0))
    put("virtio_console", "two-ports", bytes([0x04, 4]) + two)
    # The console port (unnamed port 0) beside named port 1: CONSOLE_PORT, then resizes as RESIZE
    # control messages, and port 0 opened by the driver as Linux opens a console port.
    con = (control_rx(200) * 8 + control(0, 1, 1) + control(3, 0, 1) + control(3, 2, 1) + bytes([6, 132, 43]) +
           control(6, 0, 1) + rx(64) + typed(3) + KICK_RX + bytes([6, 80, 25]))
    put("virtio_console", "console-port", bytes([0x0C, 4]) + con)


def bzimage():
    def make(version=0x020F, setup_sects=1, loadflags=1, xloadflags=1, payload=512, relocatable=1,
             init_size=0x40000, pref_address=0x100000):
        setup = (setup_sects or 4) + 1
        img = bytearray(setup * 512 + payload)
        struct.pack_into("<B", img, 0x1F1, setup_sects)
        struct.pack_into("<I", img, 0x1F4, payload // 16)        # syssize
        struct.pack_into("<H", img, 0x1FA, 0xFFFF)               # vid_mode
        struct.pack_into("<H", img, 0x1FE, 0xAA55)               # boot_flag
        struct.pack_into("<H", img, 0x200, 0xEB | ((0x26C - 0x202) << 8))
        img[0x202:0x206] = b"HdrS"
        struct.pack_into("<H", img, 0x206, version)
        struct.pack_into("<B", img, 0x211, loadflags)
        struct.pack_into("<I", img, 0x214, 0x100000)             # code32_start
        struct.pack_into("<I", img, 0x22C, 0x7FFFFFFF)           # initrd_addr_max
        struct.pack_into("<I", img, 0x230, 0x200000)             # kernel_alignment
        struct.pack_into("<B", img, 0x234, relocatable)
        struct.pack_into("<B", img, 0x235, 21)                   # min_alignment
        struct.pack_into("<H", img, 0x236, xloadflags)
        struct.pack_into("<I", img, 0x238, 2047)                 # cmdline_size
        struct.pack_into("<Q", img, 0x258, pref_address)
        struct.pack_into("<I", img, 0x260, init_size)
        for i in range(payload):
            img[setup * 512 + i] = (i * 7 + 3) & 0xFF
        return bytes(img)

    put("bzimage", "bzimage-2.15", make())
    put("bzimage", "bzimage-2.15-initrd", make(payload=513))  # odd length: loaded with an initrd
    put("bzimage", "bzimage-2.06-not-relocatable", make(version=0x0206, relocatable=0, xloadflags=0))
    put("bzimage", "bzimage-setup-sects-0", make(setup_sects=0, payload=256))
    # Multiboot v1 a.out kludge: header at 0 with load addresses.
    flags = 0x00010003
    mb = bytearray(1024)
    struct.pack_into("<III", mb, 0, 0x1BADB002, flags, (-(0x1BADB002 + flags)) & 0xFFFFFFFF)
    struct.pack_into("<IIIII", mb, 12, 0x100000, 0x100000, 0x100400, 0x101000, 0x100020)
    put("bzimage", "multiboot-aout", bytes(mb))
    # Multiboot ELF32: one PT_LOAD at 1 MiB.
    elf = bytearray(0x300)
    elf[0:16] = b"\x7fELF\x01\x01\x01" + bytes(9)
    struct.pack_into("<HHIIIIIHHHHHH", elf, 16, 2, 3, 1, 0x100040, 52, 0, 0, 52, 32, 1, 40, 0, 0)
    struct.pack_into("<IIIIIIII", elf, 52, 1, 0x100, 0x100000, 0x100000, 0x200, 0x1000, 5, 0x1000)
    mflags = 0x00000003
    struct.pack_into("<III", elf, 0x100, 0x1BADB002, mflags, (-(0x1BADB002 + mflags)) & 0xFFFFFFFF)
    put("bzimage", "multiboot-elf32", bytes(elf))
    vmlinuz = os.path.join(ROOT, "..", "tests", "fixtures", "downloaded", "vmlinuz")
    if os.path.exists(vmlinuz):
        with open(vmlinuz, "rb") as f:
            put("bzimage", "debian-vmlinuz-1k", f.read(1024))


# ---- pci_config: sysfs config files ----
def pci_config():
    def header(vendor, device, header_type, cap_ptr, status=0x10):
        c = bytearray(256)
        struct.pack_into("<HHHH", c, 0, vendor, device, 0x0406, status)
        c[0x0e] = header_type
        c[0x34] = cap_ptr
        return c

    # A root port: PM at 0x40, PCIe (root port, type 4) at 0x60; extended: AER at 0x100,
    # ACS at 0x148 with SV|RR|CR|UF implemented and enabled.
    c = header(0x8086, 0xa110, 0x81, 0x40)
    c[0x40:0x42] = bytes([0x01, 0x60])
    c[0x60:0x62] = bytes([0x10, 0x00])
    struct.pack_into("<H", c, 0x62, 0x0042)  # PCI_EXP_FLAGS: version 2, type 4 (root port)
    ext = bytearray(4096)
    ext[:256] = c
    struct.pack_into("<I", ext, 0x100, 0x0001 | (1 << 16) | (0x148 << 20))
    struct.pack_into("<I", ext, 0x148, 0x000D | (1 << 16) | (0 << 20))
    struct.pack_into("<HH", ext, 0x14C, 0x001D, 0x001D)
    put("pci_config", "root-port-acs-4096", bytes(ext))
    put("pci_config", "root-port-256", bytes(c))
    put("pci_config", "unprivileged-64", bytes(c[:64]))
    # A multifunction endpoint without ACS, PCIe type 0, and a capability loop.
    e = header(0x10de, 0x1c82, 0x80, 0x60)
    e[0x60:0x62] = bytes([0x10, 0x60])
    struct.pack_into("<H", e, 0x62, 0x0002)
    ext2 = bytearray(4096)
    ext2[:256] = e
    struct.pack_into("<I", ext2, 0x100, 0x0001 | (1 << 16) | (0x100 << 20))  # loops to itself
    put("pci_config", "endpoint-loop-4096", bytes(ext2))


def main():
    manifests()
    qmp()
    virtqueue()
    virtio_pci()
    virtio_net()
    virtio_blk()
    virtio_console()
    bzimage()
    pci_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
