// Fuzzes the virtio console device (devicemodel/virtio-console/virtio_console.h) the way a
// hostile guest and a busy terminal reach it: the guest posts receive and transmit chains
// (direct or through indirect tables) or scribbles over its rings and descriptors, writes
// emergency bytes, resets; the backend feeds input in bursts and resizes. The device runs its
// queue work inline (no executor), as in the unit tests.
//
// Checked while the guest has only behaved as a driver (no raw RAM write so far in the input):
//  - the device writes guest RAM only inside the receive buffers it holds and the used rings
//    (a reset moves the rings, so a write to the old ones counts as a stray write);
//  - the output is exactly what the guest transmitted and wrote to emerg_wr, in order;
//  - the input reaches the guest whole and in order: what its receive buffers got, followed by
//    what is still pending, is what the device accepted (pending input survives a reset);
//  - no used entry is longer than its chain.
// Always: ASan and UBSan (guest RAM is a buffer of exactly its size).
//
// With a port name (byte 0 bit 2) the device is a named port and the driver takes MULTIPORT: its
// control queues get chains too, the device writes only inside the control receive buffers it
// holds, and input is held until the guest's PORT_OPEN (still whole and in order). A second
// named port is there too, reached through the control queue and its host side.
//
// Input: byte 0 features: bit 0 EVENT_IDX, bit 1 INDIRECT_DESC (chains then sometimes posted
// through an indirect table), bit 2 a named port with MULTIPORT (bit 3 with it: port 0 is the
// console port, unnamed, beside the named port 1); byte 1: queue size
// 1 << (b % 9). Then operations, a kind byte and its arguments (little-endian):
//   0 post rx chain  u8 n (n % 3 + 1 buffers), n × u8 length
//   1 post tx chain  u8 n (n % 3 + 1 buffers), n × u8 length, u8 fill
//   2 input          u8 length (× 8), u8 fill  3 kick rx        4 kick tx
//   5 emerg_wr       u8 byte                   6 resize         u8 cols, u8 rows
//   7 RAM write      u32 offset, u8 length, the bytes (the checks stop here)
//   8 device reset, then activation with fresh rings elsewhere
//   9 post control rx chain  u8 length      10 control message  u8 event (% 8), u8 id, u8 value
//                                              (id % 4: port 0, the DEVICE_READY id, port 1, 7)
//  11 host side             u8 (bit 0: a client connected or gone; bit 1: port 1's)
// fuzz/make_seeds.py writes seeds that type both ways, overflow nothing and reset.
#include "devicemodel/bus/guest_memory.h"
#include "devicemodel/virtio-console/virtio_console.h"
#include "fuzz/chain_arena.h"
#include "fuzz/fuzz_reader.h"
#include "fuzz/guest_ram_watch.h"
#include "tests/support/virtqueue_driver.h"

#include <spdlog/spdlog.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <vector>

namespace {

using namespace vmm;
using namespace vmm::virtio_console;
using Driver = test::VirtqueueDriver;

constexpr std::size_t kRam = 128 * 1024;
// rx, tx, control rx, control tx; < 7 KiB each at 256
constexpr std::uint64_t kRings[2][4] = {{0, 0x2000, 0x4000, 0x6000}, {0x8000, 0xa000, 0xc000, 0xe000}};
constexpr std::uint64_t kArena = 0x10000;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "virtio_console_fuzz: %s\n", what);
    std::abort();
}

class Harness {
public:
    Harness(std::uint8_t flags, std::uint16_t queue_size)
        : queue_size_(queue_size),
          multiport_(flags & 4),
          console_([this](std::span<const std::uint8_t> bytes) { output_.insert(output_.end(), bytes.begin(), bytes.end()); },
                   options(multiport_, flags & 8)) {
        ram_.clear();
        memory_ = GuestMemory({{0, ram_.size(), ram_.data()}});
        features_ = std::uint64_t{1} << virtio::kFeatureVersion1;
        if (flags & 1) features_ |= std::uint64_t{1} << virtio::kFeatureEventIdx;
        if (flags & 2) features_ |= std::uint64_t{1} << virtio::kFeatureIndirectDesc;
        if (multiport_) features_ |= std::uint64_t{1} << VIRTIO_CONSOLE_F_MULTIPORT;
        activate();
    }

