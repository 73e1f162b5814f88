// Fuzzes the virtio-blk device (devicemodel/virtio-blk/virtio_blk.h) with its threads and I/O
// engines as the anchor runs it, driven by a hostile guest: requests of every type (and bogus
// ones) with any sector, any number and length of data buffers, direct or through indirect
// tables; kicks that wait for the answers and kicks that do not; raw writes over rings,
// descriptors and headers; resets with requests in flight. The disk is a 64 KiB memfd.
//
// Checked while the guest has only behaved as a driver (no raw RAM write so far in the input):
//  - the device writes guest RAM only inside the device-writable buffers of requests it holds
//    and in the used ring (a reset moves the rings, so a write to the old ones after reset()
//    returned counts as a stray write);
//  - every request gets exactly one used entry, no longer than its writable bytes, and a status
//    of OK, IOERR or UNSUPP;
//  - a valid request succeeds: a read or write of whole sectors inside the disk (a write on a
//    writable disk), a flush;
//  - the disk holds what the guest wrote, and reads return it, checked against a copy kept
//    here for as long as the order is known (a request that was the only one out for all its
//    life; a write that overlapped others, a discard or a write-zeroes, whose segments the
//    fuzzer writes, end the content checks).
// Always: ASan and UBSan (guest RAM is a buffer of exactly its size), no hang (a kick that
// waits gets its answers within 5 s while the guest behaves).
//
// Input: byte 0: bit 0 io_uring for every request (else the default: reads on a ring, the rest
// on the pool), bit 1 EVENT_IDX, bit 2 INDIRECT_DESC (requests then sometimes posted through an
// indirect table), bit 3 a read-only disk, bit 4 adaptive polling on, bit 5 no ring for reads
// (without bit 0: the pool reads, and a batch's cached reads run inline); byte 1: queue size
// 1 << (b % 8). Then operations, a kind byte and its arguments (little-endian):
//   0 request   u8 type (0 IN, 1 OUT, 2 FLUSH, 3 GET_ID, 4 DISCARD, 5 WRITE_ZEROES, else that
//               byte as the type), u16 sector (% (capacity + 8)), u8 n (n % 4 data buffers),
//               n × u16 length (% 4097), u8 fill
//   1 kick and wait for every answer      2 kick without waiting
//   3 RAM write  u32 offset, u8 length, the bytes (the checks stop here)
//   4 device reset, then activation with fresh rings elsewhere
// fuzz/make_seeds.py writes seeds that read, write, flush and reset.
#include "devicemodel/bus/guest_memory.h"
#include "devicemodel/virtio-blk/virtio_blk.h"
#include "fuzz/chain_arena.h"
#include "fuzz/fuzz_reader.h"
#include "fuzz/guest_ram_watch.h"
#include "tests/support/virtqueue_driver.h"

#include <fcntl.h>
#include <linux/virtio_blk.h>
#include <sys/mman.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace vmm;
using namespace vmm::virtio_blk;
using Driver = test::VirtqueueDriver;

constexpr std::size_t kRam = 192 * 1024;
constexpr std::uint64_t kRings[2] = {0, 0x4000};  // each < 4 KiB at 128 entries; a reset switches
constexpr std::uint64_t kArena = 0x8000;           // headers, status bytes, data, indirect tables
constexpr std::uint64_t kDiskBytes = 64 * 1024;
constexpr std::uint64_t kDiskSectors = kDiskBytes / kSectorSize;

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "virtio_blk_fuzz: %s\n", what);
    std::abort();
}

// The disk: one memfd for the process, refilled for every input.
const std::string& disk_path() {
    static const std::string path = [] {
        const int fd = ::memfd_create("virtio_blk_fuzz", MFD_CLOEXEC);
        if (fd < 0 || ::ftruncate(fd, kDiskBytes) != 0) fail("memfd");
        return "/proc/self/fd/" + std::to_string(fd);
    }();
    return path;
}

class Harness {
public:
    Harness(std::uint8_t flags, std::uint16_t queue_size) : queue_size_(queue_size) {
        ram_.clear();
        memory_ = GuestMemory({{0, ram_.size(), ram_.data()}});
        for (std::uint64_t i = 0; i < kDiskBytes; ++i) shadow_[i] = static_cast<std::uint8_t>(i * 7 + i / 512);
        disk_fd_ = Fd(::open(disk_path().c_str(), O_RDWR | O_CLOEXEC));
        if (!disk_fd_.valid() || ::pwrite(disk_fd_.get(), shadow_.data(), kDiskBytes, 0) != static_cast<ssize_t>(kDiskBytes))
            fail("disk fill");
        read_only_ = flags & 8;
        VirtioBlkOptions o;
        o.name = "blkfuzz";
        o.queue_size = 128;
        o.use_io_uring = flags & 1;
        o.reads_on_io_uring = !(flags & 32);  // off (without use_io_uring): the pool reads, cached reads inline
        o.io_threads = 1;
        if (!(flags & 16)) o.poll_max = std::chrono::nanoseconds{0};
        blk_ = std::make_unique<VirtioBlk>(DiskImage::open({disk_path(), std::nullopt, read_only_}), o);
        features_ = bit(virtio::kFeatureVersion1);
        if (flags & 2) features_ |= bit(virtio::kFeatureEventIdx);
        if (flags & 4) features_ |= bit(virtio::kFeatureIndirectDesc);
        features_ &= blk_->device_features();
        activate();
    }
    ~Harness() {
        blk_.reset();  // joins its threads before the RAM they may touch is reused
    }

