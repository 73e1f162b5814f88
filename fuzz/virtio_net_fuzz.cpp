// Fuzzes the virtio-net device (devicemodel/virtio-net/virtio_net.h) the way a hostile guest and
// a hostile network reach it: the guest posts receive and transmit chains (or scribbles over its
// rings, descriptors and indirect tables), frames of any size arrive from the backend, kicks,
// passes of the device's event loop, resets. The device runs its loop on the fuzzer's thread
// (own_thread false, poll()) over a socketpair (SocketBackend that claims checksum/TSO offloads).
//
// Checked while the guest has only behaved as a driver (no raw RAM write so far in the input):
//  - the device writes guest RAM only inside the receive buffers made available to it and not
//    yet used, and in the two used rings;
//  - every used receive entry is at most its chain's size, and a received frame arrives in as
//    many used entries as its header's num_buffers says (1 without MRG_RXBUF), all in the same
//    device step;
//  - received frames reach the guest unaltered (but for num_buffers) and in order: what the
//    guest gets is a subsequence of what the peer sent (a frame may be dropped, say too big
//    for a non-mergeable buffer, never changed or delivered twice);
//  - transmitted frames of a valid size reach the peer unaltered, in order, each at most once.
// Always: ASan and UBSan (guest RAM is a buffer of exactly its size), and the device never
// throws out of poll().
//
// Input: byte 0 features: bit 0 MRG_RXBUF, bit 1 EVENT_IDX, bit 2 GUEST_CSUM + GUEST_TSO4
// (frames up to 64 KiB), bit 3 INDIRECT_DESC (chains then sometimes posted through an indirect
// table); byte 1: queue size 1 << (b % 9). Then operations, a kind byte and its arguments
// (little-endian), until the input ends:
//   0 post rx chain  u8 n (n % 4 + 1 buffers), n × u16 length (% 4097; 0 is allowed)
//   1 post tx chain  u8 n (n % 3 + 1 buffers), u16 length of header + frame, u8 fill
//   2 peer sends     u16 length of header + frame, u8 fill
//   3 kick rx        4 kick tx        5 device passes (until idle, at most 16)
//   6 peer drains    7 RAM write: u32 offset, u8 length, the bytes (the checks stop here)
//   8 device reset, then activation with fresh rings
// fuzz/make_seeds.py writes seeds that post buffers, send both ways and reset.
#include "devicemodel/bus/guest_memory.h"
#include "devicemodel/virtio-net/socket_backend.h"
#include "devicemodel/virtio-net/virtio_net.h"
#include "fuzz/chain_arena.h"
#include "fuzz/fuzz_reader.h"
#include "fuzz/guest_ram_watch.h"
#include "tests/support/virtqueue_driver.h"

#include <linux/if_tun.h>
#include <sys/socket.h>

#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <vector>

namespace {

using namespace vmm;
using namespace vmm::virtio_net;
using Driver = test::VirtqueueDriver;

constexpr std::size_t kRam = 256 * 1024;
constexpr std::uint64_t kRxRing = 0, kTxRing = 0x8000;     // each ring < 7 KiB at 256 entries
constexpr std::uint64_t kArena = 0x10000, kArenaEnd = kRam;  // buffers and indirect tables
constexpr std::size_t kNumBuffersAt = 10;                  // offsetof(virtio_net_hdr_v1, num_buffers)

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "virtio_net_fuzz: %s\n", what);
    std::abort();
}

std::vector<std::uint8_t> make_frame(std::size_t len, std::uint8_t fill, std::uint64_t serial) {
    std::vector<std::uint8_t> f(len);
    for (std::size_t i = 0; i < len; ++i) f[i] = static_cast<std::uint8_t>(fill + i * 7 + serial * 13);
    return f;
}

// A received frame matches a sent one but for num_buffers, which the device writes.
bool same_but_num_buffers(const std::vector<std::uint8_t>& got, const std::vector<std::uint8_t>& sent) {
    if (got.size() != sent.size()) return false;
    for (std::size_t i = 0; i < got.size(); ++i)
        if ((i < kNumBuffersAt || i >= kNumBuffersAt + 2) && got[i] != sent[i]) return false;
    return true;
}

// Pops `expected` up to and including the first element `match` accepts; false if none does.
template <typename Match>
bool consume_subsequence(std::deque<std::vector<std::uint8_t>>& expected, Match match) {
    while (!expected.empty()) {
        const bool hit = match(expected.front());
        expected.pop_front();
        if (hit) return true;
    }
    return false;
}

