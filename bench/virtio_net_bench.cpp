// virtio_net_bench: frames per second through VirtioNet (devicemodel/virtio-net) against raw
// write/read on the same backend, in one run, with the ratio.
//
//   virtio_net_bench [--frames N] [--size BYTES] [--rounds R] [--tap NAME] [--mrg] [--small-pages]
//                    [--tx-batch N]   (frames the driver posts per kick; default 64)
//                    [--raw-one-buffer]  (raw loops on one buffer, not the driver's ring of 256)
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
// runs the bench's driver (LeanNetDriver: a guest's side as lean as Linux's virtio_ring, reclaiming
// used buffers, posting new ones, the kick's eventfd write), which a guest pays on its own vCPU;
// its time is measured and a second ratio, "device model alone", leaves it out. The raw loops
// write from and read into the same guest buffers as the device, in the same order. A first
// round, not counted, warms up both. A tap transmits a pass's frames with a write() each, or one
// io_uring_enter where system calls are dear (tap_batches_pay_off); tx is also compared with a
// raw loop of liburing batches, 64 frames per io_uring_enter ("raw io_uring batch").
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
bool g_raw_one_buffer = false;  // --raw-one-buffer: the raw loops use one buffer, not the driver's ring of them
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

// The guest driver of one queue, lean, as Linux's virtio_ring is for a one-buffer frame: a
// descriptor per buffer (descriptor i always points at buffer i, kBufferStride apart from
// `buffers`), free descriptors in a FIFO, and per frame the descriptor, the avail entry and the
// avail idx written, the used entries read back, through host pointers with the barriers of
// virtio 1.2 §2.7.13. Its time is the guest's and is taken out of "device model alone", but in
// a one-thread run its cache footprint is not: tests/support/virtqueue_driver.h (a map of
// chains, vectors, an allocation per frame) spent ~160 ns a frame and evicted the device's
// lines with it (issue #3). The device is trusted here, but a used id out of range stops the
// run rather than corrupting the FIFO.
class LeanNetDriver {
public:
    LeanNetDriver(const GuestMemory& mem, std::uint64_t rings, std::uint64_t buffers, std::uint32_t buffer_len, bool device_writable)
        : layout_(mem, rings, kQueue), buffers_(buffers), len_(buffer_len),
          flags_(device_writable ? virtio::kDescFWrite : std::uint16_t{0}) {
        desc_ = host<virtio::VirtqDesc>(mem, layout_.desc_addr(), 16ull * kQueue);
        avail_ = host<std::uint16_t>(mem, layout_.avail_addr(), 6 + 2ull * kQueue);
        used_ = host<std::uint8_t>(mem, layout_.used_addr(), 6 + 8ull * kQueue);
        buffers_host_ = host<std::uint8_t>(mem, buffers, kBufferStride * kQueue);  // every buffer inside guest RAM
        for (std::uint16_t i = 0; i < kQueue; ++i) free_[i] = i;
    }
    virtio::QueueConfig config() const { return layout_.config(); }
    std::uint64_t buffer(std::uint16_t id) const { return buffers_ + id * kBufferStride; }
    std::uint8_t* host_buffer(std::uint16_t id) const { return buffers_host_ + id * kBufferStride; }
    std::size_t free_descriptors() const { return free_count_; }
    std::uint16_t used_idx() const {
        return std::atomic_ref<std::uint16_t>(*reinterpret_cast<std::uint16_t*>(used_ + 2)).load(std::memory_order_acquire);
    }
    // The descriptors of every frame the device has given back return to the FIFO.
    void reclaim() {
        const std::uint16_t idx = used_idx();
        while (last_used_ != idx) {
            virtio::VirtqUsedElem e;
            std::memcpy(&e, used_ + 4 + 8 * (last_used_ % kQueue), sizeof e);
            if (e.id >= kQueue) {
                std::fprintf(stderr, "device gave back descriptor %u of a %u-entry queue\n", e.id, kQueue);
                std::exit(1);
            }
            free_[(free_head_ + free_count_) % kQueue] = static_cast<std::uint16_t>(e.id);
            ++free_count_;
            ++last_used_;
        }
    }
    // Makes the next free buffer available (free_descriptors() > 0).
    void post() {
        const std::uint16_t id = free_[free_head_];
        free_head_ = static_cast<std::uint16_t>((free_head_ + 1) % kQueue);
        --free_count_;
        desc_[id] = {buffer(id), len_, flags_, 0};
        avail_[2 + avail_idx_ % kQueue] = id;
        ++avail_idx_;
        std::atomic_ref<std::uint16_t>(avail_[1]).store(avail_idx_, std::memory_order_release);
    }

private:
    template <typename T>
    static T* host(const GuestMemory& mem, std::uint64_t gpa, std::uint64_t len) {
        auto s = mem.span(gpa, len);
        if (!s) throw std::runtime_error("driver ring or buffers outside guest memory");
        return reinterpret_cast<T*>(s->data());  // alignment: the ring layout's (16, 2 and 4 bytes)
    }

