// VirtioNet on a real tap (devicemodel/virtio-net/tap.h): needs root (CAP_NET_ADMIN) and
// /dev/net/tun, skips with the reason otherwise. Creates a tap with a unique name in the current
// network namespace, gives it a 198.18.0.0/15 (benchmarking range) address, and checks:
//  - a frame the guest transmits appears on the tap (AF_PACKET socket, tap rx counter);
//  - with VIRTIO_NET_F_CSUM a UDP datagram sent with NEEDS_CSUM and no valid checksum is
//    accepted by the host stack (the vnet header reached the kernel), and refused without it;
//  - a frame injected with AF_PACKET out of the tap lands in the guest's RX buffers;
//  - errors name the tap (busy, bad name); the tap disappears with the device;
//  - the tap deleted under an active device (`ip link del`): no busy loop on the dead fd, transmit
//    chains still completed (counted as dropped), link down, and the device still resets and
//    re-activates.
#include "devicemodel/uring/frame_writer.h"
#include "devicemodel/virtio-net/tap.h"
#include "devicemodel/virtio-net/virtio_net.h"

#include "common/error.h"
#include "tests/support/fakes.h"
#include "tests/support/virtqueue_driver.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <string>

namespace vmm::virtio_net {
namespace {

using Drv = test::VirtqueueDriver;
using virtio::feature_bit;
using Bytes = std::vector<std::uint8_t>;

constexpr std::uint16_t kEtherType = 0x88b5;  // IEEE local experimental
const MacAddress kGuestMac{0x52, 0x54, 0x00, 0x7e, 0x57, 0x01};

std::uint64_t read_counter(const std::string& tap, const char* which) {
    std::ifstream f("/sys/class/net/" + tap + "/statistics/" + which);
    std::uint64_t v = 0;
    f >> v;
    return v;
}

// `ip link del`: RTM_DELLINK for `ifindex` over rtnetlink. Returns 0 or the kernel's -errno.
int delete_link(int ifindex) {
    Fd nl(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
    if (!nl.valid()) return -errno;
    struct {
        nlmsghdr h;
        ifinfomsg i;
    } req{};
    req.h.nlmsg_len = sizeof req;
    req.h.nlmsg_type = RTM_DELLINK;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    req.h.nlmsg_seq = 1;
    req.i.ifi_family = AF_UNSPEC;
    req.i.ifi_index = ifindex;
    if (::send(nl.get(), &req, sizeof req, 0) != static_cast<ssize_t>(sizeof req)) return -errno;
    alignas(nlmsghdr) char buf[512];
    const ssize_t n = ::recv(nl.get(), buf, sizeof buf, 0);
    if (n < static_cast<ssize_t>(NLMSG_LENGTH(sizeof(nlmsgerr)))) return -EPROTO;
    const auto* h = reinterpret_cast<const nlmsghdr*>(buf);  // the ack starts the datagram
    if (h->nlmsg_type != NLMSG_ERROR) return -EPROTO;
    return static_cast<const nlmsgerr*>(NLMSG_DATA(h))->error;
}

double thread_cpu_ms() {
    timespec ts{};
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

std::uint16_t ip_checksum(const std::uint8_t* p, std::size_t n) {
    std::uint32_t sum = 0;
    for (std::size_t i = 0; i + 1 < n; i += 2) sum += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return static_cast<std::uint16_t>(~sum);
}

struct TapFixture : ::testing::Test {
    std::string name = "vmtn" + std::to_string(::getpid() % 100000000);
    std::uint8_t net_byte = static_cast<std::uint8_t>(::getpid() % 250);
    test::FakeGuestMemory fake{{{0, 0x200000}}};
    const GuestMemory& mem = fake.memory();
    Drv rxq{mem, 0x1000, 64};
    Drv txq{mem, 0x3000, 64};
    Drv::Arena arena{0x10000, 0x200000};
    std::shared_ptr<test::FakeVirtioInterrupt> irq = std::make_shared<test::FakeVirtioInterrupt>();
    std::unique_ptr<VirtioNet> net;
    Tap* tap = nullptr;
    Fd packet;
    MacAddress tap_mac{};
    int ifindex = 0;
    bool own_thread = true;  // false: the test runs the device's loop with poll()

    void SetUp() override {
        if (::geteuid() != 0) GTEST_SKIP() << "needs root (CAP_NET_ADMIN) to create a tap";
        if (::access("/dev/net/tun", R_OK | W_OK) != 0) GTEST_SKIP() << "/dev/net/tun is missing";
        std::unique_ptr<Tap> t;
        try {
            t = std::make_unique<Tap>(name);
        } catch (const std::exception& e) {
            GTEST_SKIP() << "cannot create a tap here: " << e.what();
        }
        tap = t.get();
        ASSERT_EQ(tap->name(), name);
        VirtioNetOptions o;
        o.name = "taptest";
        o.mac = kGuestMac;
        o.queue_size = 64;
        o.own_thread = own_thread;
        net = std::make_unique<VirtioNet>(std::move(t), o);

        // No IPv6 on it: no router solicitations or MLD reports in the guest's RX queue.
        std::ofstream("/proc/sys/net/ipv6/conf/" + name + "/disable_ipv6") << "1";
        ifindex = static_cast<int>(::if_nametoindex(name.c_str()));
        ASSERT_GT(ifindex, 0);
        Fd ctl(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        ifreq ifr{};
        std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
        auto* sin = reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr);  // ifr_addr is a sockaddr slot
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = htonl(0xc6120001u | net_byte << 8);  // 198.18.N.1
        ASSERT_EQ(::ioctl(ctl.get(), SIOCSIFADDR, &ifr), 0) << std::strerror(errno);
        sin->sin_addr.s_addr = htonl(0xffffff00u);
        ASSERT_EQ(::ioctl(ctl.get(), SIOCSIFNETMASK, &ifr), 0) << std::strerror(errno);
        ASSERT_EQ(::ioctl(ctl.get(), SIOCGIFFLAGS, &ifr), 0);
        ifr.ifr_flags |= IFF_UP;
        ASSERT_EQ(::ioctl(ctl.get(), SIOCSIFFLAGS, &ifr), 0) << std::strerror(errno);
        ASSERT_EQ(::ioctl(ctl.get(), SIOCGIFHWADDR, &ifr), 0);
        std::memcpy(tap_mac.data(), ifr.ifr_hwaddr.sa_data, 6);

        packet = Fd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL)));
        ASSERT_TRUE(packet.valid()) << std::strerror(errno);
        sockaddr_ll sll{};
        sll.sll_family = AF_PACKET;
        sll.sll_protocol = htons(ETH_P_ALL);
        sll.sll_ifindex = ifindex;
        ASSERT_EQ(::bind(packet.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll), 0) << std::strerror(errno);
    }
    void TearDown() override {
        if (!net) return;
        net.reset();  // closes the tap fd: a non-persistent tap goes away
        EXPECT_FALSE(std::filesystem::exists("/sys/class/net/" + name)) << "tap removed";
    }