    void request(fuzz::FuzzReader& in) {
        const auto kind = static_cast<std::uint8_t>(in.le(1));
        static constexpr std::uint32_t kTypes[] = {VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH,
                                                   VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES};
        Request r;
        r.type = kind < std::size(kTypes) ? kTypes[kind] : kind;
        r.sector = in.le(2) % (kDiskSectors + 8);
        const unsigned n = static_cast<unsigned>(in.le(1) % 4);
        std::vector<std::uint32_t> lens;
        for (unsigned i = 0; i < n; ++i) lens.push_back(static_cast<std::uint32_t>(in.le(2) % 4097));
        const auto fill = static_cast<std::uint8_t>(in.le(1));
        // Header (device-readable), data (device-writable for IN and GET_ID), status.
        const bool data_in = r.type == VIRTIO_BLK_T_IN || r.type == VIRTIO_BLK_T_GET_ID;
        const auto hdr = arena_.alloc(sizeof(virtio_blk_outhdr));
        if (!hdr) return;
        const virtio_blk_outhdr h{r.type, 0, r.sector};
        std::memcpy(ram_.data() + *hdr, &h, sizeof h);
        r.bufs.push_back(Driver::rd(*hdr, sizeof h));
        for (std::uint32_t len : lens) {
            const auto at = arena_.alloc(len);
            if (!at) return;
            for (std::uint32_t i = 0; i < len; ++i) ram_.data()[*at + i] = static_cast<std::uint8_t>(fill + i * 3 + serial_);
            r.bufs.push_back(data_in ? Driver::wr(*at, len) : Driver::rd(*at, len));
            r.data_len += len;
        }
        const auto status = arena_.alloc(1);
        if (!status) return;
        ram_.data()[*status] = 0xee;
        r.bufs.push_back(Driver::wr(*status, 1));
        r.status = *status;
        ++serial_;
        const auto head = arena_.post(*q_, r.bufs, (features_ & bit(virtio::kFeatureIndirectDesc)) && (fill & 1));
        if (!head) return;
        for (const auto& b : r.bufs) r.writable += b.device_writable ? b.len : 0;
        // Requests out at the same time may run in any order (the device may poll the ring and
        // take this one before any kick): only one that was alone all its life is checked
        // against the copy of the disk.
        r.overlapped = !outstanding_.empty();
        for (auto& [h, other] : outstanding_) other.overlapped = true;
        outstanding_[*head] = std::move(r);
    }

    // Kicks; with `wait`, until every outstanding request came back (while the guest behaves)
    // or the device went to sleep with nothing in flight (after a raw write).
    void kick(bool wait) {
        step([&] {
            const auto sleeps = blk_->poll_stats().sleeps;
            blk_->queue_notify(0);
            if (!wait) return;
            const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
            for (;;) {
                if (!dirty_ && q_->used_idx() == static_cast<std::uint16_t>(published_ + outstanding_.size())) break;
                if (dirty_ && blk_->poll_stats().sleeps > sleeps && blk_->in_flight() == 0) break;
                if (std::chrono::steady_clock::now() > deadline) {
                    if (!dirty_) fail("requests of a well-behaved guest got no answer within 5 s");
                    break;
                }
                std::this_thread::sleep_for(std::chrono::microseconds(20));
            }
        });
    }

    void raw_write(fuzz::FuzzReader& in) {
        dirty_ = true;  // the guest is no longer a driver: from here on only the sanitizers judge
        ram_.scribble(in);
    }

    void reset() {
        step([&] { blk_->reset(); });
        // reset() returned: nothing may touch the old rings or buffers any more. A write it
        // dropped unanswered may still have reached the disk, or not.
        for (const auto& [head, r] : outstanding_)
            if (r.type == VIRTIO_BLK_T_OUT || r.type == VIRTIO_BLK_T_DISCARD || r.type == VIRTIO_BLK_T_WRITE_ZEROES)
                shadow_known_ = false;
        outstanding_.clear();
        ++ring_switch_;
        activate();
    }

    // The end: every request still out is answered (or the device sleeps), and checked.
    void finish() { kick(true); }

private:
    struct Request {
        std::uint32_t type = 0;
        std::uint64_t sector = 0;
        std::vector<Driver::Buf> bufs;  // header, data..., status
        std::uint64_t data_len = 0, writable = 0, status = 0;
        bool overlapped = false;  // another request was out while this one was
    };

    static std::uint64_t bit(unsigned b) { return std::uint64_t{1} << b; }

    void activate() {
        q_.emplace(memory_, kRings[ring_switch_ % 2], queue_size_);
        published_ = 0;
        step([&] { blk_->activate(memory_, features_, {q_->config()}, irq_); });
    }

