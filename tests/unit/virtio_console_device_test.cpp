// VirtioConsole (devicemodel/virtio-console/virtio_console.h) driven through
// tests/support/virtqueue_driver.h: output, input with and without RX buffers, the bound on
// pending input, config space, interrupts, hostile rings and reset.
#include "devicemodel/virtio-console/virtio_console.h"

#include "tests/support/fakes.h"
#include "tests/support/virtqueue_driver.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

namespace vmm::virtio_console {
namespace {

using Drv = test::VirtqueueDriver;
using virtio::feature_bit;

std::span<const std::uint8_t> bytes(const std::string& s) { return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}; }

struct VirtioConsoleTest : ::testing::Test {
    test::FakeGuestMemory fake{{{0, 0x20000}}};
    const GuestMemory& mem = fake.memory();
    std::string out;
    VirtioConsoleOptions opts = [] {
        VirtioConsoleOptions o;
        o.name = "contest";
        o.queue_size = 16;
        o.max_pending_input = 8;
        return o;
    }();
    std::unique_ptr<VirtioConsole> con;
    Drv rxq{mem, 0x1000, 16};
    Drv txq{mem, 0x2000, 16};
    std::shared_ptr<test::FakeVirtioInterrupt> irq = std::make_shared<test::FakeVirtioInterrupt>();

