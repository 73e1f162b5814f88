// virtio_blk.bin: a virtio-blk driver test (virtio 1.2 §5.2) over the modern PCI transport
// (lib/virtio_pci.h). Finds 1af4:1042 on bus 0, negotiates VERSION_1 (+ FLUSH if offered),
// reads the capacity from the device configuration, then:
//   1. reads sector 0 and prints its first 16 bytes (the test put a known pattern there);
//   2. writes kSector1Pattern to sector 1;
//   3. flushes, if VIRTIO_BLK_F_FLUSH was negotiated;
//   4. reads sector 1 back and compares;
//   5. reads sector <capacity> (one past the end) and expects VIRTIO_BLK_S_IOERR.
// Output on COM1:
//   virtio-blk: 00:03.0 1af4:1042, common@... notify@...*4 isr@... device@...
//   virtio-blk: features <hi>:<lo>, capacity <n> sectors
//   virtio-blk: sector 0: 56 4d 4d ...   (16 bytes, hex)
//   virtio-blk: wrote sector 1
//   virtio-blk: flush ok | virtio-blk: no flush feature
//   virtio-blk: sector 1 read back ok
//   virtio-blk: read past end: IOERR
//   virtio-blk: <N> reads ok            (blk_options.repeat_reads = N > 0 only)
//   virtio-blk: <N> kicks               (blk_options.repeat_kicks = N > 0 only)
//   virtio-blk: ok
// Exit (debug-exit value): 0x42 success; 0x10..0x19 a driver step (lib/virtio_pci.h); or one of
// kExit* below, after a "virtio-blk: FAIL <step>" line.
#include "lib/debug_exit.h"
#include "lib/fail.h"
#include "lib/guest.h"
#include "lib/serial.h"
#include "lib/virtio_pci.h"

// Patched by tests (find the 16-byte tag, the u32s follow): hold_after_flush non-zero stops
// the guest (cli; hlt) right after "flush ok", so a test can kill -9 the VMM with the flushed
// write completed and nothing after it. repeat_reads N > 0: after the checks, N more 4 KiB
// reads one after another (sector 8 * (i % 8)), then "virtio-blk: N reads ok" before "ok": a
// benchmark (bench/vm_bench.py blkio) times a run with N against one without, under each VMM.
// repeat_kicks N > 0: as many notifies of the queue with nothing new in it (the exit alone,
// nothing to wait for), then "virtio-blk: N kicks". volatile: read from the image at run time.
struct blk_options {
    char tag[16];
    uint32_t hold_after_flush;
    uint32_t repeat_reads;
    uint32_t repeat_kicks;
};
volatile struct blk_options blk_options __attribute__((used)) = {"VMM-BLK-HOLD:xxx", 0, 0, 0};

enum {
    kExitOk = 0x42,
    kExitCapacity = 0x20,    // capacity < 2 sectors
    kExitReadSector0 = 0x21,
    kExitWriteSector1 = 0x22,
    kExitFlush = 0x23,
    kExitReadSector1 = 0x24,
    kExitCompare = 0x25,     // sector 1 read back differs from what was written
    kExitPastEnd = 0x26,     // the read past the end did not complete with IOERR

    // §5.2.3 feature bits, §5.2.6 request types and status.
    kBlkFeatureFlush = 9,
    kBlkTypeIn = 0,
    kBlkTypeOut = 1,
    kBlkTypeFlush = 4,
    kBlkStatusOk = 0,
    kBlkStatusIoErr = 1,
    kSectorSize = 512,
    kNoStatus = 0xff,  // what the status byte holds until the device writes it
};