class Harness {
public:
    Harness(std::uint8_t feature_byte, std::uint16_t queue_size) : queue_size_(queue_size) {
        ram_.clear();
        memory_ = GuestMemory({{0, ram_.size(), ram_.data()}});
        int sv[2];
        if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) fail("socketpair");
        peer_ = Fd(sv[1]);
        VirtioNetOptions o;
        o.name = "netfuzz";
        o.own_thread = false;
        o.queue_size = 256;
        net_ = std::make_unique<VirtioNet>(std::make_unique<SocketBackend>(Fd(sv[0]), unsigned{TUN_F_CSUM | TUN_F_TSO4}), o);
        features_ = feature_bit(virtio::kFeatureVersion1);
        if (feature_byte & 1) features_ |= feature_bit(kNetFMrgRxbuf);
        if (feature_byte & 2) features_ |= feature_bit(virtio::kFeatureEventIdx);
        if (feature_byte & 4) features_ |= feature_bit(kNetFGuestCsum) | feature_bit(kNetFGuestTso4);
        if (feature_byte & 8) features_ |= feature_bit(virtio::kFeatureIndirectDesc);
        features_ &= net_->device_features();
        mrg_ = features_ & feature_bit(kNetFMrgRxbuf);
        indirect_ = features_ & feature_bit(virtio::kFeatureIndirectDesc);
        activate();
    }

    void post_rx(fuzz::FuzzReader& in) {
        const unsigned n = static_cast<unsigned>(in.le(1) % 4 + 1);
        const bool via_table = n & 1;
        Chain chain;
        for (unsigned i = 0; i < n; ++i) {
            const auto len = static_cast<std::uint32_t>(in.le(2) % 4097);
            const auto at = arena_.alloc(len);
            if (!at) return;
            chain.bufs.push_back(Driver::wr(*at, len));
            chain.writable += len;
        }
        if (const auto head = arena_.post(*rxq_, chain.bufs, indirect_ && via_table)) rx_chains_[*head] = std::move(chain);
    }

    void post_tx(fuzz::FuzzReader& in) {
        const unsigned n = static_cast<unsigned>(in.le(1) % 3 + 1);
        const std::size_t len = in.le(2);
        auto f = make_frame(len, static_cast<std::uint8_t>(in.le(1)), serial_++);
        Chain chain;
        for (unsigned i = 0, off = 0; i < n; ++i) {
            const std::size_t piece = i + 1 == n ? len - off : len / n;
            const auto at = arena_.alloc(piece);
            if (!at) return;
            if (piece) std::memcpy(ram_.data() + *at, f.data() + off, piece);
            chain.bufs.push_back(Driver::rd(*at, static_cast<std::uint32_t>(piece)));
            off += static_cast<unsigned>(piece);
        }
        const auto head = arena_.post(*txq_, chain.bufs, indirect_ && (n & 2));
        if (!head) return;
        tx_chains_[*head] = std::move(chain);
        // What the device must send (§5.1.6.2: a header and at least an Ethernet header).
        if (len >= kVnetHeaderSize + 14) expected_tx_.push_back(std::move(f));
    }

    void peer_send(std::size_t len, std::uint8_t fill) {
        auto f = make_frame(len, fill, serial_++);
        if (::send(peer_.get(), f.data(), f.size(), MSG_DONTWAIT) == static_cast<ssize_t>(f.size()))
            sent_rx_.push_back(std::move(f));
    }

    void peer_drain() {
        static std::vector<std::uint8_t> buf(VirtioNet::kMaxFrame + 1);
        for (;;) {
            const ssize_t n = ::recv(peer_.get(), buf.data(), buf.size(), MSG_DONTWAIT);
            if (n < 0) return;
            if (dirty_) continue;
            const std::vector<std::uint8_t> got(buf.begin(), buf.begin() + n);
            if (!consume_subsequence(expected_tx_, [&](const auto& e) { return e == got; }))
                fail("the peer got a frame the guest did not transmit (or got it twice, or out of order)");
        }
    }

    // Runs `op` on the device, then checks what it wrote and takes back the used entries.
    template <typename Op>
    void device(Op op) {
        if (!dirty_) ram_.snapshot();
        op();
        if (!dirty_) check_writes();
        reclaim();
        // A frame's used entries are added in one go: none may still be missing after a step.
        if (frame_ && !dirty_) fail("a received frame's num_buffers counts more used entries than came");
    }

    void kick(std::uint16_t queue) {
        device([&] { net_->queue_notify(queue); });
    }
    void passes() {
        device([&] {
            for (int i = 0; i < 16 && net_->poll(0); ++i) {
            }
        });
    }
    void reset() {
        device([&] { net_->reset(); });
        activate();
    }
    void raw_write(fuzz::FuzzReader& in) {
        dirty_ = true;  // the guest is no longer a driver: from here on only the sanitizers judge
        ram_.scribble(in);
    }