    void SetUp() override {
        con = std::make_unique<VirtioConsole>([this](std::span<const std::uint8_t> b) { out.append(b.begin(), b.end()); }, opts);
    }
    void activate(std::uint64_t features = feature_bit(virtio::kFeatureVersion1)) {
        con->activate(mem, features, {rxq.config(), txq.config()}, irq);
    }
    std::string read_guest(std::uint64_t gpa, std::size_t n) const {
        std::string s(n, '\0');
        mem.read(gpa, s.data(), n);
        return s;
    }
    void put(std::uint64_t gpa, const std::string& s) const { mem.write(gpa, s.data(), s.size()); }
};

TEST_F(VirtioConsoleTest, TransmitGoesToTheOutputInOrder) {
    activate();
    put(0x8000, "hello, ");
    put(0x8100, "world\n");
    txq.add_chain({Drv::rd(0x8000, 7), Drv::rd(0x8100, 6)});
    put(0x8200, "second");
    txq.add_chain({Drv::rd(0x8200, 6)});
    con->queue_notify(VirtioConsole::kTransmitQueue);
    EXPECT_EQ(out, "hello, world\nsecond");
    EXPECT_EQ(txq.used_idx(), 2);
    EXPECT_EQ(txq.used(0).len, 0u);
    EXPECT_EQ(irq->queue_notifies, 1) << "one interrupt for the batch";
    EXPECT_EQ(irq->per_queue[VirtioConsole::kTransmitQueue], 1);
}

TEST_F(VirtioConsoleTest, InputIsDeliveredIntoReceiveBuffers) {
    activate();
    rxq.add_chain({Drv::wr(0x9000, 4)});
    rxq.add_chain({Drv::wr(0x9100, 16)});
    con->queue_notify(VirtioConsole::kReceiveQueue);
    EXPECT_EQ(rxq.used_idx(), 0) << "no input yet: buffers stay with the device";
    EXPECT_EQ(con->feed_input(bytes("abcdef")), 6u);
    EXPECT_EQ(rxq.used_idx(), 2);
    EXPECT_EQ(rxq.used(0).len, 4u);
    EXPECT_EQ(rxq.used(1).len, 2u);
    EXPECT_EQ(read_guest(0x9000, 4), "abcd");
    EXPECT_EQ(read_guest(0x9100, 2), "ef");
    EXPECT_EQ(con->pending_input(), 0u);
    EXPECT_EQ(irq->per_queue[VirtioConsole::kReceiveQueue], 1);
}

TEST_F(VirtioConsoleTest, InputWithoutBuffersIsKeptBoundedAndDeliveredLater) {
    EXPECT_EQ(con->feed_input(bytes("early")), 5u) << "before activation";
    activate();
    EXPECT_EQ(con->feed_input(bytes("12345")), 3u) << "bound of 8 bytes";
    EXPECT_EQ(con->pending_input(), 8u);
    EXPECT_EQ(con->dropped_input(), 2u);
    EXPECT_EQ(irq->queue_notifies, 0);
    rxq.add_chain({Drv::wr(0x9000, 3)});
    con->queue_notify(VirtioConsole::kReceiveQueue);
    EXPECT_EQ(read_guest(0x9000, 3), "ear");
    EXPECT_EQ(con->pending_input(), 5u);
    rxq.add_chain({Drv::wr(0x9100, 64)});
    con->queue_notify(VirtioConsole::kReceiveQueue);
    EXPECT_EQ(read_guest(0x9100, 5), "ly123");
    EXPECT_EQ(rxq.used(1).len, 5u);
    EXPECT_EQ(con->pending_input(), 0u);
    EXPECT_EQ(irq->per_queue[VirtioConsole::kReceiveQueue], 2);
}

TEST_F(VirtioConsoleTest, InputNeverOverrunsTheGuestBuffer) {
    activate();
    put(0x9000, std::string(16, '#'));
    rxq.add_chain({Drv::wr(0x9004, 4)});
    con->feed_input(bytes("ABCDEFGH"));
    EXPECT_EQ(read_guest(0x9000, 16), "####ABCD########");
}

TEST_F(VirtioConsoleTest, ConfigSpaceAndResize) {
    EXPECT_TRUE(con->device_features() & feature_bit(VIRTIO_CONSOLE_F_SIZE));
    EXPECT_FALSE(con->device_features() & feature_bit(VIRTIO_CONSOLE_F_MULTIPORT));
    std::uint16_t size[2];
    con->read_config(0, {reinterpret_cast<std::uint8_t*>(size), 4});
    EXPECT_EQ(size[0], 80);
    EXPECT_EQ(size[1], 25);
    activate();
    con->resize(132, 43);
    EXPECT_EQ(irq->config_notifies, 1);
    con->resize(132, 43);
    EXPECT_EQ(irq->config_notifies, 1) << "no change, no interrupt";
    con->read_config(0, {reinterpret_cast<std::uint8_t*>(size), 4});
    EXPECT_EQ(size[0], 132);
    EXPECT_EQ(size[1], 43);
    std::uint8_t past[4] = {1, 1, 1, 1};
    con->read_config(64, past);
    EXPECT_EQ(past[0], 0);
    const std::uint32_t ch = 'Z';
    con->write_config(8, {reinterpret_cast<const std::uint8_t*>(&ch), 4});  // emerg_wr
    EXPECT_EQ(out, "Z");
}

TEST_F(VirtioConsoleTest, HostileChainsAreReturnedAndTheQueueGoesOn) {
    activate(feature_bit(virtio::kFeatureVersion1));
    // TX chain with a buffer outside RAM: nothing printed, chain returned.
    txq.add_chain({Drv::rd(0x40000, 8)});
    // TX chain looping on itself.
    txq.set_desc(9, 0x8000, 4, virtio::kDescFNext, 9);
    txq.publish(9);
    put(0x8200, "ok");
    txq.add_chain({Drv::rd(0x8200, 2)});
    con->queue_notify(VirtioConsole::kTransmitQueue);
    EXPECT_EQ(out, "ok");
    EXPECT_EQ(txq.used_idx(), 3);
    // An RX "buffer" that is device-readable gets nothing written.
    put(0x9000, "....");
    rxq.add_chain({Drv::rd(0x9000, 4)});
    rxq.add_chain({Drv::wr(0x9100, 4)});
    con->feed_input(bytes("xy"));
    EXPECT_EQ(read_guest(0x9000, 4), "....");
    EXPECT_EQ(rxq.used(0).len, 0u);
    EXPECT_EQ(read_guest(0x9100, 2), "xy");
    EXPECT_EQ(irq->resets_needed, 0);
}

TEST_F(VirtioConsoleTest, BrokenRingsAskForReset) {
    activate();
    txq.publish(16);  // head index out of range
    con->queue_notify(VirtioConsole::kTransmitQueue);
    EXPECT_EQ(irq->resets_needed, 1);
    con->queue_notify(VirtioConsole::kTransmitQueue);
    EXPECT_EQ(irq->resets_needed, 1) << "reported once";
    con->reset();
    auto bad = rxq.config();
    bad.avail = 0x1001;  // misaligned
    con->activate(mem, feature_bit(virtio::kFeatureVersion1), {bad, txq.config()}, irq);
    EXPECT_EQ(irq->resets_needed, 2);
}

TEST_F(VirtioConsoleTest, ResetStopsServingButKeepsPendingInput) {
    activate();
    con->reset();
    con->feed_input(bytes("kept"));
    put(0x8000, "lost");
    txq.add_chain({Drv::rd(0x8000, 4)});
    con->queue_notify(VirtioConsole::kTransmitQueue);
    EXPECT_EQ(out, "") << "a reset device serves nothing";
    EXPECT_EQ(txq.used_idx(), 0);
    Drv rx2(mem, 0x3000, 16), tx2(mem, 0x4000, 16);
    rx2.add_chain({Drv::wr(0x9000, 8)});
    con->activate(mem, feature_bit(virtio::kFeatureVersion1), {rx2.config(), tx2.config()}, irq);
    EXPECT_EQ(read_guest(0x9000, 4), "kept") << "delivered as soon as the driver is back";
}

TEST_F(VirtioConsoleTest, WorkRunsOnTheExecutor) {
    std::vector<std::function<void()>> posted;
    VirtioConsole c([this](std::span<const std::uint8_t> b) { out.append(b.begin(), b.end()); }, opts,
                    [&](std::function<void()> f) { posted.push_back(std::move(f)); });
    c.activate(mem, feature_bit(virtio::kFeatureVersion1), {rxq.config(), txq.config()}, irq);
    put(0x8000, "later");
    txq.add_chain({Drv::rd(0x8000, 5)});
    c.queue_notify(VirtioConsole::kTransmitQueue);
    EXPECT_EQ(out, "") << "queue_notify only posts the work";
    for (auto& f : posted) f();
    EXPECT_EQ(out, "later");
}

// A named port (MULTIPORT), driven the way Linux's virtio_console does: DEVICE_READY on the
// control transmitq, PORT_READY for each PORT_ADD, PORT_OPEN when a program opens the port.
struct VirtioConsolePortTest : VirtioConsoleTest {
    Drv crxq{mem, 0x3000, 16};
    Drv ctxq{mem, 0x4000, 16};
    std::uint64_t next_ctrl_rx = 0xa000, next_ctrl_tx = 0xc000;
    Drv* ctrl_rx = &crxq;

