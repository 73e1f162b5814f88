// virtio_net_bench: frames per second through VirtioNet (devicemodel/virtio-net) against raw
// write/read on the same backend, in one run, with the ratio.
//
//   virtio_net_bench [--frames N] [--size BYTES] [--rounds R] [--tap NAME] [--mrg] [--small-pages]
//                    [--tx-batch N]   (frames the driver posts per kick; default 64)
//
// Default backend: a socketpair(AF_UNIX, SOCK_SEQPACKET) (SocketBackend), both directions:
//   tx  guest chains (header + frame) → device writev → peer recv        vs  backend write → peer recv
//   rx  peer send → device readv into posted guest buffers → used ring   vs  peer send → backend read
// With --tap NAME (root): a tap brought up for the run. tx: the kernel consumes the frames. rx: a
// packet socket on the tap's interface sends them, the tap's reader (raw read, or the device)
// gets each with the virtio-net header the kernel puts in front.
// With --mrg: the driver Linux's virtio-net is on a tap with offloads: VIRTIO_NET_F_MRG_RXBUF
// with GUEST_CSUM and GUEST_TSO4 (the backend offers TUN_F_CSUM | TUN_F_TSO4), and 1536-byte
// receive buffers (its mergeable buffers for small frames); a frame may then be up to 64 KiB.
// The driver negotiates VIRTIO_RING_F_EVENT_IDX, as Linux's does (the device then asks for its
// kicks through avail_event), and kicks after every batch it posts.
// The device runs its event loop on the calling thread (own_thread = false, poll()), so both
// sides measure one thread's work: the cost the device model adds per frame. Raw and device
// runs alternate for R rounds (default 5); the medians and their ratio are reported, with the
// range of the per-round ratios (one run on a shared host swings by ±10 %). A device round also
// runs the bench's driver, the guest's side (reclaiming used chains, posting new ones, the kick's
// eventfd write), which a guest pays on its own vCPU; its time is measured and a second ratio,
// "device model alone", leaves it out. The device transmits a pass's frames with one
// io_uring_enter (NetBackend::write_batch); tx is also compared with a raw loop doing the same
// with liburing directly, 64 frames per io_uring_enter ("raw io_uring batch").
#include "common/error.h"
#include "common/log.h"
#include "devicemodel/virtio-net/socket_backend.h"
#include "devicemodel/virtio-net/tap.h"
#include "devicemodel/virtio-net/virtio_net.h"

#include "tests/support/fakes.h"
#include "tests/support/virtqueue_driver.h"

#ifdef VMM_HAVE_LIBURING
#include <liburing.h>
#endif
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using namespace vmm;
using namespace vmm::virtio_net;
using Drv = test::VirtqueueDriver;

namespace {

constexpr std::uint16_t kQueue = 256;
constexpr int kBatch = 64;
// The driver's buffers, one per ring slot, this far apart: 2 KiB and a cache line. A power-of-two
// stride puts every buffer in the same cache sets (64 KiB apart, as the transmit buffers used to
// be: one L1 set and two L2 sets for all 256, so each frame's copy missed both), a layout no
// guest's allocator produces and a cost of the bench, not of the device model.
constexpr std::uint64_t kBufferStride = 2048 + 64;
bool g_mrg = false;  // --mrg
bool g_small_pages = false;  // --small-pages: guest RAM in 4 KiB pages (the anchor's "thp": false)
int g_tx_batch = kBatch;     // --tx-batch: frames the driver posts per kick (1: a guest sending one at a time)
std::uint32_t rx_buffer_bytes() { return g_mrg ? 1536 : kVnetHeaderSize + 1514 + 4; }

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The time a device round spends in the bench's driver (the guest's side: reclaiming used
// chains, posting new ones, the kick), so the device model's own cost can be told apart.
class DriverClock {
public:
    template <typename F>
    void run(F f) {
        const auto t0 = std::chrono::steady_clock::now();
        f();
        spent_ += std::chrono::steady_clock::now() - t0;
    }
    double seconds() const { return std::chrono::duration<double>(spent_).count(); }

private:
    std::chrono::steady_clock::duration spent_{};
};

// A device round: frames per second overall, and without the driver's time.
struct DeviceRound {
    double rate = 0, model_rate = 0;
};

DeviceRound device_round(std::size_t frames, double total_seconds, const DriverClock& driver) {
    return {static_cast<double>(frames) / total_seconds, static_cast<double>(frames) / (total_seconds - driver.seconds())};
}

void drain(int fd, std::vector<std::uint8_t>& buf, std::size_t& count) {
    while (::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT) > 0) ++count;
}