    Bytes ether(const MacAddress& dst, const MacAddress& src, std::uint16_t type, const std::string& payload) {
        Bytes f(dst.begin(), dst.end());
        f.insert(f.end(), src.begin(), src.end());
        f.push_back(static_cast<std::uint8_t>(type >> 8));
        f.push_back(static_cast<std::uint8_t>(type));
        f.insert(f.end(), payload.begin(), payload.end());
        if (f.size() < 60) f.resize(60, 0);
        return f;
    }
    void transmit(const Bytes& frame, std::uint8_t hdr_flags = 0, std::uint16_t csum_start = 0, std::uint16_t csum_offset = 0) {
        VirtioNetHdr h{};
        h.flags = hdr_flags;
        h.csum_start = csum_start;
        h.csum_offset = csum_offset;
        const std::uint64_t hg = arena.alloc(12), fg = arena.alloc(frame.size());
        mem.write(hg, &h, sizeof h);
        mem.write(fg, frame.data(), frame.size());
        txq.add_chain({Drv::rd(hg, 12), Drv::rd(fg, static_cast<std::uint32_t>(frame.size()))});
        net->queue_notify(VirtioNet::kTxQueue);
    }
    // Waits up to 5 s for a frame on the AF_PACKET socket containing `marker`.
    bool packet_socket_sees(const std::string& marker) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        Bytes b(4096);
        while (std::chrono::steady_clock::now() < deadline) {
            pollfd p{packet.get(), POLLIN, 0};
            if (::poll(&p, 1, 100) != 1) continue;
            const ssize_t n = ::recv(packet.get(), b.data(), b.size(), 0);
            if (n > 0 && std::search(b.begin(), b.begin() + n, marker.begin(), marker.end()) != b.begin() + n) return true;
        }
        return false;
    }
};