    // Runs `op` on the device, then checks what it wrote and takes back the used entries.
    template <typename Op>
    void step(Op op) {
        if (!dirty_) ram_.snapshot();
        op();
        // The device's threads may still be working on requests of a kick that did not wait:
        // everything they hold stays allowed until they come back.
        if (!dirty_) {
            ram_.allow(q_->used_addr(), q_->end());
            for (const auto& [head, r] : outstanding_)
                for (const auto& b : r.bufs)
                    if (b.device_writable) ram_.allow(b.gpa, b.gpa + b.len);
            if (ram_.changed_outside()) fail("the device wrote guest RAM outside the buffers it holds and the used ring");
        }
        reclaim();
    }

    void reclaim() {
        for (const auto& e : q_->reclaim()) {
            auto it = outstanding_.find(static_cast<std::uint16_t>(e.id));
            if (it == outstanding_.end()) {
                if (!dirty_) fail("a used entry names no request the guest made available");
                continue;
            }
            const Request r = std::move(it->second);
            outstanding_.erase(it);
            ++published_;
            if (!dirty_) check(r, e.len);
        }
    }

    void check(const Request& r, std::uint32_t used_len) {
        if (used_len > r.writable) fail("a used entry is longer than its request's writable buffers");
        const std::uint8_t status = ram_.data()[r.status];
        if (status != VIRTIO_BLK_S_OK && status != VIRTIO_BLK_S_IOERR && status != VIRTIO_BLK_S_UNSUPP)
            fail("a request came back without a valid status byte");
        const bool rw = r.type == VIRTIO_BLK_T_IN || r.type == VIRTIO_BLK_T_OUT;
        const bool valid_rw = rw && r.data_len > 0 && r.data_len % kSectorSize == 0 &&
                              r.sector * kSectorSize + r.data_len <= kDiskBytes && !(r.type == VIRTIO_BLK_T_OUT && read_only_);
        if ((valid_rw || (r.type == VIRTIO_BLK_T_FLUSH && !read_only_)) && status != VIRTIO_BLK_S_OK)
            fail("a valid request failed");
        if (r.type == VIRTIO_BLK_T_DISCARD || r.type == VIRTIO_BLK_T_WRITE_ZEROES) shadow_known_ = false;
        if (status != VIRTIO_BLK_S_OK || !rw || r.data_len == 0) return;
        if (r.overlapped) {
            if (r.type == VIRTIO_BLK_T_OUT) shadow_known_ = false;  // its order against the others is unknown
            return;
        }
        if (!shadow_known_) return;
        const std::uint64_t at = r.sector * kSectorSize;
        std::uint64_t off = 0;
        for (std::size_t i = 1; i + 1 < r.bufs.size(); ++i) {
            const auto& b = r.bufs[i];
            std::uint8_t* guest = ram_.data() + b.gpa;
            if (r.type == VIRTIO_BLK_T_OUT) {
                std::memcpy(shadow_.data() + at + off, guest, b.len);
            } else if (std::memcmp(guest, shadow_.data() + at + off, b.len) != 0) {
                fail("a read returned what the disk does not hold");
            }
            off += b.len;
        }
        if (r.type == VIRTIO_BLK_T_OUT) {
            std::vector<std::uint8_t> disk(kDiskBytes);
            if (::pread(disk_fd_.get(), disk.data(), kDiskBytes, 0) != static_cast<ssize_t>(kDiskBytes)) fail("disk read");
            if (std::memcmp(disk.data(), shadow_.data(), kDiskBytes) != 0) fail("the disk does not hold what the guest wrote");
        }
    }

    static inline fuzz::GuestRamWatch ram_{kRam};
    static inline std::vector<std::uint8_t> shadow_ = std::vector<std::uint8_t>(kDiskBytes);
    std::uint16_t queue_size_;
    GuestMemory memory_;
    Fd disk_fd_;
    bool read_only_ = false, dirty_ = false, shadow_known_ = true;
    std::unique_ptr<VirtioBlk> blk_;
    std::shared_ptr<test::FakeVirtioInterrupt> irq_ = std::make_shared<test::FakeVirtioInterrupt>();
    std::uint64_t features_ = 0;
    std::optional<Driver> q_;
    unsigned ring_switch_ = 0;
    std::uint16_t published_ = 0;  // requests answered since activation
    std::map<std::uint16_t, Request> outstanding_;  // by head
    fuzz::ChainArena arena_{kArena, kRam};
    std::uint64_t serial_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    spdlog::set_level(spdlog::level::off);  // the device logs every hostile request it refuses
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    Harness h(data[0], static_cast<std::uint16_t>(1u << (data[1] % 8)));
    vmm::fuzz::FuzzReader in(data + 2, size - 2);
    while (!in.empty()) {
        switch (in.le(1) % 5) {
            case 0: h.request(in); break;
            case 1: h.kick(true); break;
            case 2: h.kick(false); break;
            case 3: h.raw_write(in); break;
            case 4: h.reset(); break;
        }
    }
    h.finish();
    return 0;
}