struct virtio_blk_req_header {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

// The byte at offset i of sector 1; tests/integration/guests_virtio_qemu.sh checks the disk
// image for the same formula.
static uint8_t sector1_byte(uint32_t i) { return (uint8_t)(i * 7 + 3); }

static struct virtio_dev dev;
static struct virtq queue;
static struct virtio_blk_req_header header;
static uint8_t status;
static uint8_t sector_buf[kSectorSize] GUEST_NOINIT;
static uint8_t page_buf[4096] GUEST_NOINIT;  // repeat_reads' buffer
static uint8_t readback_buf[kSectorSize] GUEST_NOINIT;

static void print_hex2(uint8_t v) {
    serial_putc("0123456789abcdef"[v >> 4]);
    serial_putc("0123456789abcdef"[v & 0xf]);
}

static __attribute__((noreturn)) void fail(uint32_t code, const char* step) {
    guest_fail("virtio-blk", code, step);
}

static void check(enum virtio_error e, const char* step) {
    if (e != kVirtioOk) fail(e, step);
}

// One request: header, optional data buffer of `len` bytes, status. Returns the status byte the
// device wrote (kNoStatus if it wrote none) or fails the guest with `code` when the chain never
// completes.
static uint8_t request_len(uint32_t type, uint64_t sector, uint8_t* data, uint32_t len, bool device_writes,
                           uint32_t code, const char* step) {
    header.type = type;
    header.reserved = 0;
    header.sector = sector;
    status = kNoStatus;
    struct virtq_buf bufs[3];
    uint32_t n = 0;
    bufs[n++] = (struct virtq_buf){&header, sizeof(header), false};
    if (data) bufs[n++] = (struct virtq_buf){data, len, device_writes};
    bufs[n++] = (struct virtq_buf){&status, 1, true};
    uint32_t written = 0;
    enum virtio_error e = virtq_transfer(&queue, bufs, n, &written);
    if (e != kVirtioOk) {
        serial_puts("virtio-blk: ");
        serial_puts(step);
        serial_puts(": virtqueue error ");
        serial_put_hex(e);
        serial_putc('\n');
        fail(code, step);
    }
    return *(volatile uint8_t*)&status;
}

// A request with one sector of data (or none).
static uint8_t request(uint32_t type, uint64_t sector, uint8_t* data, bool device_writes, uint32_t code,
                       const char* step) {
    return request_len(type, sector, data, kSectorSize, device_writes, code, step);
}

static void expect_ok(uint8_t s, uint32_t code, const char* step) {
    if (s == kBlkStatusOk) return;
    serial_puts("virtio-blk: ");
    serial_puts(step);
    serial_puts(": status ");
    serial_put_hex(s);
    serial_putc('\n');
    fail(code, step);
}

void guest_main(uint32_t magic, const struct multiboot_info* mbi) {
    (void)magic;
    (void)mbi;
    check(virtio_pci_probe(&dev, kVirtioPciDeviceBlock), "probe");
    if (!virtio_pci_has_config(&dev)) fail(kVirtioErrCaps, "no device config");
    virtio_pci_print(&dev, "virtio-blk");
    check(virtio_pci_negotiate(&dev, 1ull << kBlkFeatureFlush), "features");
    check(virtio_pci_setup_queue(&dev, &queue, 0), "queue 0");
    check(virtio_pci_driver_ok(&dev), "driver ok");

    uint64_t capacity = virtio_cfg_read64(&dev, 0);  // §5.2.4: le64 capacity, 512-byte sectors
    serial_puts("virtio-blk: features ");
    serial_put_hex((uint32_t)(dev.features >> 32));
    serial_putc(':');
    serial_put_hex((uint32_t)dev.features);
    serial_puts(", capacity ");
    if (capacity >> 32) {
        serial_puts("0x");
        serial_put_hex((uint32_t)(capacity >> 32));
        serial_put_hex((uint32_t)capacity);  // not zero padded: only a marker for huge disks
    } else {
        serial_put_dec((uint32_t)capacity);
    }
    serial_puts(" sectors\n");
    if (capacity < 2) fail(kExitCapacity, "capacity");

    // 1. Sector 0.
    expect_ok(request(kBlkTypeIn, 0, sector_buf, true, kExitReadSector0, "read sector 0"), kExitReadSector0,
              "read sector 0");
    serial_puts("virtio-blk: sector 0:");
    for (uint32_t i = 0; i < 16; ++i) {
        serial_putc(' ');
        print_hex2(sector_buf[i]);
    }
    serial_putc('\n');

    // 2. Write sector 1.
    for (uint32_t i = 0; i < kSectorSize; ++i) sector_buf[i] = sector1_byte(i);
    expect_ok(request(kBlkTypeOut, 1, sector_buf, false, kExitWriteSector1, "write sector 1"), kExitWriteSector1,
              "write sector 1");
    serial_puts("virtio-blk: wrote sector 1\n");

    // 3. Flush.
    if (dev.features & (1ull << kBlkFeatureFlush)) {
        expect_ok(request(kBlkTypeFlush, 0, 0, false, kExitFlush, "flush"), kExitFlush, "flush");
        serial_puts("virtio-blk: flush ok\n");
        if (blk_options.hold_after_flush) {
            // For the data-safety test: the flushed write must survive a kill -9 of the VMM now.
            serial_puts("virtio-blk: holding\n");
            for (;;) __asm__ volatile("cli; hlt");
        }
    } else {
        serial_puts("virtio-blk: no flush feature\n");
    }

    // 4. Read sector 1 back into a buffer that holds something else first.
    for (uint32_t i = 0; i < kSectorSize; ++i) readback_buf[i] = (uint8_t)~sector1_byte(i);
    expect_ok(request(kBlkTypeIn, 1, readback_buf, true, kExitReadSector1, "read sector 1"), kExitReadSector1,
              "read sector 1");
    for (uint32_t i = 0; i < kSectorSize; ++i) {
        if (readback_buf[i] != sector1_byte(i)) {
            serial_puts("virtio-blk: sector 1 byte ");
            serial_put_dec(i);
            serial_puts(" is ");
            print_hex2(readback_buf[i]);
            serial_puts(", wrote ");
            print_hex2(sector1_byte(i));
            serial_putc('\n');
            fail(kExitCompare, "compare sector 1");
        }
    }
    serial_puts("virtio-blk: sector 1 read back ok\n");

    // 5. One past the end: §5.2.6.1 the device must not succeed.
    uint8_t s = request(kBlkTypeIn, capacity, sector_buf, true, kExitPastEnd, "read past end");
    if (s != kBlkStatusIoErr) {
        serial_puts("virtio-blk: read past end: status ");
        serial_put_hex(s);
        serial_puts(", want IOERR (1)\n");
        fail(kExitPastEnd, "read past end");
    }
    serial_puts("virtio-blk: read past end: IOERR\n");

    const uint32_t reads = blk_options.repeat_reads;
    if (reads) {
        if (capacity < 64) fail(kExitCapacity, "capacity for repeated reads");
        for (uint32_t i = 0; i < reads; ++i)
            expect_ok(request_len(kBlkTypeIn, 8 * (i % 8), page_buf, sizeof page_buf, true, kExitReadSector0, "repeated read"),
                      kExitReadSector0, "repeated read");
        serial_puts("virtio-blk: ");
        serial_put_dec(reads);
        serial_puts(" reads ok\n");
    }
    const uint32_t kicks = blk_options.repeat_kicks;
    if (kicks) {
        for (uint32_t i = 0; i < kicks; ++i) virtq_kick(&queue);
        serial_puts("virtio-blk: ");
        serial_put_dec(kicks);
        serial_puts(" kicks\n");
    }

    virtio_pci_read_isr(&dev);
    serial_puts("virtio-blk: ok\n");
    debug_exit(kExitOk);
}