// The kernel's own words (arch/x86/kernel/cpu/bugs.c, Linux 6.1-6.18): batches only where a
// system call switches page tables or sets IBRS on entry.
TEST(TapTransmitChoiceTest, BatchesOnlyWhereSystemCallsAreDear) {
    const char* retpolines = "Mitigation: Retpolines; STIBP: disabled; RSB filling; PBRSB-eIBRS: Not affected; BHI: Retpoline";
    EXPECT_FALSE(tap_batches_pay_off("Not affected", retpolines));
    EXPECT_FALSE(tap_batches_pay_off("Not affected", "Mitigation: Enhanced / Automatic IBRS; IBPB: conditional; RSB filling"));
    EXPECT_FALSE(tap_batches_pay_off("Not affected", "Mitigation: Enhanced IBRS"));
    EXPECT_FALSE(tap_batches_pay_off("Vulnerable", "Vulnerable"));
    EXPECT_FALSE(tap_batches_pay_off("", ""));  // unreadable: the measured default
    EXPECT_TRUE(tap_batches_pay_off("Mitigation: PTI", retpolines));
    EXPECT_TRUE(tap_batches_pay_off("Not affected", "Mitigation: IBRS; IBPB: conditional; STIBP: always-on; RSB filling"));
}

TEST_F(TapFixture, GuestFramesReachTheTapAndInjectedFramesReachTheGuest) {
    net->activate(mem, feature_bit(virtio::kFeatureVersion1), {rxq.config(), txq.config()}, irq);
    const std::uint64_t rx_before = read_counter(name, "rx_packets");
    const MacAddress bcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    transmit(ether(bcast, kGuestMac, kEtherType, "vmm-net-tap-test-tx"));
    EXPECT_TRUE(packet_socket_sees("vmm-net-tap-test-tx"));
    ASSERT_TRUE(irq->wait_for([&] { return txq.used_idx() == 1; }));
    EXPECT_GE(read_counter(name, "rx_packets"), rx_before + 1) << "the tap counted the guest's frame";

    // The other way: AF_PACKET out of the tap → the device reads it into the guest's buffers.
    std::map<std::uint16_t, std::uint64_t> bufs;  // head → buffer
    for (int i = 0; i < 8; ++i) {
        const std::uint64_t gpa = arena.alloc(1526);
        bufs[rxq.add_chain({Drv::wr(gpa, 1526)})] = gpa;
    }
    net->queue_notify(VirtioNet::kRxQueue);
    const Bytes in = ether(kGuestMac, tap_mac, kEtherType, "vmm-net-tap-test-rx");
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_ifindex = ifindex;
    to.sll_halen = 6;
    std::memcpy(to.sll_addr, kGuestMac.data(), 6);
    ASSERT_EQ(::sendto(packet.get(), in.data(), in.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to),
              static_cast<ssize_t>(in.size()))
        << std::strerror(errno);
    // Find it among whatever else the host sent on the new interface.
    std::uint64_t found = 0;
    ASSERT_TRUE(irq->wait_for([&] {
        for (std::uint16_t i = 0; i < rxq.used_idx(); ++i) {
            const auto e = rxq.used(i);
            auto it = bufs.find(static_cast<std::uint16_t>(e.id));
            if (it == bufs.end() || e.len != 12 + in.size()) continue;
            Bytes g(e.len);
            mem.read(it->second, g.data(), g.size());
            if (Bytes(g.begin() + 12, g.end()) == in) found = it->second;
        }
        return found != 0;
    })) << "the injected frame reached the guest";
    VirtioNetHdr h{};
    mem.read(found, &h, sizeof h);
    EXPECT_EQ(h.num_buffers, 1);
    EXPECT_EQ(h.gso_type, kNetHdrGsoNone);
    EXPECT_EQ(net->stats().rx_dropped, 0u);
}