    void post_rx(fuzz::FuzzReader& in) {
        Chain c;
        for (unsigned i = 0, n = static_cast<unsigned>(in.le(1) % 3 + 1); i < n; ++i) {
            const auto len = static_cast<std::uint32_t>(in.le(1));
            const auto at = arena_.alloc(len);
            if (!at) return;
            c.bufs.push_back(Driver::wr(*at, len));
            c.writable += len;
        }
        if (const auto head = arena_.post(*rxq_, c.bufs, via_table())) rx_chains_[*head] = std::move(c);
    }

    void post_tx(fuzz::FuzzReader& in) {
        std::vector<std::uint32_t> lens;
        for (unsigned i = 0, n = static_cast<unsigned>(in.le(1) % 3 + 1); i < n; ++i)
            lens.push_back(static_cast<std::uint32_t>(in.le(1)));
        const auto fill = static_cast<std::uint8_t>(in.le(1));
        Chain c;
        std::vector<std::uint8_t> bytes;
        for (std::uint32_t len : lens) {
            const auto at = arena_.alloc(len);
            if (!at) return;
            for (std::uint32_t i = 0; i < len; ++i) ram_.data()[*at + i] = static_cast<std::uint8_t>(fill + i + serial_ * 31);
            bytes.insert(bytes.end(), ram_.data() + *at, ram_.data() + *at + len);
            c.bufs.push_back(Driver::rd(*at, len));
        }
        ++serial_;
        if (const auto head = arena_.post(*txq_, c.bufs, via_table())) {
            tx_chains_[*head] = std::move(c);
            unsent_.insert(unsent_.end(), bytes.begin(), bytes.end());
        }
    }

    void input(std::size_t len, std::uint8_t fill) {
        std::vector<std::uint8_t> bytes(len);
        for (std::size_t i = 0; i < len; ++i) bytes[i] = static_cast<std::uint8_t>(fill + i * 5 + serial_ * 17);
        ++serial_;
        step([&] {
            const std::size_t took = console_.feed_input(bytes);
            accepted_.insert(accepted_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(took));
        });
    }

    void post_control_rx(fuzz::FuzzReader& in) {
        if (!multiport_) return;
        const auto len = static_cast<std::uint32_t>(in.le(1));
        const auto at = arena_.alloc(len);
        if (!at) return;
        Chain c;
        c.bufs.push_back(Driver::wr(*at, len));
        c.writable = len;
        if (const auto head = arena_.post(*crxq_, c.bufs, via_table())) control_rx_chains_[*head] = std::move(c);
        step([&] { console_.queue_notify(VirtioConsole::kControlReceiveQueue); });
    }
    void control(fuzz::FuzzReader& in) {
        const auto event = static_cast<std::uint16_t>(in.le(1) % 8);
        const auto id = static_cast<std::uint8_t>(in.le(1));
        const auto value = static_cast<std::uint16_t>(in.le(1));
        if (!multiport_) return;
        static constexpr std::uint32_t kIds[] = {0, VIRTIO_CONSOLE_BAD_ID, 1, 7};
        const virtio_console_control m{kIds[id % 4], event, value};
        const auto at = arena_.alloc(sizeof m);
        if (!at) return;
        std::memcpy(ram_.data() + *at, &m, sizeof m);
        const std::vector<Driver::Buf> bufs{Driver::rd(*at, sizeof m)};
        if (const auto head = arena_.post(*ctxq_, bufs, via_table())) control_tx_chains_[*head] = Chain{bufs, 0};
        step([&] { console_.queue_notify(VirtioConsole::kControlTransmitQueue); });
    }