    std::vector<bool> opens;  // on_guest_open's calls

    void SetUp() override {
        opts.port_name = "org.qemu.guest_agent.0";
        opts.on_guest_open = [this](bool open) { opens.push_back(open); };
        VirtioConsoleTest::SetUp();
    }
    std::uint64_t multiport_features() const {
        return feature_bit(virtio::kFeatureVersion1) | feature_bit(VIRTIO_CONSOLE_F_MULTIPORT);
    }
    void activate_multiport() { con->activate(mem, multiport_features(), {rxq.config(), txq.config(), ctrl_rx->config(), ctxq.config()}, irq); }
    // Posts control receive buffers of `size` bytes (Linux posts pages).
    void post_control_buffers(unsigned n, std::uint32_t size = 256) {
        for (unsigned i = 0; i < n; ++i, next_ctrl_rx += 0x100) crxq.add_chain({Drv::wr(next_ctrl_rx, size)});
        con->queue_notify(VirtioConsole::kControlReceiveQueue);
    }
    void send_control(std::uint32_t id, std::uint16_t event, std::uint16_t value) {
        const virtio_console_control m{id, event, value};
        mem.write(next_ctrl_tx, &m, sizeof m);
        ctxq.add_chain({Drv::rd(next_ctrl_tx, sizeof m)});
        next_ctrl_tx += 0x10;
        con->queue_notify(VirtioConsole::kControlTransmitQueue);
    }
    // The i-th control message the device sent: its header and payload.
    std::pair<virtio_console_control, std::string> received(std::uint16_t i) const {
        const auto u = crxq.used(i);
        virtio_console_control m{};
        mem.read(0xa000 + 0x100ull * i, &m, sizeof m);
        return {m, read_guest(0xa000 + 0x100ull * i + sizeof m, u.len - sizeof m)};
    }
};

TEST_F(VirtioConsolePortTest, OffersMultiportOnlyWithAName) {
    EXPECT_TRUE(con->device_features() & feature_bit(VIRTIO_CONSOLE_F_MULTIPORT));
    EXPECT_EQ(con->num_queues(), 4);
    VirtioConsole plain({}, VirtioConsoleOptions{});
    EXPECT_FALSE(plain.device_features() & feature_bit(VIRTIO_CONSOLE_F_MULTIPORT));
    EXPECT_EQ(plain.num_queues(), 2);
    VirtioConsoleOptions too_long;
    too_long.port_name = std::string(kMaxPortName + 1, 'x');
    EXPECT_THROW(VirtioConsole({}, too_long), std::invalid_argument);
}

TEST_F(VirtioConsolePortTest, TheHandshakeAnnouncesPortZeroByName) {
    activate_multiport();
    post_control_buffers(4);
    EXPECT_EQ(crxq.used_idx(), 0) << "nothing to say before the driver is ready";
    send_control(VIRTIO_CONSOLE_BAD_ID, VIRTIO_CONSOLE_DEVICE_READY, 1);
    EXPECT_EQ(ctxq.used_idx(), 1);
    ASSERT_EQ(crxq.used_idx(), 1);
    auto [add, none] = received(0);
    EXPECT_EQ(add.id, 0u);
    EXPECT_EQ(add.event, VIRTIO_CONSOLE_PORT_ADD);
    EXPECT_EQ(none, "");
    send_control(0, VIRTIO_CONSOLE_PORT_READY, 1);
    ASSERT_EQ(crxq.used_idx(), 3);
    auto [name, text] = received(1);
    EXPECT_EQ(name.event, VIRTIO_CONSOLE_PORT_NAME);
    EXPECT_EQ(text, std::string("org.qemu.guest_agent.0") + '\0') << "with its NUL, as QEMU sends it";
    auto [open, empty] = received(2);
    EXPECT_EQ(open.event, VIRTIO_CONSOLE_PORT_OPEN);
    EXPECT_EQ(open.value, 1) << "the host side is open";
    for (std::uint16_t i = 0; i < 3; ++i) EXPECT_NE(received(i).first.event, VIRTIO_CONSOLE_CONSOLE_PORT) << "a named port is no console";
    EXPECT_GE(irq->per_queue[VirtioConsole::kControlReceiveQueue], 2);
    EXPECT_EQ(irq->resets_needed, 0);
}

TEST_F(VirtioConsolePortTest, MessagesWaitForControlBuffers) {
    activate_multiport();
    send_control(VIRTIO_CONSOLE_BAD_ID, VIRTIO_CONSOLE_DEVICE_READY, 1);
    send_control(0, VIRTIO_CONSOLE_PORT_READY, 1);
    EXPECT_EQ(crxq.used_idx(), 0);
    post_control_buffers(2);
    EXPECT_EQ(crxq.used_idx(), 2) << "two buffers, two of the three messages";
    post_control_buffers(1);
    ASSERT_EQ(crxq.used_idx(), 3);
    EXPECT_EQ(received(0).first.event, VIRTIO_CONSOLE_PORT_ADD);
    EXPECT_EQ(received(1).second, std::string("org.qemu.guest_agent.0") + '\0');
    EXPECT_EQ(received(2).first.event, VIRTIO_CONSOLE_PORT_OPEN);
}

TEST_F(VirtioConsolePortTest, InputWaitsUntilTheGuestOpensThePort) {
    activate_multiport();
    post_control_buffers(4);
    send_control(VIRTIO_CONSOLE_BAD_ID, VIRTIO_CONSOLE_DEVICE_READY, 1);
    send_control(0, VIRTIO_CONSOLE_PORT_READY, 1);
    rxq.add_chain({Drv::wr(0x9000, 16)});
    con->queue_notify(VirtioConsole::kReceiveQueue);
    EXPECT_EQ(con->feed_input(bytes("{\"execute\"")), 8u) << "bounded as before (max_pending_input 8)";
    EXPECT_EQ(rxq.used_idx(), 0) << "Linux drops what comes to a port nobody has open";
    EXPECT_FALSE(con->guest_open());
    send_control(0, VIRTIO_CONSOLE_PORT_OPEN, 1);
    EXPECT_TRUE(con->guest_open());
    ASSERT_EQ(rxq.used_idx(), 1);
    EXPECT_EQ(read_guest(0x9000, 8), "{\"execut");
    // Output flows whether or not the guest has it open.
    put(0x8000, "{}");
    txq.add_chain({Drv::rd(0x8000, 2)});
    con->queue_notify(VirtioConsole::kTransmitQueue);
    EXPECT_EQ(out, "{}");
    send_control(0, VIRTIO_CONSOLE_PORT_OPEN, 0);
    EXPECT_FALSE(con->guest_open());
    rxq.add_chain({Drv::wr(0x9100, 16)});
    con->feed_input(bytes("later"));
    EXPECT_EQ(rxq.used_idx(), 1) << "closed again: held";
    EXPECT_EQ(con->pending_input(), 5u);
}

TEST_F(VirtioConsolePortTest, TheGuestOpeningAndClosingThePortIsReportedOnce) {
    activate_multiport();
    post_control_buffers(4);
    send_control(VIRTIO_CONSOLE_BAD_ID, VIRTIO_CONSOLE_DEVICE_READY, 1);
    send_control(0, VIRTIO_CONSOLE_PORT_READY, 1);
    EXPECT_TRUE(opens.empty());
    send_control(0, VIRTIO_CONSOLE_PORT_OPEN, 1);
    send_control(0, VIRTIO_CONSOLE_PORT_OPEN, 1);  // no change
    EXPECT_EQ(opens, std::vector<bool>({true}));
    send_control(0, VIRTIO_CONSOLE_PORT_OPEN, 0);
    send_control(0, VIRTIO_CONSOLE_PORT_OPEN, 1);
    EXPECT_EQ(opens, std::vector<bool>({true, false, true}));
    con->reset();
    EXPECT_EQ(opens, std::vector<bool>({true, false, true, false})) << "a reset closes the guest's side";
    EXPECT_FALSE(con->guest_open());
    con->reset();
    EXPECT_EQ(opens.size(), 4u) << "nothing was open";
}

// A socket's port: the host side is open only while a client is connected, and the driver is
// told when that changes (as QEMU does for a socket chardev), once it has the port.
TEST_F(VirtioConsolePortTest, TheHostSideOpensAndClosesWithItsBackend) {
    opts.host_connected = false;
    SetUp();  // again, with the option
    activate_multiport();
    post_control_buffers(8);
    con->set_host_connected(true);
    con->set_host_connected(false);  // before PORT_READY: only the state at PORT_READY counts
    send_control(VIRTIO_CONSOLE_BAD_ID, VIRTIO_CONSOLE_DEVICE_READY, 1);
    send_control(0, VIRTIO_CONSOLE_PORT_READY, 1);
    ASSERT_EQ(crxq.used_idx(), 2) << "PORT_ADD, PORT_NAME; no PORT_OPEN while nobody is connected";
    EXPECT_EQ(received(1).first.event, VIRTIO_CONSOLE_PORT_NAME);
    con->set_host_connected(true);
    ASSERT_EQ(crxq.used_idx(), 3);
    EXPECT_EQ(received(2).first.event, VIRTIO_CONSOLE_PORT_OPEN);
    EXPECT_EQ(received(2).first.value, 1);
    con->set_host_connected(true);  // no change
    con->set_host_connected(false);
    ASSERT_EQ(crxq.used_idx(), 4);
    EXPECT_EQ(received(3).first.event, VIRTIO_CONSOLE_PORT_OPEN);
    EXPECT_EQ(received(3).first.value, 0);
    EXPECT_EQ(irq->resets_needed, 0);
}

TEST_F(VirtioConsolePortTest, ADriverWithoutMultiportGetsAConsole) {
    activate();  // VERSION_1 only, two queues
    rxq.add_chain({Drv::wr(0x9000, 16)});
    con->feed_input(bytes("hi"));
    EXPECT_EQ(rxq.used_idx(), 1) << "no port to open: input flows as on a console";
    EXPECT_EQ(read_guest(0x9000, 2), "hi");
}

TEST_F(VirtioConsolePortTest, HostileControlMessages) {
    activate_multiport();
    post_control_buffers(4);
    // Shorter than the header: ignored, the buffer returned.
    mem.write_obj<std::uint32_t>(next_ctrl_tx, 0);
    ctxq.add_chain({Drv::rd(next_ctrl_tx, 4)});
    con->queue_notify(VirtioConsole::kControlTransmitQueue);
    EXPECT_EQ(ctxq.used_idx(), 1);
    EXPECT_EQ(crxq.used_idx(), 0);
    // For a port this device does not have, and an event that is the device's to send: ignored.
    send_control(7, VIRTIO_CONSOLE_PORT_READY, 1);
    send_control(0, VIRTIO_CONSOLE_PORT_NAME, 1);
    EXPECT_EQ(crxq.used_idx(), 0);
    EXPECT_EQ(irq->resets_needed, 0);
    send_control(VIRTIO_CONSOLE_BAD_ID, VIRTIO_CONSOLE_DEVICE_READY, 1);
    EXPECT_EQ(crxq.used_idx(), 1) << "and the device goes on";
}

TEST_F(VirtioConsolePortTest, AControlBufferTooSmallForTheNameBreaksTheDevice) {
    Drv small(mem, 0x5000, 16);
    ctrl_rx = &small;
    activate_multiport();
    small.add_chain({Drv::wr(0xe000, 8)});
    small.add_chain({Drv::wr(0xe100, 12)});
    con->queue_notify(VirtioConsole::kControlReceiveQueue);
    send_control(VIRTIO_CONSOLE_BAD_ID, VIRTIO_CONSOLE_DEVICE_READY, 1);
    EXPECT_EQ(small.used_idx(), 1) << "PORT_ADD fits in 8 bytes";
    send_control(0, VIRTIO_CONSOLE_PORT_READY, 1);
    EXPECT_EQ(small.used_idx(), 2);
    EXPECT_EQ(small.used(1).len, 0u) << "nothing written into a buffer too small for the name";
    EXPECT_EQ(irq->resets_needed, 1);
    EXPECT_EQ(read_guest(0xe100, 4), std::string(4, '\0'));
}

// Two named ports on one device, as QEMU's virtio-serial with two virtserialports: port 1 has
// queues 4 and 5; the control queues and the handshake are shared, everything else is per port.
struct VirtioConsoleTwoPortTest : VirtioConsolePortTest {
    Drv p1rx{mem, 0x6000, 16};
    Drv p1tx{mem, 0x7000, 16};
    std::string out1;
    std::vector<bool> opens1;

