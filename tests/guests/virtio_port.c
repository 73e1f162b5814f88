// virtio_port.bin: a virtio-console MULTIPORT driver (virtio 1.2 §5.3.6.2), the way Linux's
// virtio_console finds a named port such as the QEMU guest agent's. Finds 1af4:1043 on bus 0,
// negotiates MULTIPORT, sets up the control queues (2, 3) and the queues of ports 0 and 1 (as
// far as max_nr_ports reaches), posts one receive buffer on each port, then DRIVER_OK. It sends
// DEVICE_READY, answers each PORT_ADD with PORT_READY, and when a port is named kPortName:
// checks that no input reached it yet (Linux drops input for a port nobody has open, so a
// device must hold it), opens it (PORT_OPEN 1), writes kHello on it, and waits up to
// kInputWaitNs for input, which it prints.
// Output on COM1:
//   virtio-port: 00:07.0 1af4:1043, common@... notify@...*4 isr@... device@...
//   virtio-port: max_nr_ports N
//   virtio-port: port P added
//   virtio-port: port P is "vmm.test.port"
//   virtio-port: port P is a console     (a console port: QEMU's virtconsole, the anchor's first
//                                         unnamed console beside named ones)
//   virtio-port: port P opened by the host
//   virtio-port: port P: sent 19 bytes
//   virtio-port: received N bytes: <bytes>       (or: virtio-port: no input)
//   virtio-port: ok
// Exit (debug-exit value): 0x44 success; 0x10..0x19 a driver step (lib/virtio_pci.h); or a
// kExit* code below after "virtio-port: FAIL <step>".
#include "lib/debug_exit.h"
#include "lib/fail.h"
#include "lib/guest.h"
#include "lib/serial.h"
#include "lib/string.h"
#include "lib/virtio_pci.h"

enum {
    kExitOk = 0x44,
    kExitNoMultiport = 0x20,  // the device did not offer VIRTIO_CONSOLE_F_MULTIPORT
    kExitControl = 0x21,      // the control handshake stopped (no message within the wait)
    kExitEarlyInput = 0x22,   // input reached the port before the guest opened it
    kExitTx = 0x23,
    kExitPost = 0x24,

    kFeatureMultiport = 1,  // VIRTIO_CONSOLE_F_MULTIPORT
    kControlRx = 2,
    kControlTx = 3,
    kMaxPorts = 2,  // ports 0 and 1: queues 0/1 and 4/5

    // struct virtio_console_control.event (§5.3.6.2.1)
    kDeviceReady = 0,
    kDeviceAdd = 1,
    kPortReady = 3,
    kConsolePort = 4,
    kPortOpen = 6,
    kPortName = 7,

    // QEMU drops a control message it has no buffer for: enough for every message of two ports
    // (PORT_ADD, CONSOLE_PORT or PORT_NAME, PORT_OPEN) while the guest answers the first.
    kControlBufs = 8,
    kControlBufLen = 160,  // header + a name of up to 152 bytes
};

static const char kName[] = "vmm.test.port";
static const char kHello[] = "virtio-port: hello\n";
static const uint32_t kWaitNs = 1000u * 1000 * 1000;
static const uint32_t kInputWaitNs = 300u * 1000 * 1000;

struct control {
    uint32_t id;
    uint16_t event;
    uint16_t value;
};

static struct virtio_dev dev;
static struct virtq ctrl_rx, ctrl_tx;
static struct virtq port_rx[kMaxPorts], port_tx[kMaxPorts];
static bool port_set_up[kMaxPorts];
static uint8_t ctrl_bufs[kControlBufs][kControlBufLen];
static int ctrl_buf_of_head[kVirtqMaxSize];
static struct control ctrl_out;
static uint8_t rx_bufs[kMaxPorts][64];
static char tx_buf[sizeof(kHello) - 1];

static __attribute__((noreturn)) void fail(uint32_t code, const char* step) {
    guest_fail("virtio-port", code, step);
}

static void check(enum virtio_error e, const char* step) {
    if (e != kVirtioOk) fail(e, step);
}

static void post_control_buf(int i) {
    struct virtq_buf b = {ctrl_bufs[i], kControlBufLen, true};
    const int head = virtq_submit(&ctrl_rx, &b, 1);
    if (head < 0) fail(kExitPost, "control rx post");
    ctrl_buf_of_head[head] = i;
    virtq_kick(&ctrl_rx);
}

static void send_control(uint32_t id, uint16_t event, uint16_t value) {
    ctrl_out.id = id;
    ctrl_out.event = event;
    ctrl_out.value = value;
    struct virtq_buf b = {&ctrl_out, sizeof(ctrl_out), false};
    check(virtq_transfer(&ctrl_tx, &b, 1, 0), "control tx");
}

static void put_port(const char* what, uint32_t port) {
    serial_puts("virtio-port: port ");
    serial_put_dec(port);
    serial_puts(what);
}