    Drv layout_;
    std::uint64_t buffers_;
    std::uint32_t len_;
    std::uint16_t flags_;
    virtio::VirtqDesc* desc_ = nullptr;
    std::uint16_t* avail_ = nullptr;
    std::uint8_t* used_ = nullptr;
    std::uint8_t* buffers_host_ = nullptr;
    std::uint16_t free_[kQueue];
    std::uint16_t free_head_ = 0, avail_idx_ = 0, last_used_ = 0;
    std::size_t free_count_ = kQueue;
};

struct Rig {
    // Guest RAM as the anchor maps it (THP unless --small-pages).
    test::RamGuestMemory guest_ram{64ull << 20, g_small_pages ? Mapping::RamPages::Small : Mapping::RamPages::Transparent};
    const GuestMemory& mem = guest_ram.memory();
    static constexpr std::uint64_t kTxArea = 0x100000, kRxArea = 0x2000000;
    LeanNetDriver rxq{mem, 0x1000, kRxArea, rx_buffer_bytes(), true};
    LeanNetDriver txq;
    std::shared_ptr<test::FakeVirtioInterrupt> irq = std::make_shared<test::FakeVirtioInterrupt>();
    std::unique_ptr<VirtioNet> net;
    NetBackend* backend = nullptr;

    // `frame_size`: the bytes of every transmitted frame, header included.
    Rig(std::unique_ptr<NetBackend> b, std::size_t frame_size)
        : txq(mem, 0x10000, kTxArea, static_cast<std::uint32_t>(frame_size), false) {
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

// Where a raw loop's frame i is: the driver's buffer i % 256 of the same queue, in guest RAM,
// which the device copies from (tx) or into (rx). The kernel's copy of a frame from a ring of
// buffers costs more than from one buffer that stays in L1 (a tap's raw write loop ran 4-6 %
// faster from one buffer, issue #3); both sides now pay it. With --raw-one-buffer (stride 0)
// the raw loops use buffer 0 alone, as they did before.
struct RawBuffers {
    std::uint8_t* base;
    std::size_t stride;
    std::uint8_t* at(std::size_t i) const { return base + (i % kQueue) * stride; }
};

RawBuffers raw_buffers(const LeanNetDriver& q) { return {q.host_buffer(0), g_raw_one_buffer ? 0 : kBufferStride}; }

std::vector<std::uint8_t> frame(std::size_t size) {
    std::vector<std::uint8_t> f(kVnetHeaderSize + size, 0x5a);
    std::memset(f.data(), 0, kVnetHeaderSize);
    std::memset(f.data() + kVnetHeaderSize, 0xff, 6);
    return f;
}

// Writes `size` bytes of frame into each of the transmit queue's buffers.
void fill_tx_buffers(Rig& r, std::size_t size) {
    const auto f = frame(size);
    for (std::uint16_t i = 0; i < kQueue; ++i) r.mem.write(r.txq.buffer(i), f.data(), f.size());
}

// Raw: backend->write of header + frame, the peer (if any) drains. Each frame in one buffer, as
// the device gets it from the driver (header and frame in one descriptor, as Linux sends them).
double raw_tx(Rig& r, int peer, std::size_t frames, std::size_t size) {
    NetBackend& b = *r.backend;
    fill_tx_buffers(r, size);
    const RawBuffers bufs = raw_buffers(r.txq);
    std::vector<std::uint8_t> sink(70000);
    std::size_t got = 0;
    iovec iov[1] = {{nullptr, kVnetHeaderSize + size}};
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < frames;) {
        iov[0].iov_base = bufs.at(i);
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
double raw_tx_batch([[maybe_unused]] Rig& r, [[maybe_unused]] bool socket, [[maybe_unused]] int peer,
                    [[maybe_unused]] std::size_t frames, [[maybe_unused]] std::size_t size) {
#ifdef VMM_HAVE_LIBURING
    constexpr unsigned kRawBatch = 64;
    io_uring ring;
    if (io_uring_queue_init(kRawBatch, &ring, 0) < 0) return 0;
    const int fd = r.backend->fd();
    fill_tx_buffers(r, size);
    const RawBuffers bufs = raw_buffers(r.txq);
    const std::size_t len = kVnetHeaderSize + size;
    std::vector<std::uint8_t> sink(70000);
    std::size_t got = 0, sent = 0;
    const auto t0 = std::chrono::steady_clock::now();
    while (sent < frames) {
        const unsigned n = static_cast<unsigned>(std::min<std::size_t>(kRawBatch, frames - sent));
        for (unsigned j = 0; j < n; ++j) {
            io_uring_sqe* sqe = io_uring_get_sqe(&ring);
            std::uint8_t* f = bufs.at(sent + j);
            if (socket)  // SEND: one buffer, as the device's frame writer sends a one-buffer frame
                io_uring_prep_send(sqe, fd, f, len, MSG_DONTWAIT | MSG_NOSIGNAL);
            else
                io_uring_prep_write(sqe, fd, f, static_cast<unsigned>(len), 0);
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
    // One buffer per descriptor, written once: the guest reuses it like a ring of skbs.
    fill_tx_buffers(r, size);
    std::vector<std::uint8_t> sink(70000);
    std::size_t posted = 0, got = 0;
    // Counters go on from the previous round.
    const std::uint64_t before = r.net->stats().tx_frames;
    const std::uint16_t used_end = static_cast<std::uint16_t>(r.txq.used_idx() + frames);
    DriverClock driver;
    const auto t0 = std::chrono::steady_clock::now();
    while (r.txq.used_idx() != used_end || posted < frames) {
        driver.run([&] {
            r.txq.reclaim();
            for (int k = 0; k < g_tx_batch && posted < frames && r.txq.free_descriptors() > 0; ++k, ++posted) r.txq.post();
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

// Raw: backend->read of each frame into the receive queue's buffers in turn, as the device
// reads them into the buffers the driver posted.
double raw_rx(Rig& r, int peer, bool ethernet_only, std::size_t frames, std::size_t size) {
    NetBackend& b = *r.backend;
    auto f = frame(size);
    const RawBuffers bufs = raw_buffers(r.rxq);
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < frames; i += kBatch) {
        const std::size_t n = std::min<std::size_t>(kBatch, frames - i);
        for (std::size_t k = 0; k < n; ++k) peer_send(peer, ethernet_only, f);
        Progress progress;
        for (std::size_t k = 0; k < n; progress.check(k)) {
            const iovec iov{bufs.at(i + k), rx_buffer_bytes()};
            if (b.read({&iov, 1}) > 0) ++k;
        }
    }
    return static_cast<double>(frames) / seconds_since(t0);
}

DeviceRound device_rx(Rig& r, int peer, bool ethernet_only, std::size_t frames, std::size_t size) {
    auto f = frame(size);
    auto post = [&] {
        r.rxq.reclaim();
        while (r.rxq.free_descriptors() > 0) r.rxq.post();
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

// Raw and device rounds alternate. A first round of each, shorter and not counted, warms what
// they touch (guest RAM faulted in, the backend's kernel objects, the caches): the device's
// first receive round otherwise ran at 0.82-0.85 of raw against 0.88-0.95 for the rounds after.
// tx_peer: drains what the backend sends (-1: nothing to drain, a tap); rx_peer sends what the
// backend reads (a packet socket on a tap's interface sends the Ethernet frame alone).
void measure(Rig& r, bool socket, int tx_peer, int rx_peer, std::size_t frames, std::size_t size, std::size_t rounds) {
    const bool ethernet_only = !socket;
    auto round = [&](std::size_t n, Rounds& tx, Rounds& rx) {
        tx.raw.push_back(raw_tx(r, tx_peer, n, size));
        tx.raw_batch.push_back(raw_tx_batch(r, socket, tx_peer, n, size));
        tx.device.push_back(device_tx(r, tx_peer, n, size));
        rx.raw.push_back(raw_rx(r, rx_peer, ethernet_only, n, size));
        rx.device.push_back(device_rx(r, rx_peer, ethernet_only, n, size));
    };
    Rounds warm_up;
    round(std::max<std::size_t>(frames / 4, 1), warm_up, warm_up);
    Rounds tx, rx;
    for (std::size_t i = 0; i < rounds; ++i) round(frames, tx, rx);
    report("tx", tx);
    report("rx", rx);
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
        else if (a == "--raw-one-buffer")
            g_raw_one_buffer = true;
        else if (a == "--tx-batch" && i + 1 < argc)
            g_tx_batch = std::max(1, std::atoi(argv[++i]));
        else if (a == "--tap" && i + 1 < argc)
            tap = argv[++i];
        else {
            std::fprintf(stderr, "usage: %s [--frames N] [--size BYTES (14..1514)] [--rounds R] [--tap NAME] [--mrg] [--small-pages] [--tx-batch N] [--raw-one-buffer]\n", argv[0]);
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
            Rig r(std::move(t), kVnetHeaderSize + size);
            std::printf("backend tap %s, %zu frames of %zu bytes (+12-byte header)%s\n", tap.c_str(), frames, size,
                        g_mrg ? ", MRG_RXBUF + GUEST_TSO4, 1536-byte receive buffers" : "");
            r.activate();
            measure(r, false, -1, sender.get(), frames, size, rounds);
            return 0;
        }
        std::printf("backend socketpair(AF_UNIX, SOCK_SEQPACKET), %zu frames of %zu bytes (+12-byte header)%s\n", frames, size,
                    g_mrg ? ", MRG_RXBUF + GUEST_TSO4, 1536-byte receive buffers" : "");
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) throw_errno("socketpair");
        Fd peer(sv[1]);
        Rig r(std::make_unique<SocketBackend>(Fd(sv[0]), g_mrg ? unsigned{TUN_F_CSUM | TUN_F_TSO4} : 0u), kVnetHeaderSize + size);
        r.activate();
        measure(r, true, peer.get(), peer.get(), frames, size, rounds);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "virtio_net_bench: %s\n", e.what());
        return 70;
    }
    return 0;
}