    void SetUp() override {
        opts.more_ports.clear();
        VirtioConsolePortOptions second;
        second.name = "vmm.second";
        second.output = [this](std::span<const std::uint8_t> b) { out1.append(b.begin(), b.end()); };
        second.on_guest_open = [this](bool open) { opens1.push_back(open); };
        opts.more_ports.push_back(std::move(second));
        VirtioConsolePortTest::SetUp();
    }
    void activate_two() {
        con->activate(mem, multiport_features(), {rxq.config(), txq.config(), crxq.config(), ctxq.config(), p1rx.config(), p1tx.config()}, irq);
    }
    // DEVICE_READY, then PORT_READY for both ports: 2 PORT_ADDs, 2 PORT_NAMEs, 2 PORT_OPENs.
    void handshake() {
        post_control_buffers(8);
        send_control(VIRTIO_CONSOLE_BAD_ID, VIRTIO_CONSOLE_DEVICE_READY, 1);
        send_control(0, VIRTIO_CONSOLE_PORT_READY, 1);
        send_control(1, VIRTIO_CONSOLE_PORT_READY, 1);
    }
};

TEST_F(VirtioConsoleTwoPortTest, TheDeviceAnnouncesEveryPortWithItsName) {
    EXPECT_EQ(con->ports(), 2u);
    EXPECT_EQ(con->num_queues(), 6) << "port 0, the control queues, port 1";
    std::uint32_t max_nr_ports = 0;
    con->read_config(offsetof(virtio_console_config, max_nr_ports), {reinterpret_cast<std::uint8_t*>(&max_nr_ports), 4});
    EXPECT_EQ(max_nr_ports, 2u);
    activate_two();
    post_control_buffers(8);
    send_control(VIRTIO_CONSOLE_BAD_ID, VIRTIO_CONSOLE_DEVICE_READY, 1);
    ASSERT_EQ(crxq.used_idx(), 2);
    EXPECT_EQ(received(0).first.event, VIRTIO_CONSOLE_PORT_ADD);
    EXPECT_EQ(received(0).first.id, 0u);
    EXPECT_EQ(received(1).first.event, VIRTIO_CONSOLE_PORT_ADD);
    EXPECT_EQ(received(1).first.id, 1u);
    send_control(1, VIRTIO_CONSOLE_PORT_READY, 1);  // in any order, as the driver probes them
    ASSERT_EQ(crxq.used_idx(), 4);
    EXPECT_EQ(received(2).first.id, 1u);
    EXPECT_EQ(received(2).first.event, VIRTIO_CONSOLE_PORT_NAME);
    EXPECT_EQ(received(2).second, std::string("vmm.second") + '\0');
    EXPECT_EQ(received(3).first.id, 1u);
    EXPECT_EQ(received(3).first.event, VIRTIO_CONSOLE_PORT_OPEN);
    send_control(0, VIRTIO_CONSOLE_PORT_READY, 1);
    ASSERT_EQ(crxq.used_idx(), 6);
    EXPECT_EQ(received(4).first.id, 0u);
    EXPECT_EQ(received(4).second, std::string("org.qemu.guest_agent.0") + '\0');
    EXPECT_EQ(irq->resets_needed, 0);
}

TEST_F(VirtioConsoleTwoPortTest, EachPortHasItsOwnQueuesInputAndOpenState) {
    activate_two();
    handshake();
    rxq.add_chain({Drv::wr(0x9000, 16)});
    p1rx.add_chain({Drv::wr(0xf000, 16)});
    con->queue_notify(VirtioConsole::kReceiveQueue);
    con->queue_notify(4);
    con->feed_input(0, bytes("zero"));
    con->feed_input(1, bytes("one"));
    EXPECT_EQ(rxq.used_idx() + p1rx.used_idx(), 0) << "neither port is open in the guest yet";
    send_control(1, VIRTIO_CONSOLE_PORT_OPEN, 1);
    EXPECT_TRUE(con->guest_open(1));
    EXPECT_FALSE(con->guest_open(0));
    EXPECT_EQ(opens1, std::vector<bool>({true}));
    EXPECT_TRUE(opens.empty()) << "port 0's hook is port 0's";
    ASSERT_EQ(p1rx.used_idx(), 1);
    EXPECT_EQ(read_guest(0xf000, 3), "one");
    EXPECT_EQ(rxq.used_idx(), 0) << "port 0 still closed: its input held";
    EXPECT_EQ(con->pending_input(0), 4u);
    EXPECT_GE(irq->per_queue[4], 1);
    // Output goes to the port's own backend.
    put(0xf800, "from one");
    p1tx.add_chain({Drv::rd(0xf800, 8)});
    con->queue_notify(5);
    put(0x8000, "from zero");
    txq.add_chain({Drv::rd(0x8000, 9)});
    con->queue_notify(VirtioConsole::kTransmitQueue);
    EXPECT_EQ(out1, "from one");
    EXPECT_EQ(out, "from zero");
    send_control(0, VIRTIO_CONSOLE_PORT_OPEN, 1);
    ASSERT_EQ(rxq.used_idx(), 1);
    EXPECT_EQ(read_guest(0x9000, 4), "zero");
    con->reset();
    EXPECT_EQ(opens, std::vector<bool>({true, false}));
    EXPECT_EQ(opens1, std::vector<bool>({true, false})) << "a reset closes every port the guest had open";
}

TEST_F(VirtioConsoleTwoPortTest, EachPortsHostSideIsItsOwn) {
    opts.host_connected = false;
    SetUp();
    activate_two();
    handshake();
    ASSERT_EQ(crxq.used_idx(), 5) << "2 PORT_ADDs, 2 PORT_NAMEs, PORT_OPEN for port 1 only";
    EXPECT_EQ(received(4).first.id, 1u);
    EXPECT_EQ(received(4).first.event, VIRTIO_CONSOLE_PORT_OPEN);
    con->set_host_connected(1, false);
    ASSERT_EQ(crxq.used_idx(), 6);
    EXPECT_EQ(received(5).first.id, 1u);
    EXPECT_EQ(received(5).first.value, 0);
    con->set_host_connected(0, true);
    ASSERT_EQ(crxq.used_idx(), 7);
    EXPECT_EQ(received(6).first.id, 0u);
    EXPECT_EQ(received(6).first.value, 1);
    EXPECT_THROW(con->set_host_connected(2, true), std::out_of_range);
    EXPECT_THROW(con->feed_input(2, bytes("x")), std::out_of_range);
}

TEST_F(VirtioConsoleTwoPortTest, ADriverWithoutMultiportHasPortZeroOnly) {
    activate();  // two queues, no control queues
    rxq.add_chain({Drv::wr(0x9000, 16)});
    con->feed_input(1, bytes("later"));
    con->feed_input(0, bytes("now"));
    EXPECT_EQ(rxq.used_idx(), 1);
    EXPECT_EQ(read_guest(0x9000, 3), "now");
    EXPECT_EQ(con->pending_input(1), 5u) << "kept for a driver that takes the port";
    con->queue_notify(4);  // a queue this driver does not have: nothing happens
    EXPECT_EQ(irq->resets_needed, 0);
}

TEST_F(VirtioConsoleTwoPortTest, MessagesForAPortBeyondTheLastAreIgnored) {
    activate_two();
    post_control_buffers(8);
    send_control(VIRTIO_CONSOLE_BAD_ID, VIRTIO_CONSOLE_DEVICE_READY, 1);
    send_control(2, VIRTIO_CONSOLE_PORT_READY, 1);
    send_control(2, VIRTIO_CONSOLE_PORT_OPEN, 1);
    EXPECT_EQ(crxq.used_idx(), 2) << "only the two PORT_ADDs";
    EXPECT_EQ(irq->resets_needed, 0);
}

// An unnamed port 0 beside named ports: the console port, as QEMU's virtconsole next to a
// virtserialport on one virtio-serial. A MULTIPORT driver is told CONSOLE_PORT for it (no name),
// and learns of a new terminal size by a RESIZE control message, not the config space.
struct VirtioConsoleConsolePortTest : VirtioConsoleTwoPortTest {
    void SetUp() override {
        VirtioConsoleTwoPortTest::SetUp();
        opts.port_name.clear();
        opts.on_guest_open = [this](bool open) { opens.push_back(open); };
        VirtioConsoleTest::SetUp();  // again, port 0 unnamed
    }
};

TEST_F(VirtioConsoleConsolePortTest, PortZeroIsAnnouncedAsTheConsoleAndTheOtherByName) {
    EXPECT_TRUE(con->device_features() & feature_bit(VIRTIO_CONSOLE_F_MULTIPORT));
    EXPECT_EQ(con->num_queues(), 6);
    activate_two();
    handshake();
    ASSERT_EQ(crxq.used_idx(), 6) << "2 PORT_ADDs, then per port CONSOLE_PORT or PORT_NAME, and PORT_OPEN";
    EXPECT_EQ(received(2).first.id, 0u);
    EXPECT_EQ(received(2).first.event, VIRTIO_CONSOLE_CONSOLE_PORT);
    EXPECT_EQ(received(2).first.value, 1);
    EXPECT_EQ(received(2).second, "") << "no name for the console port";
    EXPECT_EQ(received(3).first.id, 0u);
    EXPECT_EQ(received(3).first.event, VIRTIO_CONSOLE_PORT_OPEN);
    EXPECT_EQ(received(4).first.id, 1u);
    EXPECT_EQ(received(4).first.event, VIRTIO_CONSOLE_PORT_NAME);
    EXPECT_EQ(received(4).second, std::string("vmm.second") + '\0');
    // Linux opens a console port itself (PORT_OPEN 1): its input flows from then on.
    rxq.add_chain({Drv::wr(0x9000, 16)});
    con->queue_notify(VirtioConsole::kReceiveQueue);
    con->feed_input(0, bytes("ls\n"));
    EXPECT_EQ(rxq.used_idx(), 0);
    send_control(0, VIRTIO_CONSOLE_PORT_OPEN, 1);
    ASSERT_EQ(rxq.used_idx(), 1);
    EXPECT_EQ(read_guest(0x9000, 3), "ls\n");
    EXPECT_EQ(opens, std::vector<bool>({true}));
    EXPECT_EQ(irq->resets_needed, 0);
}

TEST_F(VirtioConsoleConsolePortTest, AResizeReachesTheConsolePortAsAControlMessage) {
    activate_two();
    handshake();
    const std::uint16_t sent = crxq.used_idx();
    con->resize(132, 43);
    ASSERT_EQ(crxq.used_idx(), sent + 1);
    const auto [msg, payload] = received(sent);
    EXPECT_EQ(msg.id, 0u);
    EXPECT_EQ(msg.event, VIRTIO_CONSOLE_RESIZE);
    ASSERT_EQ(payload.size(), 4u);
    std::uint16_t size[2];
    std::memcpy(size, payload.data(), 4);
    EXPECT_EQ(size[0], 43) << "rows first";
    EXPECT_EQ(size[1], 132);
    EXPECT_EQ(irq->config_notifies, 0) << "a MULTIPORT driver reads no size from the config space";
    // Without MULTIPORT the same device is a plain console: the config space tells the size.
    con->reset();
    activate();
    con->resize(100, 30);
    EXPECT_EQ(irq->config_notifies, 1);
}

TEST(VirtioConsolePortOptionsTest, MorePortsAreNamedAndFewEnough) {
    auto with = [](std::string first, std::vector<std::string> names) {
        VirtioConsoleOptions o;
        o.port_name = std::move(first);
        for (auto& n : names) o.more_ports.push_back({n, {}, {}, true});
        return o;
    };
    EXPECT_NO_THROW(VirtioConsole({}, with("a", {"b", "c"})));
    EXPECT_NO_THROW(VirtioConsole({}, with("", {"b"}))) << "an unnamed port 0 is the console port beside them";
    EXPECT_THROW(VirtioConsole({}, with("a", {""})), std::invalid_argument);
    EXPECT_THROW(VirtioConsole({}, with("a", {std::string(kMaxPortName + 1, 'x')})), std::invalid_argument);
    EXPECT_THROW(VirtioConsole({}, with("a", {"b", "a"})), std::invalid_argument) << "two ports with one name";
    std::vector<std::string> many;
    for (std::size_t i = 1; i < kMaxPorts; ++i) many.push_back("p" + std::to_string(i));
    EXPECT_NO_THROW(VirtioConsole({}, with("p0", many)));
    many.push_back("one-too-many");
    EXPECT_THROW(VirtioConsole({}, with("p0", many)), std::invalid_argument);
}

}  // namespace
}  // namespace vmm::virtio_console
