// virtio_net.bin: a virtio-net driver test (virtio 1.2 §5.1) over the modern PCI transport
// (lib/virtio_pci.h). Finds 1af4:1041 on bus 0, negotiates VERSION_1 and MAC (bit 5), reads
// the MAC from the device configuration, posts kRxBuffers receive buffers on receiveq1 (queue
// 0), sends one frame on transmitq1 (queue 1) and waits until the device has used it:
//   a broadcast ARP request "who has 10.0.2.2, tell 10.0.2.15" from the device's MAC, padded
//   to 60 bytes with the marker "vmm-virtio-net-tx" right after the ARP body.
// Each buffer starts with the 12-byte struct virtio_net_hdr (§5.1.6: num_buffers is always
// there with VERSION_1); no offloads are negotiated, so the header is all zero.
// If net_options.wait_rx is non-zero (tests/integration/guests_virtio_qemu.sh patches the image:
// find the 16-byte tag, the u32 follows), it also waits a bounded time for one received frame
// and checks it is the ARP reply (a user-mode network such as QEMU's slirp answers for
// 10.0.2.2).
// Output on COM1:
//   virtio-net: 00:03.0 1af4:1041, common@... notify@...*4 isr@... device@...
//   virtio-net: mac 52:54:00:12:34:56
//   virtio-net: posted 2 rx buffers
//   virtio-net: sent 60-byte broadcast ARP frame
//   virtio-net: rx 42+ bytes from 52:55:0a:00:02:02 type 0806 arp reply 10.0.2.2   (wait_rx only)
//   virtio-net: <N> frames sent                                                      (repeat_tx = N > 0 only)
//   virtio-net: ok
// Exit (debug-exit value): 0x4e success; 0x10..0x19 a driver step (lib/virtio_pci.h); or one of
// kExit* below, after a "virtio-net: FAIL <step>" line.
#include "lib/debug_exit.h"
#include "lib/fail.h"
#include "lib/guest.h"
#include "lib/serial.h"
#include "lib/string.h"
#include "lib/virtio_pci.h"

enum {
    kExitOk = 0x4e,
    kExitNoMac = 0x20,     // the device does not offer VIRTIO_NET_F_MAC
    kExitRxPost = 0x21,    // the receive buffers did not fit the ring
    kExitTx = 0x22,        // the transmit chain was not used in time
    kExitRxTimeout = 0x23, // wait_rx: nothing received in time
    kExitRxFrame = 0x24,   // wait_rx: the frame received is not the expected ARP reply

    kNetFeatureMac = 5,
    kRxQueue = 0,
    kTxQueue = 1,
    kNetHdrSize = 12,  // struct virtio_net_hdr with num_buffers (VERSION_1)
    kFrameSize = 60,   // minimum Ethernet frame without FCS
    kRxBufferSize = kNetHdrSize + 1514,  // no MRG_RXBUF: one buffer takes a whole frame
    kRxBuffers = 2,
};
static const uint32_t kRxWaitNs = 2000u * 1000 * 1000;

// Patched by the test to turn the receive check on. repeat_tx N > 0 (the u32 after wait_rx):
// after the checks, the same frame N more times, each sent and waited for on its own, then
// "virtio-net: N frames sent" before "ok" (bench/vm_bench.py netio times a run with N against
// one without, under each VMM). volatile: read from the image at run time.
struct net_options {
    char tag[16];
    uint32_t wait_rx;
    uint32_t repeat_tx;
};
volatile struct net_options net_options __attribute__((used)) = {"VMM-NET-RX-WAIT:", 0, 0};

static const uint8_t kGuestIp[4] = {10, 0, 2, 15};
static const uint8_t kPeerIp[4] = {10, 0, 2, 2};
static const char kMarker[] = "vmm-virtio-net-tx";

static struct virtio_dev dev;
static struct virtq rxq;
static struct virtq txq;
static uint8_t mac[6];
static uint8_t tx_buf[kNetHdrSize + kFrameSize] __attribute__((aligned(16)));
static uint8_t rx_bufs[kRxBuffers][kRxBufferSize] GUEST_NOINIT;

static void print_hex2(uint8_t v) {
    serial_putc("0123456789abcdef"[v >> 4]);
    serial_putc("0123456789abcdef"[v & 0xf]);
}

static void print_mac(const uint8_t* m) {
    for (int i = 0; i < 6; ++i) {
        if (i) serial_putc(':');
        print_hex2(m[i]);
    }
}

static __attribute__((noreturn)) void fail(uint32_t code, const char* step) {
    guest_fail("virtio-net", code, step);
}

static void check(enum virtio_error e, const char* step) {
    if (e != kVirtioOk) fail(e, step);
}