    void host(std::uint8_t b) {
        step([&] { console_.set_host_connected(multiport_ && (b & 2) ? 1 : 0, b & 1); });
    }

    void kick_rx() {
        step([&] { console_.queue_notify(VirtioConsole::kReceiveQueue); });
    }
    void kick_tx() {
        // Every chain made available so far goes out now (the device serves the queue inline).
        expected_out_.insert(expected_out_.end(), unsent_.begin(), unsent_.end());
        unsent_.clear();
        step([&] { console_.queue_notify(VirtioConsole::kTransmitQueue); });
    }
    void emergency(std::uint8_t byte) {
        expected_out_.push_back(byte);
        const std::uint32_t word = byte;
        step([&] {
            console_.write_config(offsetof(virtio_console_config, emerg_wr), std::span(reinterpret_cast<const std::uint8_t*>(&word), 4));
        });
    }
    void resize(std::uint16_t cols, std::uint16_t rows) {
        step([&] { console_.resize(cols, rows); });
    }
    void raw_write(fuzz::FuzzReader& in) {
        dirty_ = true;  // the guest is no longer a driver: from here on only the sanitizers judge
        ram_.scribble(in);
    }
    void reset() {
        step([&] { console_.reset(); });
        // Transmit chains not yet kicked are the old activation's: never sent.
        unsent_.clear();
        ++ring_switch_;
        activate();
    }

private:
    // A named port has a second port beside it (its queues stay disabled: the control path
    // addresses it, the data path is port 0's).
    static VirtioConsoleOptions options(bool multiport, bool console_port) {
        VirtioConsoleOptions o;
        o.name = "confuzz";
        o.max_pending_input = 4096;
        if (multiport) {
            if (!console_port) o.port_name = "org.qemu.guest_agent.0";
            o.more_ports.push_back({"vmm.second", {}, {}, true});
        }
        return o;
    }

    struct Chain {
        std::vector<Driver::Buf> bufs;
        std::uint64_t writable = 0;
    };

    bool via_table() const { return (features_ & (std::uint64_t{1} << virtio::kFeatureIndirectDesc)) && (serial_ & 1); }

    void activate() {
        const auto& rings = kRings[ring_switch_ % 2];
        rxq_.emplace(memory_, rings[0], queue_size_);
        txq_.emplace(memory_, rings[1], queue_size_);
        crxq_.emplace(memory_, rings[2], queue_size_);
        ctxq_.emplace(memory_, rings[3], queue_size_);
        rx_chains_.clear();
        tx_chains_.clear();
        control_rx_chains_.clear();
        control_tx_chains_.clear();
        std::vector<virtio::QueueConfig> queues{rxq_->config(), txq_->config()};
        if (multiport_) queues.insert(queues.end(), {crxq_->config(), ctxq_->config()});
        step([&] { console_.activate(memory_, features_, queues, irq_); });
    }

