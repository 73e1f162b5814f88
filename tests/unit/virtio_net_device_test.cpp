// VirtioNet (devicemodel/virtio-net/virtio_net.h) over a socketpair backend (SocketBackend), driven
// through tests/support/virtqueue_driver.h: TX, RX into posted buffers, RX without buffers until
// a notify, mergeable RX buffers, a chain too small for a frame, a full backend, hostile rings
// (NEEDS_RESET), reset mid-traffic, the config space and the event loop thread.
#include "devicemodel/virtio-net/virtio_net.h"

#include "devicemodel/virtio-net/socket_backend.h"
#include "common/error.h"
#include "tests/support/fakes.h"
#include "tests/support/virtqueue_driver.h"

#include <gtest/gtest.h>

#include <linux/if_tun.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <thread>

namespace vmm::virtio_net {
namespace {

using Drv = test::VirtqueueDriver;
using virtio::feature_bit;
using Bytes = std::vector<std::uint8_t>;

constexpr std::uint64_t kV1 = feature_bit(virtio::kFeatureVersion1);
constexpr std::uint64_t kMrg = feature_bit(kNetFMrgRxbuf);

// A 12-byte header (flags marks it so a test can see it went through untouched) + a frame of
// `len` bytes: broadcast destination, a local source, ethertype 0x88b5, then `fill`.
Bytes make_frame(std::size_t len, std::uint8_t fill, std::uint8_t hdr_flags = 0) {
    Bytes f(kVnetHeaderSize + len, fill);
    VirtioNetHdr h{};
    h.flags = hdr_flags;
    std::memcpy(f.data(), &h, sizeof h);
    for (int i = 0; i < 6; ++i) f[kVnetHeaderSize + i] = 0xff;
    const std::uint8_t src[6] = {0x52, 0x54, 0, 1, 2, 3};
    std::memcpy(f.data() + kVnetHeaderSize + 6, src, 6);
    f[kVnetHeaderSize + 12] = 0x88;
    f[kVnetHeaderSize + 13] = 0xb5;
    return f;
}

// What the guest should find of a received frame `f`: the same bytes with num_buffers = n (§5.1.6.4).
Bytes with_num_buffers(Bytes f, std::uint16_t n) {
    f[10] = static_cast<std::uint8_t>(n);
    f[11] = static_cast<std::uint8_t>(n >> 8);
    return f;
}

// A backend over another that remembers how many iovecs each read was given. It sets up no
// frame writer, so it transmits frame by frame, as a tap does where system calls are cheap
// (tap_batches_pay_off), where a SocketBackend sends a pass's frames in io_uring batches.
class IovCountingBackend : public NetBackend {
public:
    explicit IovCountingBackend(std::unique_ptr<NetBackend> inner) : inner_(std::move(inner)) {}
    std::string description() const override { return inner_->description(); }
    int fd() const override { return inner_->fd(); }
    ssize_t read(std::span<const iovec> iov) override {
        const ssize_t n = inner_->read(iov);
        if (n > 0) iovs.push_back(iov.size());
        return n;
    }
    ssize_t write(std::span<const iovec> iov) override { return inner_->write(iov); }
    unsigned supported_offloads() const override { return inner_->supported_offloads(); }
    bool set_offloads(unsigned f) override { return inner_->set_offloads(f); }
    std::vector<std::size_t> iovs;  // per frame read

private:
    std::unique_ptr<NetBackend> inner_;
};

struct NetFixture : ::testing::Test {
    test::FakeGuestMemory fake{{{0, 0x100000}}};
    const GuestMemory& mem = fake.memory();
    Drv rxq{mem, 0x1000, 16};
    Drv txq{mem, 0x2000, 16};
    Drv::Arena arena{0x10000, 0x100000};
    std::shared_ptr<test::FakeVirtioInterrupt> irq = std::make_shared<test::FakeVirtioInterrupt>();
    Fd peer;  // the other end of the device's socket: the "network"
    SocketBackend* backend = nullptr;
    std::unique_ptr<VirtioNet> net;

