// virtio_console.bin: a virtio-console driver test (virtio 1.2 §5.3) over the modern PCI
// transport (lib/virtio_pci.h). Finds 1af4:1043 on bus 0, negotiates VERSION_1 only (no SIZE,
// no MULTIPORT, no EMERG_WRITE), sets up port 0's receiveq (queue 0, one small buffer posted)
// and transmitq (queue 1), and writes kHello through the transmitq.
//
// Without VIRTIO_CONSOLE_F_MULTIPORT the device is a single console: queues 0/1 are port 0 and
// there is no control queue, so the driver cannot send PORT_OPEN. QEMU's virtio-serial (with a
// virtconsole, which takes port 0 when it is the first console) then treats port 0 as opened
// by the guest once DRIVER_OK is set, and writes the bytes to the port's chardev. A
// virtserialport (not a console) gets a port number >= 1 and is unreachable from this guest.
// Output on COM1:
//   virtio-console: 00:03.0 1af4:1043, common@... notify@...*4 isr@... device@...
//   virtio-console: device offers <hi>:<lo>, negotiated <hi>:<lo>
//   virtio-console: sent 22 bytes on port 0
//   virtio-console: ok
// Exit (debug-exit value): 0x43 success; 0x10..0x19 a driver step (lib/virtio_pci.h); or
// kExitTx after "virtio-console: FAIL tx".
#include "lib/debug_exit.h"
#include "lib/fail.h"
#include "lib/guest.h"
#include "lib/serial.h"
#include "lib/string.h"
#include "lib/virtio_pci.h"

enum {
    kExitOk = 0x43,
    kExitTx = 0x20,  // the transmit chain was not used in time
    kExitRxPost = 0x21,

    kRxQueue = 0,
    kTxQueue = 1,
};

static const char kHello[] = "virtio-console: hello\n";

static struct virtio_dev dev;
static struct virtq rxq;
static struct virtq txq;
static char tx_buf[sizeof(kHello) - 1];
static uint8_t rx_buf[64];

static __attribute__((noreturn)) void fail(uint32_t code, const char* step) {
    guest_fail("virtio-console", code, step);
}

static void check(enum virtio_error e, const char* step) {
    if (e != kVirtioOk) fail(e, step);
}

static void put_features(uint64_t f) {
    serial_put_hex((uint32_t)(f >> 32));
    serial_putc(':');
    serial_put_hex((uint32_t)f);
}

void guest_main(uint32_t magic, const struct multiboot_info* mbi) {
    (void)magic;
    (void)mbi;
    check(virtio_pci_probe(&dev, kVirtioPciDeviceConsole), "probe");
    virtio_pci_print(&dev, "virtio-console");
    check(virtio_pci_negotiate(&dev, 0), "features");
    serial_puts("virtio-console: device offers ");
    put_features(dev.device_features);
    serial_puts(", negotiated ");
    put_features(dev.features);
    serial_putc('\n');
    check(virtio_pci_setup_queue(&dev, &rxq, kRxQueue), "queue 0 (rx)");
    check(virtio_pci_setup_queue(&dev, &txq, kTxQueue), "queue 1 (tx)");
    check(virtio_pci_driver_ok(&dev), "driver ok");

    struct virtq_buf rx = {rx_buf, sizeof(rx_buf), true};
    if (virtq_submit(&rxq, &rx, 1) < 0) fail(kExitRxPost, "rx post");
    virtq_kick(&rxq);

    memcpy(tx_buf, kHello, sizeof(tx_buf));
    struct virtq_buf tx = {tx_buf, sizeof(tx_buf), false};
    enum virtio_error e = virtq_transfer(&txq, &tx, 1, 0);
    if (e != kVirtioOk) fail(e == kVirtioErrTimeout ? kExitTx : e, "tx");
    serial_puts("virtio-console: sent ");
    serial_put_dec(sizeof(tx_buf));
    serial_puts(" bytes on port 0\n");

    virtio_pci_read_isr(&dev);
    serial_puts("virtio-console: ok\n");
    debug_exit(kExitOk);
}