TEST_F(TapFixture, ABurstOfGuestFramesReachesTheTapWholeAndInOrder) {
    net->activate(mem, feature_bit(virtio::kFeatureVersion1), {rxq.config(), txq.config()}, irq);
    // 30 chains (the 64-entry queue holds 32 of two descriptors) published before one kick: the
    // device writes them frame by frame, or in batches where system calls are dear (one
    // io_uring_enter each where the kernel allows it, unlinked on a tap), and the tap must see
    // every frame once, in the guest's order.
    const MacAddress bcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    constexpr int kFrames = 30;
    for (int i = 0; i < kFrames; ++i) {
        char marker[32];
        std::snprintf(marker, sizeof marker, "vmm-burst-%02d", i);
        const Bytes f = ether(bcast, kGuestMac, kEtherType, marker);
        VirtioNetHdr h{};
        const std::uint64_t hg = arena.alloc(12), fg = arena.alloc(f.size());
        mem.write(hg, &h, sizeof h);
        mem.write(fg, f.data(), f.size());
        txq.add_chain({Drv::rd(hg, 12), Drv::rd(fg, static_cast<std::uint32_t>(f.size()))});
    }
    net->queue_notify(VirtioNet::kTxQueue);
    ASSERT_TRUE(irq->wait_for([&] { return txq.used_idx() == kFrames; }));
    std::vector<int> seen;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    Bytes b(4096);
    const std::string prefix = "vmm-burst-";
    while (seen.size() < kFrames && std::chrono::steady_clock::now() < deadline) {
        pollfd p{packet.get(), POLLIN, 0};
        if (::poll(&p, 1, 100) != 1) continue;
        const ssize_t n = ::recv(packet.get(), b.data(), b.size(), 0);
        if (n <= 0) continue;
        auto at = std::search(b.begin(), b.begin() + n, prefix.begin(), prefix.end());
        if (at == b.begin() + n || at + 12 > b.begin() + n) continue;
        seen.push_back((at[10] - '0') * 10 + (at[11] - '0'));
    }
    std::vector<int> want(kFrames);
    std::iota(want.begin(), want.end(), 0);
    EXPECT_EQ(seen, want);
    EXPECT_EQ(net->stats().tx_frames, static_cast<std::uint64_t>(kFrames));
    EXPECT_EQ(net->stats().tx_errors, 0u);
    // The tap writes as this host's mitigations say (tap_batches_pay_off). Batching, where io_uring
    // is usable (a socket's frame writer can be made) the tap's writer is too, and it is only
    // dropped where the kernel's tap refuses RWF_NOWAIT (Linux 6.1): the device did not quietly
    // fall back for another reason.
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    Fd a(sv[0]), b2(sv[1]);
    const char* why = tap->why_not_in_batches();
    if (!tap_batches_pay_off_here()) {
        std::printf("note: no PTI or IBRS on this host: the tap wrote frame by frame\n");
        EXPECT_FALSE(tap->writes_in_batches());
        EXPECT_STREQ(why, kCheapSystemCalls);
    } else if (!uring::FrameWriter::create(a.get(), uring::FrameWriter::Kind::Sendmsg))
        std::printf("note: io_uring is not available here; the tap wrote frame by frame\n");
    else if (why && std::string(why) == "the fd refuses RWF_NOWAIT")
        std::printf("note: this kernel's tap refuses RWF_NOWAIT; the tap wrote frame by frame\n");
    else {
        EXPECT_TRUE(tap->writes_in_batches()) << "this kernel has io_uring, yet the tap writes frame by frame: " << why;
        // A new tap's send buffer is unlimited, so nothing made the writer link its frames:
        // the order checked above held without links.
        EXPECT_FALSE(tap->batches_linked());
    }
}