// A packet socket on the tap's interface: what it sends goes out of the interface, to the
// tap's reader. Protocol 0: it receives nothing itself.
Fd tap_sender(const std::string& name) {
    Fd s(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
    if (!s) throw_errno("socket(AF_PACKET, SOCK_RAW)");
    sockaddr_ll a{};
    a.sll_family = AF_PACKET;
    a.sll_ifindex = static_cast<int>(::if_nametoindex(name.c_str()));
    if (a.sll_ifindex == 0) throw_errno("if_nametoindex " + name);
    if (::bind(s.get(), reinterpret_cast<const sockaddr*>(&a), sizeof a) < 0) throw_errno("bind AF_PACKET to " + name);
    return s;
}

struct Rig {
    // Guest RAM as the anchor maps it (THP unless --small-pages): the driver's 256 transmit
    // buffers lie 64 KiB apart, and their TLB misses are the anchor's.
    test::RamGuestMemory guest_ram{64ull << 20, g_small_pages ? Mapping::RamPages::Small : Mapping::RamPages::Transparent};
    const GuestMemory& mem = guest_ram.memory();
    Drv rxq{mem, 0x1000, kQueue};
    Drv txq{mem, 0x10000, kQueue};
    std::shared_ptr<test::FakeVirtioInterrupt> irq = std::make_shared<test::FakeVirtioInterrupt>();
    std::unique_ptr<VirtioNet> net;
    NetBackend* backend = nullptr;
    std::uint64_t tx_area = 0x100000, rx_area = 0x2000000;

    explicit Rig(std::unique_ptr<NetBackend> b) {
        backend = b.get();
        VirtioNetOptions o;
        o.name = "netbench";
        o.queue_size = kQueue;
        o.own_thread = false;
        net = std::make_unique<VirtioNet>(std::move(b), o);
    }
    void activate() {
        // EVENT_IDX as Linux's virtio-net negotiates it (the driver still kicks every batch).
        std::uint64_t features = virtio::feature_bit(virtio::kFeatureVersion1) | virtio::feature_bit(virtio::kFeatureEventIdx);
        if (g_mrg)
            features |= virtio::feature_bit(kNetFMrgRxbuf) | virtio::feature_bit(kNetFGuestCsum) |
                        virtio::feature_bit(kNetFGuestTso4);
        net->activate(mem, features, {rxq.config(), txq.config()}, irq);
    }
    void pump() {
        while (net->poll(0)) {
        }
    }
};

std::vector<std::uint8_t> frame(std::size_t size) {
    std::vector<std::uint8_t> f(kVnetHeaderSize + size, 0x5a);
    std::memset(f.data(), 0, kVnetHeaderSize);
    std::memset(f.data() + kVnetHeaderSize, 0xff, 6);
    return f;
}

// Raw: backend->write of header + frame, the peer (if any) drains. One buffer, as the device
// gets the frame from the driver (header and frame in one descriptor, as Linux sends them).
double raw_tx(NetBackend& b, int peer, std::size_t frames, std::size_t size) {
    auto f = frame(size);
    std::vector<std::uint8_t> sink(70000);
    std::size_t got = 0;
    iovec iov[1] = {{f.data(), f.size()}};
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < frames;) {
        const ssize_t n = b.write(iov);
        if (n == -EAGAIN) {
            if (peer >= 0) drain(peer, sink, got);
            continue;
        }
        if (n < 0) {
            std::fprintf(stderr, "raw write: %s\n", std::strerror(static_cast<int>(-n)));
            std::exit(1);
        }
        ++i;
        if (peer >= 0 && i % kBatch == 0) drain(peer, sink, got);
    }
    if (peer >= 0) drain(peer, sink, got);
    return static_cast<double>(frames) / seconds_since(t0);
}