void guest_main(uint32_t magic, const struct multiboot_info* mbi) {
    (void)magic;
    (void)mbi;
    check(virtio_pci_probe(&dev, kVirtioPciDeviceConsole), "probe");
    virtio_pci_print(&dev, "virtio-port");
    check(virtio_pci_negotiate(&dev, 1ull << kFeatureMultiport), "features");
    if (!(dev.features & (1ull << kFeatureMultiport))) fail(kExitNoMultiport, "no MULTIPORT");
    const uint32_t max_ports = virtio_cfg_read32(&dev, 4);  // virtio_console_config.max_nr_ports
    serial_puts("virtio-port: max_nr_ports ");
    serial_put_dec(max_ports);
    serial_putc('\n');
    // Queue numbers: port 0 has 0/1, the control queues 2/3, port n >= 1 has 2n+2 / 2n+3.
    check(virtio_pci_setup_queue(&dev, &ctrl_rx, kControlRx), "control rx queue");
    check(virtio_pci_setup_queue(&dev, &ctrl_tx, kControlTx), "control tx queue");
    for (uint32_t p = 0; p < kMaxPorts && p < max_ports; ++p) {
        const uint16_t rx = p == 0 ? 0 : (uint16_t)(2 * p + 2);
        check(virtio_pci_setup_queue(&dev, &port_rx[p], rx), "port rx queue");
        check(virtio_pci_setup_queue(&dev, &port_tx[p], (uint16_t)(rx + 1)), "port tx queue");
        port_set_up[p] = true;
    }
    check(virtio_pci_driver_ok(&dev), "driver ok");
    for (int i = 0; i < kControlBufs; ++i) post_control_buf(i);
    for (uint32_t p = 0; p < kMaxPorts; ++p) {
        if (!port_set_up[p]) continue;
        struct virtq_buf b = {rx_bufs[p], sizeof(rx_bufs[p]), true};
        if (virtq_submit(&port_rx[p], &b, 1) < 0) fail(kExitPost, "port rx post");
        virtq_kick(&port_rx[p]);
    }

    send_control(0xffffffffu, kDeviceReady, 1);  // id: VIRTIO_CONSOLE_BAD_ID, as Linux sends
    int32_t named = -1;
    bool host_open[kMaxPorts] = {false, false};  // each port's PORT_OPEN 1 from the device
    while (named < 0 || !host_open[named]) {
        uint32_t len = 0;
        const int head = virtq_wait_used(&ctrl_rx, kWaitNs, &len);
        if (head < 0) fail(kExitControl, named < 0 ? "no port named vmm.test.port" : "host side never opened");
        const int i = ctrl_buf_of_head[head];
        struct control m;
        memcpy(&m, ctrl_bufs[i], sizeof(m));
        if (len < sizeof(m)) fail(kExitControl, "short control message");
        uint32_t name_len = len - sizeof(m);
        if (name_len && ctrl_bufs[i][sizeof(m) + name_len - 1] == 0) --name_len;  // QEMU sends the NUL too
        const bool ours = m.id < kMaxPorts && port_set_up[m.id];
        if (m.event == kDeviceAdd) {
            put_port(" added\n", m.id);
            send_control(m.id, kPortReady, ours ? 1 : 0);
        } else if (m.event == kPortName && ours) {
            put_port(" is \"", m.id);
            for (uint32_t k = 0; k < name_len; ++k) serial_putc((char)ctrl_bufs[i][sizeof(m) + k]);
            serial_puts("\"\n");
            if (name_len == sizeof(kName) - 1 && memcmp(ctrl_bufs[i] + sizeof(m), kName, name_len) == 0)
                named = (int32_t)m.id;
        } else if (m.event == kPortOpen && ours && m.value == 1) {
            put_port(" opened by the host\n", m.id);
            host_open[m.id] = true;  // a console port's comes too: only the named port's ends the wait
        } else if (m.event == kConsolePort) {
            put_port(" is a console\n", m.id);
        }
        post_control_buf(i);
    }

    const uint32_t p = (uint32_t)named;
    uint32_t len = 0;
    if (virtq_take_used(&port_rx[p], &len) != -1) fail(kExitEarlyInput, "input before the port was opened");
    send_control(p, kPortOpen, 1);

    memcpy(tx_buf, kHello, sizeof(tx_buf));
    struct virtq_buf tx = {tx_buf, sizeof(tx_buf), false};
    enum virtio_error e = virtq_transfer(&port_tx[p], &tx, 1, 0);
    if (e != kVirtioOk) fail(e == kVirtioErrTimeout ? kExitTx : e, "tx");
    put_port("", p);
    serial_puts(": sent ");
    serial_put_dec(sizeof(tx_buf));
    serial_puts(" bytes\n");

    if (virtq_wait_used(&port_rx[p], kInputWaitNs, &len) < 0) {
        serial_puts("virtio-port: no input\n");
    } else {
        serial_puts("virtio-port: received ");
        serial_put_dec(len);
        serial_puts(" bytes: ");
        for (uint32_t k = 0; k < len && k < sizeof(rx_bufs[p]); ++k) serial_putc((char)rx_bufs[p][k]);
        serial_putc('\n');
    }
    virtio_pci_read_isr(&dev);
    serial_puts("virtio-port: ok\n");
    debug_exit(kExitOk);
}