private:
    struct Chain {
        std::vector<Driver::Buf> bufs;
        std::uint64_t writable = 0;
    };

    static std::uint64_t feature_bit(unsigned bit) { return std::uint64_t{1} << bit; }

    void activate() {
        rxq_.emplace(memory_, kRxRing, queue_size_);
        txq_.emplace(memory_, kTxRing, queue_size_);
        rx_chains_.clear();
        tx_chains_.clear();
        frame_.reset();
        device([&] { net_->activate(memory_, features_, {rxq_->config(), txq_->config()}, irq_); });
    }

    // Every byte the device changed lies in a receive buffer it holds or in a used ring.
    void check_writes() {
        for (const Driver* q : {&*rxq_, &*txq_}) ram_.allow(q->used_addr(), q->end());
        for (const auto& [head, chain] : rx_chains_)
            for (const auto& b : chain.bufs) ram_.allow(b.gpa, b.gpa + b.len);
        if (ram_.changed_outside()) fail("the device wrote guest RAM outside its receive buffers and used rings");
    }

    void reclaim() {
        for (const auto& e : rxq_->reclaim()) {
            auto it = rx_chains_.find(static_cast<std::uint16_t>(e.id));
            if (it == rx_chains_.end()) {
                if (!dirty_) fail("a used receive entry names no chain the guest made available");
                continue;
            }
            const Chain chain = std::move(it->second);
            rx_chains_.erase(it);
            if (dirty_) continue;
            if (e.len > chain.writable) fail("a used receive entry is longer than its chain");
            take_rx_piece(chain, e.len);
        }
        for (const auto& e : txq_->reclaim()) {
            if (tx_chains_.erase(static_cast<std::uint16_t>(e.id)) == 0 && !dirty_)
                fail("a used transmit entry names no chain the guest made available");
        }
    }

    // One used receive entry: a frame's first (or only) piece, or the next of a merged frame.
    void take_rx_piece(const Chain& chain, std::uint32_t len) {
        std::vector<std::uint8_t> bytes;
        for (const auto& b : chain.bufs) {
            if (bytes.size() == len) break;
            const std::size_t take = std::min<std::size_t>(b.len, len - bytes.size());
            bytes.insert(bytes.end(), ram_.data() + b.gpa, ram_.data() + b.gpa + take);
        }
        if (!frame_) {
            if (len == 0) return;  // a chain handed back unused (too small for a header)
            if (len < kVnetHeaderSize) fail("a received frame is shorter than its header");
            const std::uint16_t pieces = static_cast<std::uint16_t>(bytes[kNumBuffersAt] | bytes[kNumBuffersAt + 1] << 8);
            if (pieces == 0 || (!mrg_ && pieces != 1)) fail("a received frame's num_buffers is wrong");
            frame_ = Frame{{}, pieces};
        }
        frame_->bytes.insert(frame_->bytes.end(), bytes.begin(), bytes.end());
        if (--frame_->pieces_left > 0) return;
        const std::vector<std::uint8_t> got = std::move(frame_->bytes);
        frame_.reset();
        if (!consume_subsequence(sent_rx_, [&](const auto& s) { return same_but_num_buffers(got, s); }))
            fail("the guest received a frame the peer did not send (or got it twice, or out of order)");
    }

    struct Frame {
        std::vector<std::uint8_t> bytes;
        std::uint16_t pieces_left = 0;
    };

    std::uint16_t queue_size_;
    static inline fuzz::GuestRamWatch ram_{kRam};
    GuestMemory memory_;
    Fd peer_;
    std::unique_ptr<VirtioNet> net_;
    std::shared_ptr<test::FakeVirtioInterrupt> irq_ = std::make_shared<test::FakeVirtioInterrupt>();
    std::uint64_t features_ = 0;
    bool mrg_ = false, indirect_ = false, dirty_ = false;
    std::optional<Driver> rxq_, txq_;
    std::map<std::uint16_t, Chain> rx_chains_;  // by head: what the guest made available
    std::map<std::uint16_t, Chain> tx_chains_;
    fuzz::ChainArena arena_{kArena, kArenaEnd};
    std::uint64_t serial_ = 0;
    std::deque<std::vector<std::uint8_t>> sent_rx_, expected_tx_;
    std::optional<Frame> frame_;  // a merged frame whose pieces are still coming
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    spdlog::set_level(spdlog::level::off);  // the device logs every hostile chain it refuses
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    Harness h(data[0], static_cast<std::uint16_t>(1u << (data[1] % 9)));
    vmm::fuzz::FuzzReader in(data + 2, size - 2);
    while (!in.empty()) {
        switch (in.le(1) % 9) {
            case 0: h.post_rx(in); break;
            case 1: h.post_tx(in); break;
            case 2: {
                const std::size_t len = in.le(2);
                h.peer_send(len, static_cast<std::uint8_t>(in.le(1)));
                break;
            }
            case 3: h.kick(VirtioNet::kRxQueue); break;
            case 4: h.kick(VirtioNet::kTxQueue); break;
            case 5: h.passes(); break;
            case 6: h.peer_drain(); break;
            case 7: h.raw_write(in); break;
            case 8: h.reset(); break;
        }
    }
    // The end: whatever is still queued gets one more chance, and is checked like the rest.
    h.passes();
    h.peer_drain();
    return 0;
}