// Raw, batched: 64 frames per io_uring_enter with liburing (WRITE on a tap, SEND on a
// socket), the peer (if any) drains; a frame the socket could not take is sent again. 0 without
// liburing.
double raw_tx_batch([[maybe_unused]] int fd, [[maybe_unused]] bool socket, [[maybe_unused]] int peer,
                    [[maybe_unused]] std::size_t frames, [[maybe_unused]] std::size_t size) {
#ifdef VMM_HAVE_LIBURING
    constexpr unsigned kRawBatch = 64;
    io_uring ring;
    if (io_uring_queue_init(kRawBatch, &ring, 0) < 0) return 0;
    auto f = frame(size);
    std::vector<std::uint8_t> sink(70000);
    std::size_t got = 0, sent = 0;
    const auto t0 = std::chrono::steady_clock::now();
    while (sent < frames) {
        const unsigned n = static_cast<unsigned>(std::min<std::size_t>(kRawBatch, frames - sent));
        for (unsigned j = 0; j < n; ++j) {
            io_uring_sqe* sqe = io_uring_get_sqe(&ring);
            if (socket)  // SEND: one buffer, as the device's frame writer sends a one-buffer frame
                io_uring_prep_send(sqe, fd, f.data(), f.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
            else
                io_uring_prep_write(sqe, fd, f.data(), static_cast<unsigned>(f.size()), 0);
        }
        io_uring_submit_and_wait(&ring, n);
        unsigned head, seen = 0;
        io_uring_cqe* cqe;
        io_uring_for_each_cqe(&ring, head, cqe) {
            ++seen;
            if (cqe->res > 0) ++sent;
        }
        io_uring_cq_advance(&ring, seen);
        if (peer >= 0) drain(peer, sink, got);
    }
    const double rate = static_cast<double>(frames) / seconds_since(t0);
    io_uring_queue_exit(&ring);
    return rate;
#else
    return 0;
#endif
}

DeviceRound device_tx(Rig& r, int peer, std::size_t frames, std::size_t size) {
    auto f = frame(size);
    // One buffer per descriptor slot, written once: the guest reuses it like a ring of skbs.
    for (std::uint16_t i = 0; i < kQueue; ++i) r.mem.write(r.tx_area + i * kBufferStride, f.data(), f.size());
    std::vector<std::uint8_t> sink(70000);
    std::size_t posted = 0, got = 0, slot = 0;
    // Counters go on from the previous round.
    const std::uint64_t before = r.net->stats().tx_frames;
    const std::uint16_t used_end = static_cast<std::uint16_t>(r.txq.used_idx() + frames);
    DriverClock driver;
    const auto t0 = std::chrono::steady_clock::now();
    while (r.txq.used_idx() != used_end || posted < frames) {
        driver.run([&] {
            r.txq.reclaim();
            for (int k = 0; k < g_tx_batch && posted < frames && r.txq.free_descriptors() > 0; ++k, ++posted) {
                const std::uint64_t gpa = r.tx_area + (slot++ % kQueue) * kBufferStride;
                r.txq.add_chain({Drv::rd(gpa, static_cast<std::uint32_t>(f.size()))});
            }
            r.net->queue_notify(VirtioNet::kTxQueue);
        });
        r.pump();
        if (peer >= 0) drain(peer, sink, got);
        if (r.net->stats().tx_frames - before >= frames) break;
    }
    if (peer >= 0) drain(peer, sink, got);
    const DeviceRound round = device_round(frames, seconds_since(t0), driver);
    const std::uint64_t sent = r.net->stats().tx_frames - before;
    if (sent != frames) std::fprintf(stderr, "device tx: sent %llu of %zu\n", static_cast<unsigned long long>(sent), frames);
    return round;
}

// The peer's send of one frame: a socketpair peer sends the header too, a packet socket on a
// tap's interface the Ethernet frame alone (the tap's reader gets the header from the kernel).
void peer_send(int peer, bool ethernet_only, const std::vector<std::uint8_t>& f) {
    const std::size_t skip = ethernet_only ? kVnetHeaderSize : 0;
    if (::send(peer, f.data() + skip, f.size() - skip, 0) < 0) {
        std::fprintf(stderr, "peer send: %s\n", std::strerror(errno));
        std::exit(1);
    }
}

// Stops a round that would wait for ever (a frame lost where none may be). The clock is read
// only while nothing moves, so a loop that makes progress pays nothing for the check.
class Progress {
public:
    void check(std::uint64_t done) {
        if (done != last_) {
            last_ = done;
            stalled_ = false;
            return;
        }
        const auto now = std::chrono::steady_clock::now();
        if (!stalled_) {
            stalled_ = true;
            since_ = now;
        } else if (now - since_ > std::chrono::seconds(5)) {
            std::fprintf(stderr, "rx: no frame for 5 s after %llu\n", static_cast<unsigned long long>(done));
            std::exit(1);
        }
    }

private:
    std::uint64_t last_ = ~0ull;
    bool stalled_ = false;
    std::chrono::steady_clock::time_point since_{};
};

double raw_rx(NetBackend& b, int peer, bool ethernet_only, std::size_t frames, std::size_t size) {
    auto f = frame(size);
    std::vector<std::uint8_t> buf(kVnetHeaderSize + 1514 + 4);
    iovec iov{buf.data(), buf.size()};
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < frames; i += kBatch) {
        const std::size_t n = std::min<std::size_t>(kBatch, frames - i);
        for (std::size_t k = 0; k < n; ++k) peer_send(peer, ethernet_only, f);
        Progress progress;
        for (std::size_t k = 0; k < n; progress.check(k))
            if (b.read({&iov, 1}) > 0) ++k;
    }
    return static_cast<double>(frames) / seconds_since(t0);
}