    VirtioNetOptions options(bool own_thread = false) {
        VirtioNetOptions o;
        o.name = "nettest";
        o.queue_size = 16;
        o.mac = {0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};
        o.own_thread = own_thread;
        return o;
    }
    // frame_by_frame: the socket behind an IovCountingBackend, which writes frame by frame.
    void make_device(VirtioNetOptions o, unsigned offloads = 0, int type = SOCK_SEQPACKET, bool frame_by_frame = false) {
        int sv[2];
        ASSERT_EQ(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv), 0);
        peer = Fd(sv[1]);
        auto b = std::make_unique<SocketBackend>(Fd(sv[0]), offloads, "socketpair");
        backend = b.get();
        if (frame_by_frame)
            net = std::make_unique<VirtioNet>(std::make_unique<IovCountingBackend>(std::move(b)), o);
        else
            net = std::make_unique<VirtioNet>(std::move(b), o);
    }
    void SetUp() override { make_device(options()); }
    // Bodies of tests run both ways a backend transmits (below).
    void full_backend_delays_transmit(bool frame_by_frame);
    void no_frame_behind_full_backend(bool frame_by_frame);
    void activate(std::uint64_t features = kV1) { net->activate(mem, features, {rxq.config(), txq.config()}, irq); }
    // Runs the event loop until it has nothing left to do.
    void pump() {
        for (int i = 0; i < 4; ++i)
            while (net->poll(0)) {
            }
    }
    void peer_send(const Bytes& f) { ASSERT_EQ(::send(peer.get(), f.data(), f.size(), MSG_DONTWAIT), static_cast<ssize_t>(f.size())); }
    // The next message the device sent, or nullopt.
    std::optional<Bytes> peer_recv() {
        Bytes b(70000);
        const ssize_t n = ::recv(peer.get(), b.data(), b.size(), MSG_DONTWAIT);
        if (n < 0) return std::nullopt;
        b.resize(static_cast<std::size_t>(n));
        return b;
    }
    // Reads what the peer gets while the device drains its held frames (it sees the socket
    // writable again, EPOLLOUT, without another kick); checks they are `frames`, in order.
    // Returns how many arrived.
    std::size_t receive_in_order(const std::vector<Bytes>& frames) {
        std::size_t received = 0;
        for (int round = 0; round < 50 && received < frames.size(); ++round) {
            while (auto f = peer_recv()) {
                if (received >= frames.size()) {
                    ADD_FAILURE() << "more frames than were sent";
                    return received;
                }
                EXPECT_EQ(*f, frames[received]) << "frame " << received << " in order";
                ++received;
            }
            pump();
        }
        return received;
    }
    // Bytes waiting in the device's end of the socket (frames it has not read).
    bool device_side_has_data() const {
        char c;
        return ::recv(backend->fd(), &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
    }
    std::uint64_t put(const Bytes& b) {
        const std::uint64_t gpa = arena.alloc(b.size());
        mem.write(gpa, b.data(), b.size());
        return gpa;
    }
    Bytes read_guest(std::uint64_t gpa, std::size_t n) const {
        Bytes b(n);
        mem.read(gpa, b.data(), n);
        return b;
    }
    int get_per_queue(std::uint16_t q) {
        int v = 0;
        irq->wait_for([&] {
            v = irq->per_queue[q];
            return true;
        });
        return v;
    }
};

TEST_F(NetFixture, ConfigSpaceHoldsMacStatusAndOnePair) {
    const auto f = net->device_features();
    EXPECT_TRUE(f & kV1);
    EXPECT_TRUE(f & feature_bit(kNetFMac));
    EXPECT_TRUE(f & feature_bit(kNetFStatus));
    EXPECT_TRUE(f & kMrg);
    EXPECT_TRUE(f & feature_bit(virtio::kFeatureEventIdx));
    EXPECT_TRUE(f & feature_bit(virtio::kFeatureIndirectDesc));
    EXPECT_FALSE(f & feature_bit(kNetFCtrlVq));
    EXPECT_FALSE(f & feature_bit(kNetFCsum)) << "the socket backend offers no offloads";
    EXPECT_FALSE(f & feature_bit(kNetFGuestTso4));
    EXPECT_EQ(net->device_type(), virtio::DeviceType::Net);
    EXPECT_EQ(net->num_queues(), 2);

    std::uint8_t cfg[12];
    std::memset(cfg, 0xaa, sizeof cfg);
    net->read_config(0, cfg);
    const std::uint8_t mac[6] = {0x52, 0x54, 0x00, 0xab, 0xcd, 0xef};
    EXPECT_EQ(std::memcmp(cfg, mac, 6), 0);
    EXPECT_EQ(cfg[6] | cfg[7] << 8, kNetSLinkUp);
    EXPECT_EQ(cfg[8] | cfg[9] << 8, 1) << "max_virtqueue_pairs";
    std::uint8_t one[2];
    net->read_config(4, one);  // an unaligned slice of the MAC
    EXPECT_EQ(one[0], 0xcd);
    EXPECT_EQ(one[1], 0xef);
    std::uint8_t past[4] = {1, 1, 1, 1};
    net->read_config(0x100, past);
    EXPECT_EQ(past[0] | past[1] | past[2] | past[3], 0);
    const std::uint8_t evil[6] = {0, 0, 0, 0, 0, 0};
    net->write_config(0, evil);
    net->read_config(0, cfg);
    EXPECT_EQ(std::memcmp(cfg, mac, 6), 0) << "the config space is read-only for a VERSION_1 driver";

    activate();
    net->set_link_up(false);
    EXPECT_EQ(irq->config_notifies, 1);
    net->read_config(6, one);
    EXPECT_EQ(one[0], 0);
    net->set_link_up(false);
    EXPECT_EQ(irq->config_notifies, 1) << "no change, no interrupt";
}

TEST_F(NetFixture, OffloadsAreOfferedOnlyWhereTheBackendHasThemAndFollowTheGuest) {
    make_device(options(), TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6);
    const auto f = net->device_features();
    for (unsigned bit : {kNetFCsum, kNetFGuestCsum, kNetFHostTso4, kNetFHostTso6, kNetFGuestTso4, kNetFGuestTso6})
        EXPECT_TRUE(f & feature_bit(bit)) << "bit " << bit;
    EXPECT_FALSE(f & feature_bit(kNetFGuestEcn)) << "the backend has no TUN_F_TSO_ECN";
    EXPECT_EQ(backend->offloads(), 0u);
    activate(kV1 | feature_bit(kNetFGuestCsum) | feature_bit(kNetFGuestTso4));
    EXPECT_EQ(backend->offloads(), unsigned{TUN_F_CSUM | TUN_F_TSO4});
    net->reset();
    activate(kV1 | feature_bit(kNetFGuestTso4));  // TSO without GUEST_CSUM breaks §5.1.3.1
    EXPECT_EQ(backend->offloads(), 0u);

    VirtioNetOptions o = options();
    o.offloads = false;
    o.mergeable_rx_buffers = false;
    make_device(o, TUN_F_CSUM | TUN_F_TSO4);
    EXPECT_FALSE(net->device_features() & feature_bit(kNetFCsum));
    EXPECT_FALSE(net->device_features() & kMrg);
}

TEST_F(NetFixture, TransmitWritesHeaderAndFrameAsOneMessage) {
    activate();
    const Bytes f = make_frame(60, 0x5a, kNetHdrFNeedsCsum);
    const Bytes hdr(f.begin(), f.begin() + kVnetHeaderSize);
    const Bytes part1(f.begin() + kVnetHeaderSize, f.begin() + 40);
    const Bytes part2(f.begin() + 40, f.end());
    txq.add_chain({Drv::rd(put(hdr), 12), Drv::rd(put(part1), static_cast<std::uint32_t>(part1.size())),
                   Drv::rd(put(part2), static_cast<std::uint32_t>(part2.size()))});
    const Bytes g = make_frame(1514, 0x77);
    txq.add_chain({Drv::rd(put(g), static_cast<std::uint32_t>(g.size()))});
    net->queue_notify(VirtioNet::kTxQueue);
    pump();
    EXPECT_EQ(peer_recv(), f) << "header passed through unchanged, frame gathered";
    EXPECT_EQ(peer_recv(), g);
    EXPECT_EQ(peer_recv(), std::nullopt);
    EXPECT_EQ(txq.used_idx(), 2);
    EXPECT_EQ(txq.used(0).len, 0u);
    EXPECT_EQ(get_per_queue(VirtioNet::kTxQueue), 1) << "one interrupt for the batch";
    EXPECT_EQ(net->stats().tx_frames, 2u);
    EXPECT_EQ(net->stats().tx_bytes, 60u + 1514u);
}

TEST_F(NetFixture, EveryTransmitChainIsCompletedEvenUnusableOnes) {
    activate();
    txq.add_chain({Drv::rd(put(Bytes(8, 1)), 8)});                      // shorter than the header
    txq.add_chain({Drv::wr(arena.alloc(64), 64)});                       // nothing readable
    txq.add_chain({Drv::rd(0x200000, 64)});                              // outside guest RAM
    txq.set_desc(9, put(Bytes(64, 2)), 64, virtio::kDescFNext, 9);       // a loop
    txq.publish(9);
    const Bytes good = make_frame(100, 3);
    txq.add_chain({Drv::rd(put(good), static_cast<std::uint32_t>(good.size()))});
    net->queue_notify(VirtioNet::kTxQueue);
    pump();
    EXPECT_EQ(txq.used_idx(), 5) << "all chains given back";
    EXPECT_EQ(peer_recv(), good) << "only the good frame went out";
    EXPECT_EQ(peer_recv(), std::nullopt);
    EXPECT_EQ(net->stats().tx_errors, 4u);
    EXPECT_EQ(irq->resets_needed, 0) << "bad chains are not a broken ring";
}

// A full backend delays transmit but loses nothing, both ways a backend transmits: in io_uring
// batches (a SocketBackend) and frame by frame (a tap where system calls are cheap).
void NetFixture::full_backend_delays_transmit(bool frame_by_frame) {
    if (frame_by_frame) make_device(options(), 0, SOCK_SEQPACKET, true);

    const int small = 4096;
    ASSERT_EQ(::setsockopt(backend->fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    activate();
    std::vector<Bytes> frames;
    for (int i = 0; i < 15; ++i) {
        frames.push_back(make_frame(1400, static_cast<std::uint8_t>(i)));
        txq.add_chain({Drv::rd(put(frames.back()), static_cast<std::uint32_t>(frames.back().size()))});
    }
    net->queue_notify(VirtioNet::kTxQueue);
    pump();
    const auto first = txq.used_idx();
    ASSERT_LT(first, 15) << "the socket buffer must fill up for this test";
    EXPECT_EQ(receive_in_order(frames), frames.size());
    EXPECT_EQ(txq.used_idx(), 15);
    EXPECT_EQ(net->stats().tx_errors, 0u);
}

void NetFixture::no_frame_behind_full_backend(bool frame_by_frame) {
    if (frame_by_frame) make_device(options(), 0, SOCK_SEQPACKET, true);

    const int small = 4096;
    ASSERT_EQ(::setsockopt(backend->fd(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    activate();
    // Frames that fill the socket, with chains too short to be a frame among and behind them:
    // those go back at once (counted once each), the frames wait for room and keep their order.
    std::vector<Bytes> frames;
    const std::uint64_t stub = arena.alloc(8);
    for (int i = 0; i < 12; ++i) {
        frames.push_back(make_frame(1400, static_cast<std::uint8_t>(i)));
        txq.add_chain({Drv::rd(put(frames.back()), static_cast<std::uint32_t>(frames.back().size()))});
        if (i % 4 == 3) txq.add_chain({Drv::rd(stub, 8)});
    }
    net->queue_notify(VirtioNet::kTxQueue);
    pump();
    ASSERT_LT(txq.used_idx(), 15) << "the socket buffer must fill up for this test";
    EXPECT_EQ(receive_in_order(frames), frames.size());
    EXPECT_EQ(txq.used_idx(), 15) << "every chain given back once";
    EXPECT_EQ(net->stats().tx_errors, 3u) << "each short chain counted once";
    EXPECT_EQ(net->stats().tx_frames, 12u);
}

TEST_F(NetFixture, AFullBackendDelaysTransmitButLosesNothing) { full_backend_delays_transmit(false); }
TEST_F(NetFixture, AFullBackendDelaysTransmitButLosesNothingFrameByFrame) { full_backend_delays_transmit(true); }
TEST_F(NetFixture, AChainThatIsNoFrameIsGivenBackOnceEvenBehindAFullBackend) { no_frame_behind_full_backend(false); }
TEST_F(NetFixture, AChainThatIsNoFrameIsGivenBackOnceEvenBehindAFullBackendFrameByFrame) { no_frame_behind_full_backend(true); }

TEST_F(NetFixture, ReceiveGoesIntoAPostedBufferWithNumBuffersOne) {
    activate(kV1);  // no MRG_RXBUF: one chain per frame
    const std::uint64_t buf = arena.alloc(1526);
    mem.write(buf, Bytes(1526, 0xee).data(), 1526);
    rxq.add_chain({Drv::wr(buf, 20), Drv::wr(buf + 20, 1506)});
    net->queue_notify(VirtioNet::kRxQueue);
    pump();
    EXPECT_EQ(rxq.used_idx(), 0) << "no frame yet: the buffer stays with the device";
    Bytes f = make_frame(100, 0x42, 2 /* DATA_VALID */);
    f[10] = 0x99;  // num_buffers from the backend is not trusted
    peer_send(f);
    pump();
    ASSERT_EQ(rxq.used_idx(), 1);
    EXPECT_EQ(rxq.used(0).len, f.size());
    EXPECT_EQ(read_guest(buf, f.size()), with_num_buffers(f, 1));
    EXPECT_EQ(read_guest(buf + f.size(), 4), Bytes(4, 0xee)) << "nothing written past the frame";
    EXPECT_EQ(get_per_queue(VirtioNet::kRxQueue), 1);
    EXPECT_EQ(net->stats().rx_frames, 1u);
    EXPECT_EQ(net->stats().rx_bytes, 100u);
}

TEST_F(NetFixture, ANumBuffersFieldSplitAcrossTwoBuffersIsWrittenWhole) {
    activate(kV1);
    // The header's last field, num_buffers (bytes 10-11), straddles the first two buffers, which
    // are not adjacent in guest memory: byte 10 ends the first, byte 11 starts the second.
    const std::uint64_t a = arena.alloc(11), gap = arena.alloc(16), b = arena.alloc(1515);
    mem.write(gap, Bytes(16, 0xee).data(), 16);
    rxq.add_chain({Drv::wr(a, 11), Drv::wr(b, 1515)});
    net->queue_notify(VirtioNet::kRxQueue);
    Bytes f = make_frame(60, 0x42);
    f[10] = 0x99;
    f[11] = 0x77;
    peer_send(f);
    pump();
    ASSERT_EQ(rxq.used_idx(), 1);
    EXPECT_EQ(rxq.used(0).len, f.size());
    Bytes got = read_guest(a, 11);
    const Bytes rest = read_guest(b, f.size() - 11);
    got.insert(got.end(), rest.begin(), rest.end());
    EXPECT_EQ(got, with_num_buffers(f, 1));
    EXPECT_EQ(read_guest(gap, 16), Bytes(16, 0xee)) << "nothing written between the buffers";
}

TEST_F(NetFixture, ReceiveWithoutBuffersWaitsInTheBackendUntilTheNextNotify) {
    activate(kV1);
    const Bytes a = make_frame(64, 1), b = make_frame(64, 2);
    peer_send(a);
    peer_send(b);
    pump();
    EXPECT_TRUE(device_side_has_data()) << "frames stay in the backend, not read and lost";
    EXPECT_EQ(net->stats().rx_dropped, 0u);
    const std::uint64_t b1 = arena.alloc(1526), b2 = arena.alloc(1526);
    rxq.add_chain({Drv::wr(b1, 1526)});
    pump();
    EXPECT_EQ(rxq.used_idx(), 0) << "no notify yet";
    net->queue_notify(VirtioNet::kRxQueue);
    pump();
    ASSERT_EQ(rxq.used_idx(), 1);
    EXPECT_EQ(read_guest(b1 + 12, 64), Bytes(a.begin() + 12, a.end()));
    EXPECT_TRUE(device_side_has_data()) << "the second frame waits for the second buffer";
    rxq.add_chain({Drv::wr(b2, 1526)});
    net->queue_notify(VirtioNet::kRxQueue);
    pump();
    ASSERT_EQ(rxq.used_idx(), 2);
    EXPECT_EQ(read_guest(b2 + 12, 64), Bytes(b.begin() + 12, b.end()));
    EXPECT_FALSE(device_side_has_data());
    EXPECT_EQ(net->stats().rx_dropped, 0u);
}

TEST_F(NetFixture, MergeableBuffersCarryOneFrameAcrossSeveralChains) {
    activate(kV1 | kMrg);
    std::uint64_t bufs[4];
    for (auto& b : bufs) {
        b = arena.alloc(64);
        rxq.add_chain({Drv::wr(b, 64)});
    }
    net->queue_notify(VirtioNet::kRxQueue);
    const Bytes f = make_frame(150, 0x33);  // 162 bytes: 64 + 64 + 34
    peer_send(f);
    pump();
    ASSERT_EQ(rxq.used_idx(), 3);
    EXPECT_EQ(rxq.used(0).len, 64u);
    EXPECT_EQ(rxq.used(1).len, 64u);
    EXPECT_EQ(rxq.used(2).len, 34u);
    Bytes got = read_guest(bufs[0], 64), g1 = read_guest(bufs[1], 64), g2 = read_guest(bufs[2], 34);
    got.insert(got.end(), g1.begin(), g1.end());
    got.insert(got.end(), g2.begin(), g2.end());
    Bytes expect = f;
    expect[10] = 3;  // num_buffers
    EXPECT_EQ(got, expect);
    // The fourth chain was popped and kept: the next frame uses it.
    const Bytes small = make_frame(30, 0x44);
    peer_send(small);
    pump();
    ASSERT_EQ(rxq.used_idx(), 4);
    EXPECT_EQ(rxq.used(3).len, small.size());
    EXPECT_EQ(read_guest(bufs[3] + 12, 30), Bytes(small.begin() + 12, small.end()));
    EXPECT_EQ(read_guest(bufs[3] + 10, 1), Bytes{1});
}

TEST_F(NetFixture, AMergeableFrameLargerThanThePostedBuffersWaitsForMore) {
    activate(kV1 | kMrg);
    const std::uint64_t first = arena.alloc(64);
    rxq.add_chain({Drv::wr(first, 64)});
    net->queue_notify(VirtioNet::kRxQueue);
    const Bytes big = make_frame(200, 0x61), next = make_frame(40, 0x62);
    peer_send(big);
    peer_send(next);
    pump();
    EXPECT_EQ(rxq.used_idx(), 0) << "never half-delivered";
    EXPECT_TRUE(device_side_has_data()) << "the next frame is not read while one is waiting";
    const std::uint64_t more = arena.alloc(256);
    rxq.add_chain({Drv::wr(more, 100)});
    rxq.add_chain({Drv::wr(more + 128, 100)});
    net->queue_notify(VirtioNet::kRxQueue);
    pump();
    ASSERT_GE(rxq.used_idx(), 3);
    EXPECT_EQ(rxq.used(0).len, 64u);
    EXPECT_EQ(rxq.used(1).len, 100u);
    EXPECT_EQ(rxq.used(2).len, 212u - 164u);
    Bytes got = read_guest(first, 64), a = read_guest(more, 100), b = read_guest(more + 128, 48);
    got.insert(got.end(), a.begin(), a.end());
    got.insert(got.end(), b.begin(), b.end());
    Bytes expect = big;
    expect[10] = 3;
    EXPECT_EQ(got, expect);
    EXPECT_EQ(rxq.used_idx(), 3) << "the second frame waits: no buffer left";
    rxq.add_chain({Drv::wr(arena.alloc(64), 64)});
    net->queue_notify(VirtioNet::kRxQueue);
    pump();
    EXPECT_EQ(rxq.used_idx(), 4);
    EXPECT_EQ(rxq.used(3).len, next.size());
    EXPECT_EQ(net->stats().rx_frames, 2u);
    EXPECT_EQ(net->stats().rx_dropped, 0u);
}

// Tiny receive buffers: the device holds more chains than its ring of held chains starts with
// (64) before a frame has room, and frames complete from the middle of that ring.
TEST_F(NetFixture, ManyTinyMergeableBuffersCarryFramesInOrder) {
    VirtioNetOptions o = options();
    o.queue_size = 256;
    make_device(o);
    Drv big_rx{mem, 0x3000, 256};  // ends below the arena (0x10000)
    net->activate(mem, kV1 | kMrg, {big_rx.config(), txq.config()}, irq);
    Drv& rxq = big_rx;
    constexpr std::uint32_t kPiece = 20;
    constexpr int kChains = 160;
    std::vector<std::uint64_t> bufs;
    std::vector<std::uint16_t> heads;
    for (int i = 0; i < kChains; ++i) {
        bufs.push_back(arena.alloc(kPiece));
        heads.push_back(rxq.add_chain({Drv::wr(bufs.back(), kPiece)}));
    }
    net->queue_notify(VirtioNet::kRxQueue);
    std::size_t next_chain = 0;
    std::uint16_t used = 0;
    for (const std::size_t payload : {1000u, 500u, 700u}) {
        const Bytes f = make_frame(payload, static_cast<std::uint8_t>(payload / 100));
        peer_send(f);
        pump();
        const std::size_t chains = (f.size() + kPiece - 1) / kPiece;
        ASSERT_EQ(rxq.used_idx(), used + chains) << payload;
        Bytes got;
        for (std::size_t k = 0; k < chains; ++k) {
            const auto u = rxq.used(static_cast<std::uint16_t>(used + k));
            EXPECT_EQ(u.id, heads[next_chain + k]) << payload << " piece " << k;
            const Bytes piece = read_guest(bufs[next_chain + k], u.len);
            got.insert(got.end(), piece.begin(), piece.end());
        }
        Bytes expect = f;
        expect[10] = static_cast<std::uint8_t>(chains);  // num_buffers
        EXPECT_EQ(got, expect) << payload;
        next_chain += chains;
        used = static_cast<std::uint16_t>(used + chains);
    }
    EXPECT_EQ(net->stats().rx_frames, 3u);
    EXPECT_EQ(net->stats().rx_dropped, 0u);
}


// A guest with GSO keeps ~64 KiB of 1.5 KiB mergeable buffers posted. At first a frame is read
// into one of them and the bounce area (two iovecs, not ~40); a frame longer than that window
// still arrives whole (its tail copied from the bounce area) and opens the window to every
// held chain; 64 frames in a row that fit a plain Ethernet frame narrow it to one chain again,
// 64 small ones (up to 1 KiB) to none: read into the bounce area alone and copied, whole; a
// plain frame then widens it to one chain at once.
TEST_F(NetFixture, TheReadWindowFollowsFrameSizesWithGuestGso) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    peer = Fd(sv[1]);
    auto counting = std::make_unique<IovCountingBackend>(
        std::make_unique<SocketBackend>(Fd(sv[0]), unsigned{TUN_F_CSUM | TUN_F_TSO4}, "socketpair"));
    IovCountingBackend* b = counting.get();
    VirtioNetOptions o = options();
    o.queue_size = 64;
    net = std::make_unique<VirtioNet>(std::move(counting), o);
    Drv big_rx{mem, 0x3000, 64};
    net->activate(mem, kV1 | kMrg | feature_bit(kNetFGuestCsum) | feature_bit(kNetFGuestTso4),
                  {big_rx.config(), txq.config()}, irq);
    constexpr std::uint32_t kBuf = 1536;
    std::map<std::uint16_t, std::uint64_t> buf_of;  // head -> its buffer
    std::vector<std::uint64_t> free_bufs;
    auto post = [&] {
        for (const auto& u : big_rx.reclaim()) free_bufs.push_back(buf_of.at(static_cast<std::uint16_t>(u.id)));
        while (big_rx.free_descriptors() > 0) {
            std::uint64_t gpa;
            if (free_bufs.empty()) {
                gpa = arena.alloc(kBuf);
            } else {
                gpa = free_bufs.back();
                free_bufs.pop_back();
            }
            buf_of[big_rx.add_chain({Drv::wr(gpa, kBuf)})] = gpa;
        }
        net->queue_notify(VirtioNet::kRxQueue);
    };
    // Delivers one frame; returns what the guest got across its buffers, and its num_buffers.
    auto deliver = [&](const Bytes& f) {
        post();
        pump();
        const std::uint16_t before = static_cast<std::uint16_t>(big_rx.used_idx());
        peer_send(f);
        pump();
        Bytes got;
        const std::uint16_t n = static_cast<std::uint16_t>(big_rx.used_idx() - before);
        for (std::uint16_t k = 0; k < n; ++k) {
            const auto u = big_rx.used(static_cast<std::uint16_t>(before + k));
            const Bytes piece = read_guest(buf_of.at(static_cast<std::uint16_t>(u.id)), u.len);
            got.insert(got.end(), piece.begin(), piece.end());
        }
        return std::pair{got, n};
    };
    // Delivers a frame of `payload` bytes and checks that it arrived whole; its num_buffers.
    auto deliver_whole = [&](std::size_t payload, std::uint8_t fill) {
        const Bytes f = make_frame(payload, fill);
        auto [got, n] = deliver(f);
        EXPECT_EQ(got, with_num_buffers(f, n));
        return std::size_t{n};
    };
    const std::size_t big_chains = (make_frame(20000, 0).size() + kBuf - 1) / kBuf;

    EXPECT_EQ(deliver_whole(100, 0x21), 1u);
    EXPECT_EQ(b->iovs.back(), 2u) << "one chain and the bounce area";
    EXPECT_EQ(deliver_whole(20000, 0x22), big_chains);
    EXPECT_EQ(b->iovs.back(), 2u) << "read through the narrow window: the tail came from the bounce area";
    EXPECT_EQ(deliver_whole(20000, 0x23), big_chains);
    EXPECT_GE(b->iovs.back(), 40u) << "the window opened to every held chain";

    // 63 small frames and one plain one: the window narrows to the widest of the run.
    for (int i = 0; i < 64; ++i) deliver_whole(i == 40 ? 1400 : 60, static_cast<std::uint8_t>(i));
    EXPECT_GE(b->iovs[b->iovs.size() - 2], 40u) << "the 63rd frame still saw the wide window";
    for (int i = 0; i < 64; ++i) {
        EXPECT_EQ(deliver_whole(60, static_cast<std::uint8_t>(0x40 + i)), 1u);
        if (i == 0) {
            EXPECT_EQ(b->iovs.back(), 2u) << "narrowed to one chain after 64 frames that fit one";
        }
    }
    EXPECT_EQ(b->iovs[b->iovs.size() - 2], 2u) << "the 63rd small frame still saw one chain";
    EXPECT_EQ(deliver_whole(900, 0x7e), 1u);
    EXPECT_EQ(b->iovs.back(), 1u) << "narrowed to the bounce area alone after 64 small frames";
    EXPECT_EQ(deliver_whole(1400, 0x7f), 1u);
    EXPECT_EQ(b->iovs.back(), 1u) << "read through the bounce area alone";
    EXPECT_EQ(deliver_whole(1400, 0x80), 1u);
    EXPECT_EQ(b->iovs.back(), 2u) << "a plain frame widened the window to one chain at once";
    EXPECT_EQ(deliver_whole(20000, 0x81), big_chains);
    EXPECT_EQ(net->stats().rx_dropped, 0u);
}

TEST_F(NetFixture, AChainTooSmallForAFrameDropsTheFrameAndKeepsTheChain) {
    activate(kV1);  // without MRG_RXBUF a frame must fit one chain
    const std::uint64_t buf = arena.alloc(48);
    const std::uint16_t head = rxq.add_chain({Drv::wr(buf, 48)});
    net->queue_notify(VirtioNet::kRxQueue);
    peer_send(make_frame(100, 0x10));  // 112 bytes > 48
    pump();
    EXPECT_EQ(rxq.used_idx(), 0) << "the chain is not given back half-filled";
    EXPECT_EQ(net->stats().rx_dropped, 1u);
    const Bytes fits = make_frame(30, 0x20);
    peer_send(fits);
    pump();
    ASSERT_EQ(rxq.used_idx(), 1);
    EXPECT_EQ(rxq.used(0).id, head) << "the same chain took the next frame";
    EXPECT_EQ(rxq.used(0).len, fits.size());
    EXPECT_EQ(read_guest(buf + 12, 30), Bytes(fits.begin() + 12, fits.end()));
    EXPECT_EQ(net->stats().rx_frames, 1u);
}

TEST_F(NetFixture, UnusableReceiveChainsAreReturnedEmpty) {
    activate(kV1);
    rxq.add_chain({Drv::rd(arena.alloc(64), 64)});  // device-readable: no room for anything
    rxq.add_chain({Drv::wr(arena.alloc(8), 8)});     // smaller than the header
    rxq.add_chain({Drv::wr(0x300000, 1526)});        // outside RAM
    const std::uint64_t good = arena.alloc(1526);
    rxq.add_chain({Drv::wr(good, 1526)});
    net->queue_notify(VirtioNet::kRxQueue);
    const Bytes f = make_frame(60, 0x7);
    peer_send(f);
    pump();
    ASSERT_EQ(rxq.used_idx(), 4);
    for (int i = 0; i < 3; ++i) EXPECT_EQ(rxq.used(static_cast<std::uint16_t>(i)).len, 0u);
    EXPECT_EQ(rxq.used(3).len, f.size());
    EXPECT_EQ(read_guest(good + 12, 60), Bytes(f.begin() + 12, f.end()));
    EXPECT_EQ(net->stats().rx_bad_chains, 3u);
    EXPECT_EQ(net->stats().rx_dropped, 0u) << "no frame was lost";
    EXPECT_EQ(irq->resets_needed, 0);
}

TEST_F(NetFixture, ABrokenRingAsksForResetOnceAndTheOtherQueueGoesOn) {
    activate(kV1);
    txq.publish(16);  // head index out of range: no head can ever be given back
    net->queue_notify(VirtioNet::kTxQueue);
    pump();
    EXPECT_EQ(irq->resets_needed, 1);
    net->queue_notify(VirtioNet::kTxQueue);
    pump();
    EXPECT_EQ(irq->resets_needed, 1) << "reported once";
    const std::uint64_t buf = arena.alloc(1526);
    rxq.add_chain({Drv::wr(buf, 1526)});
    net->queue_notify(VirtioNet::kRxQueue);
    peer_send(make_frame(50, 1));
    pump();
    EXPECT_EQ(rxq.used_idx(), 1);

    net->reset();
    rxq.set_avail_idx(static_cast<std::uint16_t>(rxq.used_idx() + 17));  // more than `size` ahead
    Drv tx2(mem, 0x3000, 16);
    net->activate(mem, kV1, {rxq.config(), tx2.config()}, irq);
    peer_send(make_frame(50, 2));
    pump();
    EXPECT_EQ(irq->resets_needed, 2);

    net->reset();
    auto bad = rxq.config();
    bad.desc = 0x1008;  // misaligned descriptor table
    net->activate(mem, kV1, {bad, txq.config()}, irq);
    EXPECT_EQ(irq->resets_needed, 3) << "a bad layout is reported at activation";
}

TEST_F(NetFixture, ResetMidTrafficStopsTouchingGuestMemoryAndLosesNoFrame) {
    activate(kV1 | kMrg);
    const std::uint64_t held = arena.alloc(64);
    rxq.add_chain({Drv::wr(held, 64)});
    net->queue_notify(VirtioNet::kRxQueue);
    peer_send(make_frame(200, 0x1));  // waits for more buffers in the bounce area
    pump();
    const Bytes tx = make_frame(60, 0x2);
    txq.add_chain({Drv::rd(put(tx), static_cast<std::uint32_t>(tx.size()))});  // not notified yet
    mem.write(held, Bytes(64, 0xcc).data(), 64);

    net->reset();
    const Bytes after = make_frame(60, 0x3);
    peer_send(after);
    net->queue_notify(VirtioNet::kRxQueue);
    net->queue_notify(VirtioNet::kTxQueue);
    pump();
    EXPECT_EQ(read_guest(held, 64), Bytes(64, 0xcc)) << "no guest write after reset";
    EXPECT_EQ(peer_recv(), std::nullopt) << "no guest read after reset";
    EXPECT_TRUE(device_side_has_data()) << "frames arriving while reset wait in the backend";
    EXPECT_EQ(net->stats().rx_dropped, 1u) << "only the half-received frame of the old rings";

    Drv rx2(mem, 0x4000, 16), tx2(mem, 0x5000, 16);
    const std::uint64_t buf = arena.alloc(1526);
    rx2.add_chain({Drv::wr(buf, 1526)});
    net->activate(mem, kV1, {rx2.config(), tx2.config()}, irq);
    pump();
    ASSERT_EQ(rx2.used_idx(), 1) << "delivered as soon as the driver is back";
    EXPECT_EQ(read_guest(buf + 12, 60), Bytes(after.begin() + 12, after.end()));
}

TEST_F(NetFixture, EventIdxSuppressesInterruptsTheDriverDidNotAskFor) {
    activate(kV1 | feature_bit(virtio::kFeatureEventIdx));
    txq.set_used_event(1);  // interrupt only once used idx passes 1
    for (int i = 0; i < 2; ++i) {
        const Bytes f = make_frame(60, static_cast<std::uint8_t>(i));
        txq.add_chain({Drv::rd(put(f), static_cast<std::uint32_t>(f.size()))});
        net->queue_notify(VirtioNet::kTxQueue);
        pump();
        EXPECT_EQ(get_per_queue(VirtioNet::kTxQueue), i) << "after frame " << i;
    }
    EXPECT_EQ(txq.avail_event(), 2) << "the device asks for a kick at the next buffer";
}

TEST_F(NetFixture, PollIsRefusedWhenTheDeviceRunsItsOwnLoop) {
    make_device(options(true));
    EXPECT_THROW(net->poll(0), Error);
}

TEST_F(NetFixture, TheEventLoopThreadServesBothQueues) {
    make_device(options(true), 0, SOCK_DGRAM);
    activate(kV1 | kMrg);

    const Bytes f = make_frame(80, 0x9);
    txq.add_chain({Drv::rd(put(f), static_cast<std::uint32_t>(f.size()))});
    net->queue_notify(VirtioNet::kTxQueue);
    pollfd p{peer.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1);
    EXPECT_EQ(peer_recv(), f);
    ASSERT_TRUE(irq->wait_for([&] { return irq->per_queue[VirtioNet::kTxQueue] == 1; }));
    // The loop has run: it named its thread first.
    bool named = false;
    for (const auto& t : std::filesystem::directory_iterator("/proc/self/task")) {
        std::ifstream comm(t.path() / "comm");
        std::string name;
        std::getline(comm, name);
        named |= name == "nettest-io";
    }
    EXPECT_TRUE(named) << "a thread named nettest-io";

    const std::uint64_t buf = arena.alloc(2048);
    rxq.add_chain({Drv::wr(buf, 2048)});
    net->queue_notify(VirtioNet::kRxQueue);
    const Bytes in = make_frame(500, 0xa);
    peer_send(in);
    ASSERT_TRUE(irq->wait_for([&] { return irq->per_queue[VirtioNet::kRxQueue] == 1; }));
    EXPECT_EQ(rxq.used_idx(), 1);
    EXPECT_EQ(read_guest(buf + 12, 500), Bytes(in.begin() + 12, in.end()));
    net->reset();
    net.reset();  // joins the thread
}

// Each queue's kick eventfd (what the anchor points KVM's ioeventfd at) wakes the loop for that
// queue with no queue_notify call: a TX kick sends the frame, an RX kick makes the new buffer
// take the frame waiting in the backend.
TEST_F(NetFixture, ASignalOnAQueueKickEventfdIsAKickForThatQueue) {
    make_device(options(true), 0, SOCK_DGRAM);
    activate(kV1 | kMrg);
    const int rx_kick = net->queue_kick_fd(VirtioNet::kRxQueue), tx_kick = net->queue_kick_fd(VirtioNet::kTxQueue);
    ASSERT_GE(rx_kick, 0);
    ASSERT_GE(tx_kick, 0);
    EXPECT_NE(rx_kick, tx_kick);
    EXPECT_EQ(net->queue_kick_fd(2), -1);
    const std::uint64_t one = 1;

    const Bytes f = make_frame(90, 0x3);
    txq.add_chain({Drv::rd(put(f), static_cast<std::uint32_t>(f.size()))});
    ASSERT_EQ(::write(tx_kick, &one, sizeof one), 8);
    pollfd p{peer.get(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1);
    EXPECT_EQ(peer_recv(), f);
    ASSERT_TRUE(irq->wait_for([&] { return irq->per_queue[VirtioNet::kTxQueue] == 1; }));
    // The loop never drains the eventfd (edge-triggered): each later signal is a kick again.
    for (std::uint8_t k = 0; k < 3; ++k) {
        const Bytes g = make_frame(60 + k, static_cast<std::uint8_t>(0x10 + k));
        txq.add_chain({Drv::rd(put(g), static_cast<std::uint32_t>(g.size()))});
        ASSERT_EQ(::write(tx_kick, &one, sizeof one), 8);
        ASSERT_EQ(::poll(&p, 1, 10000), 1) << "kick " << int(k) << " after the first did not send";
        EXPECT_EQ(peer_recv(), g);
    }
    std::uint64_t count = 0;
    ASSERT_EQ(::read(tx_kick, &count, sizeof count), 8);  // the test drains it: nobody else did
    EXPECT_EQ(count, 4u);

    // A frame arrives while the guest has no buffer: it waits in the backend until the RX kick.
    const Bytes in = make_frame(300, 0x4);
    peer_send(in);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_EQ(rxq.used_idx(), 0);
    const std::uint64_t buf = arena.alloc(2048);
    rxq.add_chain({Drv::wr(buf, 2048)});
    ASSERT_EQ(::write(rx_kick, &one, sizeof one), 8);
    ASSERT_TRUE(irq->wait_for([&] { return irq->per_queue[VirtioNet::kRxQueue] == 1; }));
    EXPECT_EQ(rxq.used_idx(), 1);
    EXPECT_EQ(read_guest(buf + 12, 300), Bytes(in.begin() + 12, in.end()));
    net->reset();
    net.reset();
}

// The start hook (the anchor's jail gate) runs first on "<name>-io": while it holds the thread
// a queued frame is not sent; once it lets go the loop serves the queue.
TEST_F(NetFixture, TheEventLoopThreadRunsTheStartHookFirst) {
    std::atomic<bool> release{false}, in_hook{false};
    std::atomic<int> hooks{0};
    std::string hook_thread;
    VirtioNetOptions o = options(true);
    o.on_thread_start = [&] {
        char name[16] = {};
        ::pthread_getname_np(::pthread_self(), name, sizeof name);
        hook_thread = name;
        ++hooks;
        in_hook = true;
        while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    };
    make_device(o, 0, SOCK_DGRAM);
    activate(kV1);
    for (int i = 0; i < 5000 && !in_hook; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ASSERT_TRUE(in_hook.load());
    const Bytes f = make_frame(80, 0x9);
    txq.add_chain({Drv::rd(put(f), static_cast<std::uint32_t>(f.size()))});
    net->queue_notify(VirtioNet::kTxQueue);
    pollfd p{peer.get(), POLLIN, 0};
    EXPECT_EQ(::poll(&p, 1, 50), 0) << "sent before the hook returned";
    release = true;
    ASSERT_EQ(::poll(&p, 1, 10000), 1);
    EXPECT_EQ(peer_recv(), f);
    EXPECT_EQ(hook_thread, "nettest-io");
    EXPECT_EQ(hooks.load(), 1);
    net->reset();
    net.reset();
}

TEST(NetMac, DerivedAddressesAreStableLocalAndDistinct) {
    const MacAddress a = derive_mac("web", 0), b = derive_mac("web", 1), c = derive_mac("db", 0);
    EXPECT_EQ(a, derive_mac("web", 0));
    EXPECT_EQ(a[0], 0x52);
    EXPECT_EQ(a[1], 0x54);
    EXPECT_EQ(a[2], 0x00);
    EXPECT_NE(a, b);
    EXPECT_NE(a, c);
    EXPECT_EQ(mac_for_nic("", "web", 1), b);
    EXPECT_EQ(format_mac(mac_for_nic("52:54:00:AB:cd:0f", "web", 0)), "52:54:00:ab:cd:0f");
    EXPECT_EQ(parse_mac(format_mac(c)), c);
    EXPECT_EQ(parse_mac("52:54:00:ab:cd"), std::nullopt);
    EXPECT_EQ(parse_mac("52-54-00-ab-cd-ef"), std::nullopt);
    EXPECT_EQ(parse_mac("52:54:00:ab:cd:eg"), std::nullopt);
    EXPECT_THROW(mac_for_nic("nope", "web", 2), Error);
}

}  // namespace
}  // namespace vmm::virtio_net