    // Runs `op` on the device, then checks what it wrote, takes back the used entries and
    // compares both streams.
    template <typename Op>
    void step(Op op) {
        if (!dirty_) ram_.snapshot();
        op();
        if (!dirty_) {
            for (const Driver* q : {&*rxq_, &*txq_, &*crxq_, &*ctxq_}) ram_.allow(q->used_addr(), q->end());
            for (const auto* chains : {&rx_chains_, &control_rx_chains_})
                for (const auto& [head, c] : *chains)
                    for (const auto& b : c.bufs) ram_.allow(b.gpa, b.gpa + b.len);
            if (ram_.changed_outside()) fail("the device wrote guest RAM outside its receive buffers and used rings");
        }
        for (const auto& e : rxq_->reclaim()) {
            auto it = rx_chains_.find(static_cast<std::uint16_t>(e.id));
            if (it == rx_chains_.end()) {
                if (!dirty_) fail("a used receive entry names no chain the guest made available");
                continue;
            }
            const Chain c = std::move(it->second);
            rx_chains_.erase(it);
            if (dirty_) continue;
            if (e.len > c.writable) fail("a used receive entry is longer than its chain");
            std::uint32_t left = e.len;
            for (const auto& b : c.bufs) {
                const std::uint32_t take = std::min(left, b.len);
                delivered_.insert(delivered_.end(), ram_.data() + b.gpa, ram_.data() + b.gpa + take);
                left -= take;
            }
        }
        for (const auto& e : txq_->reclaim())
            if (tx_chains_.erase(static_cast<std::uint16_t>(e.id)) == 0 && !dirty_)
                fail("a used transmit entry names no chain the guest made available");
        for (const auto& e : ctxq_->reclaim())
            if (control_tx_chains_.erase(static_cast<std::uint16_t>(e.id)) == 0 && !dirty_)
                fail("a used control transmit entry names no chain the guest made available");
        for (const auto& e : crxq_->reclaim()) {
            auto it = control_rx_chains_.find(static_cast<std::uint16_t>(e.id));
            if (it == control_rx_chains_.end()) {
                if (!dirty_) fail("a used control receive entry names no chain the guest made available");
                continue;
            }
            if (!dirty_ && e.len > it->second.writable) fail("a used control receive entry is longer than its chain");
            control_rx_chains_.erase(it);
        }
        if (dirty_) return;
        if (output_ != expected_out_) fail("the output is not what the guest transmitted, in order");
        if (delivered_.size() + console_.pending_input() != accepted_.size() ||
            !std::equal(delivered_.begin(), delivered_.end(), accepted_.begin()))
            fail("the guest did not receive the accepted input whole and in order");
    }

    static inline fuzz::GuestRamWatch ram_{kRam};
    std::uint16_t queue_size_;
    bool multiport_;
    GuestMemory memory_;
    std::vector<std::uint8_t> output_, expected_out_, unsent_, accepted_, delivered_;
    VirtioConsole console_;  // after output_: its Output appends there
    std::shared_ptr<test::FakeVirtioInterrupt> irq_ = std::make_shared<test::FakeVirtioInterrupt>();
    std::uint64_t features_ = 0;
    bool dirty_ = false;
    unsigned ring_switch_ = 0;
    std::optional<Driver> rxq_, txq_, crxq_, ctxq_;
    // By head: what the guest made available.
    std::map<std::uint16_t, Chain> rx_chains_, tx_chains_, control_rx_chains_, control_tx_chains_;
    fuzz::ChainArena arena_{kArena, kRam};
    std::uint64_t serial_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    spdlog::set_level(spdlog::level::off);  // the device logs hostile chains and dropped input
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    Harness h(data[0], static_cast<std::uint16_t>(1u << (data[1] % 9)));
    vmm::fuzz::FuzzReader in(data + 2, size - 2);
    while (!in.empty()) {
        switch (in.le(1) % 12) {
            case 0: h.post_rx(in); break;
            case 1: h.post_tx(in); break;
            case 2: {
                const std::size_t len = in.le(1) * 8;  // up to 2 KiB: the 4 KiB pending buffer can fill
                h.input(len, static_cast<std::uint8_t>(in.le(1)));
                break;
            }
            case 3: h.kick_rx(); break;
            case 4: h.kick_tx(); break;
            case 5: h.emergency(static_cast<std::uint8_t>(in.le(1))); break;
            case 6: {
                const auto cols = static_cast<std::uint16_t>(in.le(1));
                h.resize(cols, static_cast<std::uint16_t>(in.le(1)));
                break;
            }
            case 7: h.raw_write(in); break;
            case 8: h.reset(); break;
            case 9: h.post_control_rx(in); break;
            case 10: h.control(in); break;
            case 11: h.host(static_cast<std::uint8_t>(in.le(1))); break;
        }
    }
    h.kick_rx();
    h.kick_tx();
    return 0;
}