static void build_frame(uint8_t* f) {
    // tx_buf is in .bss, so already zero: the header, the ARP target MAC and the padding.
    memset(f, 0xff, 6);  // broadcast
    memcpy(f + 6, mac, 6);
    f[12] = 0x08;  // ethertype ARP
    f[13] = 0x06;
    f[15] = 1;     // htype Ethernet
    f[16] = 0x08;  // ptype IPv4
    f[18] = 6;     // hlen
    f[19] = 4;     // plen
    f[21] = 1;     // op request
    memcpy(f + 22, mac, 6);
    memcpy(f + 28, kGuestIp, 4);
    memcpy(f + 38, kPeerIp, 4);
    memcpy(f + 42, kMarker, sizeof(kMarker) - 1);
}

static void receive_one(void) {
    uint32_t len = 0;
    int id = virtq_wait_used(&rxq, kRxWaitNs, &len);
    if (id == -1) fail(kExitRxTimeout, "rx wait");
    if (id < 0 || id >= kRxBuffers) fail(kVirtioErrRing, "rx used id");
    const uint8_t* f = rx_bufs[id] + kNetHdrSize;
    if (len < kNetHdrSize + 42 || len > kRxBufferSize) fail(kExitRxFrame, "rx length");
    serial_puts("virtio-net: rx ");
    serial_put_dec(len - kNetHdrSize);
    serial_puts(" bytes from ");
    print_mac(f + 6);
    serial_puts(" type ");
    print_hex2(f[12]);
    print_hex2(f[13]);
    bool arp_reply = f[12] == 0x08 && f[13] == 0x06 && f[20] == 0 && f[21] == 2 && memcmp(f, mac, 6) == 0 &&
                     memcmp(f + 28, kPeerIp, 4) == 0 && memcmp(f + 32, mac, 6) == 0;
    if (!arp_reply) {
        serial_puts(", not the ARP reply\n");
        fail(kExitRxFrame, "rx frame");
    }
    serial_puts(" arp reply 10.0.2.2\n");
}

void guest_main(uint32_t magic, const struct multiboot_info* mbi) {
    (void)magic;
    (void)mbi;
    check(virtio_pci_probe(&dev, kVirtioPciDeviceNet), "probe");
    if (!virtio_pci_has_config(&dev)) fail(kVirtioErrCaps, "no device config");
    virtio_pci_print(&dev, "virtio-net");
    check(virtio_pci_negotiate(&dev, 1ull << kNetFeatureMac), "features");
    if (!(dev.features & (1ull << kNetFeatureMac))) fail(kExitNoMac, "no MAC feature");
    check(virtio_pci_setup_queue(&dev, &rxq, kRxQueue), "queue 0 (rx)");
    check(virtio_pci_setup_queue(&dev, &txq, kTxQueue), "queue 1 (tx)");
    // §5.1.4: mac[6] at offset 0, valid with VIRTIO_NET_F_MAC; readable before DRIVER_OK.
    for (uint32_t i = 0; i < 6; ++i) mac[i] = virtio_cfg_read8(&dev, i);
    check(virtio_pci_driver_ok(&dev), "driver ok");
    serial_puts("virtio-net: mac ");
    print_mac(mac);
    serial_putc('\n');

    // Receive buffers first, so that a reply has somewhere to go.
    for (uint32_t i = 0; i < kRxBuffers; ++i) {
        struct virtq_buf b = {rx_bufs[i], kRxBufferSize, true};
        if (virtq_submit(&rxq, &b, 1) != (int)i) fail(kExitRxPost, "rx post");
    }
    virtq_kick(&rxq);
    serial_puts("virtio-net: posted ");
    serial_put_dec(kRxBuffers);
    serial_puts(" rx buffers\n");

    build_frame(tx_buf + kNetHdrSize);
    struct virtq_buf b = {tx_buf, sizeof(tx_buf), false};
    enum virtio_error e = virtq_transfer(&txq, &b, 1, 0);
    if (e != kVirtioOk) fail(e == kVirtioErrTimeout ? kExitTx : e, "tx");
    serial_puts("virtio-net: sent ");
    serial_put_dec(kFrameSize);
    serial_puts("-byte broadcast ARP frame\n");

    if (net_options.wait_rx) receive_one();

    const uint32_t frames = net_options.repeat_tx;
    if (frames) {
        for (uint32_t i = 0; i < frames; ++i) {
            e = virtq_transfer(&txq, &b, 1, 0);
            if (e != kVirtioOk) fail(e == kVirtioErrTimeout ? kExitTx : e, "repeated tx");
        }
        serial_puts("virtio-net: ");
        serial_put_dec(frames);
        serial_puts(" frames sent\n");
    }

    virtio_pci_read_isr(&dev);
    serial_puts("virtio-net: ok\n");
    debug_exit(kExitOk);
}