DeviceRound device_rx(Rig& r, int peer, bool ethernet_only, std::size_t frames, std::size_t size) {
    auto f = frame(size);
    std::size_t slot = 0;
    auto post = [&] {
        r.rxq.reclaim();
        while (r.rxq.free_descriptors() > 0)
            r.rxq.add_chain({Drv::wr(r.rx_area + (slot++ % kQueue) * kBufferStride, rx_buffer_bytes())});
    };
    post();
    r.net->queue_notify(VirtioNet::kRxQueue);
    r.pump();
    const std::uint64_t before = r.net->stats().rx_frames;
    DriverClock driver;
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < frames; i += kBatch) {
        const std::size_t n = std::min<std::size_t>(kBatch, frames - i);
        for (std::size_t k = 0; k < n; ++k) peer_send(peer, ethernet_only, f);
        Progress progress;
        for (std::uint64_t got; (got = r.net->stats().rx_frames - before) < i + n; progress.check(got)) {
            r.pump();
            driver.run([&] {
                post();
                r.net->queue_notify(VirtioNet::kRxQueue);
            });
        }
    }
    return device_round(frames, seconds_since(t0), driver);
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Per-round device and raw rates of one direction.
struct Rounds {
    std::vector<DeviceRound> device;
    std::vector<double> raw;
    std::vector<double> raw_batch;  // tx: raw io_uring batches (empty without liburing)
};

// Median and range of device ÷ raw over the rounds, with `rate` picking the device's number.
template <typename Rate>
void print_ratio(const char* label, const Rounds& r, Rate rate, const std::vector<double>& raw) {
    std::vector<double> ratios, rates;
    for (std::size_t i = 0; i < r.device.size(); ++i) {
        ratios.push_back(rate(r.device[i]) / raw[i]);
        rates.push_back(rate(r.device[i]));
    }
    std::printf("   %s %.2f (rounds: %.2f-%.2f)", label, median(rates) / median(raw),
                *std::min_element(ratios.begin(), ratios.end()), *std::max_element(ratios.begin(), ratios.end()));
}

