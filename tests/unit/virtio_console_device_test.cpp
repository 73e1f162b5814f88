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

}  // namespace
}  // namespace vmm::virtio_console