TEST_F(TapFixture, ChecksumOffloadIsPassedToTheKernel) {
    const auto f = net->device_features();
    ASSERT_TRUE(f & feature_bit(kNetFCsum)) << "this kernel's tap accepts TUNSETOFFLOAD TUN_F_CSUM";
    EXPECT_TRUE(f & feature_bit(kNetFGuestCsum));
    EXPECT_TRUE(f & feature_bit(kNetFHostTso4));
    net->activate(mem, feature_bit(virtio::kFeatureVersion1) | feature_bit(kNetFCsum) | feature_bit(kNetFGuestCsum),
                  {rxq.config(), txq.config()}, irq);

    Fd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in local{};
    local.sin_family = AF_INET;
    local.sin_addr.s_addr = htonl(0xc6120001u | net_byte << 8);
    local.sin_port = htons(40000 + net_byte);
    ASSERT_EQ(::bind(udp.get(), reinterpret_cast<sockaddr*>(&local), sizeof local), 0) << std::strerror(errno);

    // Ethernet + IPv4 198.18.N.2 → 198.18.N.1 + UDP with a checksum field that is not valid.
    auto datagram = [&](const std::string& text) {
        Bytes ip(20 + 8 + text.size(), 0);
        ip[0] = 0x45;
        ip[2] = static_cast<std::uint8_t>(ip.size() >> 8);
        ip[3] = static_cast<std::uint8_t>(ip.size());
        ip[8] = 64;
        ip[9] = IPPROTO_UDP;
        const std::uint32_t src = 0xc6120002u | net_byte << 8, dst = 0xc6120001u | net_byte << 8;
        for (int i = 0; i < 4; ++i) {
            ip[12 + i] = static_cast<std::uint8_t>(src >> (24 - 8 * i));
            ip[16 + i] = static_cast<std::uint8_t>(dst >> (24 - 8 * i));
        }
        const std::uint16_t c = ip_checksum(ip.data(), 20);
        ip[10] = static_cast<std::uint8_t>(c >> 8);
        ip[11] = static_cast<std::uint8_t>(c);
        ip[20] = 0x9c;  // source port 40000
        ip[21] = 0x40;
        ip[22] = static_cast<std::uint8_t>(local.sin_port);  // network order already
        ip[23] = static_cast<std::uint8_t>(local.sin_port >> 8);
        ip[24] = static_cast<std::uint8_t>((8 + text.size()) >> 8);
        ip[25] = static_cast<std::uint8_t>(8 + text.size());
        ip[26] = 0x12;  // garbage checksum
        ip[27] = 0x34;
        std::memcpy(ip.data() + 28, text.data(), text.size());
        Bytes f(tap_mac.begin(), tap_mac.end());
        f.insert(f.end(), kGuestMac.begin(), kGuestMac.end());
        f.push_back(0x08);
        f.push_back(0x00);
        f.insert(f.end(), ip.begin(), ip.end());
        return f;
    };
    auto received = [&](const std::string& text) {
        pollfd p{udp.get(), POLLIN, 0};
        if (::poll(&p, 1, 1000) != 1) return false;
        char buf[256];
        const ssize_t n = ::recv(udp.get(), buf, sizeof buf, 0);
        return n == static_cast<ssize_t>(text.size()) && std::memcmp(buf, text.data(), text.size()) == 0;
    };
    transmit(datagram("bad checksum, no offload"));
    EXPECT_FALSE(received("bad checksum, no offload")) << "control: the stack drops a bad UDP checksum";
    // NEEDS_CSUM: checksum from byte 34 (UDP header), stored at offset 6 in it.
    transmit(datagram("checksum left to the host"), kNetHdrFNeedsCsum, 14 + 20, 6);
    EXPECT_TRUE(received("checksum left to the host")) << "the vnet header reached the kernel";
    ASSERT_TRUE(irq->wait_for([&] { return txq.used_idx() == 2; }));
    EXPECT_EQ(net->stats().tx_errors, 0u);
}

TEST_F(TapFixture, ErrorsNameTheTap) {
    try {
        Tap second(name);
        FAIL() << "a tap already attached must be busy";
    } catch (const std::system_error& e) {
        EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("busy"), std::string::npos) << e.what();
    }
    try {
        Tap bad("a-name-far-too-long-for-ifnamsiz");
        FAIL() << "over-long name accepted";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("a-name-far-too-long-for-ifnamsiz"), std::string::npos);
    }
}

// The device's loop is run by the test (poll), so "does not spin" is exact: a pass with nothing
// to do blocks for its whole timeout and uses no CPU.
struct TapGoneFixture : TapFixture {
    TapGoneFixture() { own_thread = false; }
    // Runs the loop until `pred` holds (at most ~2 s).
    template <typename Pred> bool pump(Pred pred) {
        for (int i = 0; i < 200 && !pred(); ++i) net->poll(10);
        return pred();
    }
};