void report(const char* what, const Rounds& r) {
    std::vector<double> dev;
    for (const auto& d : r.device) dev.push_back(d.rate);
    std::printf("%-3s device %10.0f frames/s   raw %10.0f frames/s", what, median(dev), median(r.raw));
    print_ratio("device/raw", r, [](const DeviceRound& d) { return d.rate; }, r.raw);
    // Without the bench driver's reclaiming, posting and kicking: the device model's own cost.
    print_ratio("device model alone/raw", r, [](const DeviceRound& d) { return d.model_rate; }, r.raw);
    std::printf(", %zu rounds\n", r.raw.size());
    if (!r.raw_batch.empty() && median(r.raw_batch) > 0) {
        std::printf("%-3s raw io_uring batch of 64: %10.0f frames/s", what, median(r.raw_batch));
        print_ratio("device/raw batch", r, [](const DeviceRound& d) { return d.rate; }, r.raw_batch);
        print_ratio("device model alone/raw batch", r, [](const DeviceRound& d) { return d.model_rate; }, r.raw_batch);
        std::printf("\n");
    }
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t frames = 200000, size = 64, rounds = 5;
    std::string tap;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--frames" && i + 1 < argc)
            frames = std::strtoull(argv[++i], nullptr, 0);
        else if (a == "--size" && i + 1 < argc)
            size = std::strtoull(argv[++i], nullptr, 0);
        else if (a == "--rounds" && i + 1 < argc)
            rounds = std::strtoull(argv[++i], nullptr, 0);
        else if (a == "--mrg")
            g_mrg = true;
        else if (a == "--small-pages")
            g_small_pages = true;
        else if (a == "--tx-batch" && i + 1 < argc)
            g_tx_batch = std::max(1, std::atoi(argv[++i]));
        else if (a == "--tap" && i + 1 < argc)
            tap = argv[++i];
        else {
            std::fprintf(stderr, "usage: %s [--frames N] [--size BYTES (14..1514)] [--rounds R] [--tap NAME] [--mrg] [--small-pages] [--tx-batch N]\n", argv[0]);
            return 64;
        }
    }
    if (size < 14 || size > 1514 || frames == 0 || rounds == 0) {
        std::fprintf(stderr, "--size must be 14..1514, --frames and --rounds > 0\n");
        return 64;
    }
    set_log_level("warn");
    try {
        if (!tap.empty()) {
            auto t = std::make_unique<Tap>(tap);
            Fd ctl(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
            ifreq ifr{};
            std::strncpy(ifr.ifr_name, t->name().c_str(), IFNAMSIZ - 1);
            if (::ioctl(ctl.get(), SIOCGIFFLAGS, &ifr) < 0) throw_errno("SIOCGIFFLAGS " + tap);
            ifr.ifr_flags |= IFF_UP;  // a tap that is down refuses writes (EIO)
            if (::ioctl(ctl.get(), SIOCSIFFLAGS, &ifr) < 0) throw_errno("SIOCSIFFLAGS " + tap);
            // No IPv6 on the tap: the host would send its own frames (router solicitations)
            // into the rx rounds. Best effort: a kernel without IPv6 sends none anyway.
            std::ofstream("/proc/sys/net/ipv6/conf/" + tap + "/disable_ipv6") << "1\n";
            Fd sender = tap_sender(tap);
            Rig r(std::move(t));
            std::printf("backend tap %s, %zu frames of %zu bytes (+12-byte header)%s\n", tap.c_str(), frames, size,
                        g_mrg ? ", MRG_RXBUF + GUEST_TSO4, 1536-byte receive buffers" : "");
            r.activate();
            Rounds tx, rx;
            for (std::size_t i = 0; i < rounds; ++i) {
                tx.raw.push_back(raw_tx(*r.backend, -1, frames, size));
                tx.raw_batch.push_back(raw_tx_batch(r.backend->fd(), false, -1, frames, size));
                tx.device.push_back(device_tx(r, -1, frames, size));
                rx.raw.push_back(raw_rx(*r.backend, sender.get(), true, frames, size));
                rx.device.push_back(device_rx(r, sender.get(), true, frames, size));
            }
            report("tx", tx);
            report("rx", rx);
            return 0;
        }
        std::printf("backend socketpair(AF_UNIX, SOCK_SEQPACKET), %zu frames of %zu bytes (+12-byte header)%s\n", frames, size,
                    g_mrg ? ", MRG_RXBUF + GUEST_TSO4, 1536-byte receive buffers" : "");
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) throw_errno("socketpair");
        Fd peer(sv[1]);
        Rig r(std::make_unique<SocketBackend>(Fd(sv[0]), g_mrg ? unsigned{TUN_F_CSUM | TUN_F_TSO4} : 0u));
        r.activate();
        Rounds tx, rx;
        for (std::size_t i = 0; i < rounds; ++i) {
            tx.raw.push_back(raw_tx(*r.backend, peer.get(), frames, size));
            tx.raw_batch.push_back(raw_tx_batch(r.backend->fd(), true, peer.get(), frames, size));
            tx.device.push_back(device_tx(r, peer.get(), frames, size));
            rx.raw.push_back(raw_rx(*r.backend, peer.get(), false, frames, size));
            rx.device.push_back(device_rx(r, peer.get(), false, frames, size));
        }
        report("tx", tx);
        report("rx", rx);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "virtio_net_bench: %s\n", e.what());
        return 70;
    }
    return 0;
}