TEST_F(TapGoneFixture, ATapDeletedUnderTheDeviceIsNotSpunOnAndTransmitStillCompletes) {
    net->activate(mem, feature_bit(virtio::kFeatureVersion1) | feature_bit(kNetFStatus), {rxq.config(), txq.config()},
                  irq);
    for (int i = 0; i < 4; ++i) rxq.add_chain({Drv::wr(arena.alloc(1526), 1526)});
    net->queue_notify(VirtioNet::kRxQueue);
    const MacAddress bcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    transmit(ether(bcast, kGuestMac, kEtherType, "before the tap goes"));
    ASSERT_TRUE(pump([&] { return txq.used_idx() == 1; }));
    ASSERT_EQ(net->stats().tx_frames, 1u);
    // The device now polls the tap for frames (EPOLLIN registered, RX buffers posted).

    ASSERT_EQ(delete_link(ifindex), 0) << "RTM_DELLINK " << name;
    ASSERT_FALSE(std::filesystem::exists("/sys/class/net/" + name));
    // The deleted tap reports EPOLLERR for ever and EBADFD on every read: the loop notices once,
    // then stops polling it. Ten passes of 20 ms must block, not return at once with work left.
    for (int i = 0; i < 3; ++i) net->poll(0);
    const auto wall = std::chrono::steady_clock::now();
    const double cpu = thread_cpu_ms();
    bool more = false;
    for (int i = 0; i < 10; ++i) more |= net->poll(20);
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - wall);
    EXPECT_FALSE(more) << "the loop has work left over on a dead tap";
    EXPECT_GE(waited.count(), 180) << "epoll_wait returned early: the dead fd is still polled";
    EXPECT_LT(thread_cpu_ms() - cpu, 50.0) << "CPU used while idle";

    std::uint8_t status[2] = {0xff, 0xff};
    net->read_config(offsetof(VirtioNetConfig, status), status);
    EXPECT_EQ(status[0] & kNetSLinkUp, 0) << "VIRTIO_NET_S_LINK_UP cleared";
    EXPECT_EQ(irq->config_notifies.load(), 1);

    // Transmit chains are still given back (used length 0) and counted as dropped.
    for (int i = 0; i < 3; ++i) transmit(ether(bcast, kGuestMac, kEtherType, "after the tap went"));
    ASSERT_TRUE(pump([&] { return txq.used_idx() == 4; })) << "used ring advanced";
    for (std::uint16_t i = 1; i < 4; ++i) EXPECT_EQ(txq.used(i).len, 0u);
    const VirtioNetStats st = net->stats();
    EXPECT_EQ(st.tx_dropped, 3u);
    EXPECT_EQ(st.tx_frames, 1u);
    EXPECT_EQ(st.tx_errors, 0u) << "not the guest's fault";
    EXPECT_EQ(irq->resets_needed.load(), 0) << "the rings are fine: no NEEDS_RESET";

    // The driver resets and brings the device up again (as after a link-down): it works, idle.
    net->reset();
    Drv rx2{mem, 0x5000, 64}, tx2{mem, 0x7000, 64};
    net->activate(mem, feature_bit(virtio::kFeatureVersion1) | feature_bit(kNetFStatus), {rx2.config(), tx2.config()},
                  irq);
    rx2.add_chain({Drv::wr(arena.alloc(1526), 1526)});
    net->queue_notify(VirtioNet::kRxQueue);
    const Bytes f = ether(bcast, kGuestMac, kEtherType, "after reset");
    const std::uint64_t hg = arena.alloc(12), fg = arena.alloc(f.size());
    mem.write(hg, std::array<std::uint8_t, 12>{}.data(), 12);
    mem.write(fg, f.data(), f.size());
    tx2.add_chain({Drv::rd(hg, 12), Drv::rd(fg, static_cast<std::uint32_t>(f.size()))});
    net->queue_notify(VirtioNet::kTxQueue);
    ASSERT_TRUE(pump([&] { return tx2.used_idx() == 1; }));
    EXPECT_EQ(net->stats().tx_dropped, 4u);
    EXPECT_EQ(rx2.used_idx(), 0) << "no frame can arrive; the buffer stays posted";
    const auto wall2 = std::chrono::steady_clock::now();
    more = false;
    for (int i = 0; i < 5; ++i) more |= net->poll(20);
    EXPECT_FALSE(more);
    EXPECT_GE(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - wall2).count(), 90);
}

}  // namespace
}  // namespace vmm::virtio_net
