// Fuzzes the split virtqueue walker (devicemodel/virtio/virtqueue.h) with guest memory as the
// input, and the virtio-blk request parser (devicemodel/virtio-blk/block_request.h) on every
// chain it pops: what a hostile guest controls is the descriptor table, both rings and the
// buffers, all of which live in guest RAM.
//
// Input: a 16-byte header, then the guest RAM image.
//   [0]      queue size: 1 << (b % 10) (1..512), sometimes a non-power of two (b & 0x80)
//   [1]      features: bit 0 INDIRECT_DESC, bit 1 EVENT_IDX; bit 2: addresses from [4..15]
//            instead of the packed layout; bit 3: RAM is split into two regions with a hole;
//            bit 4: toggle notification suppression while popping
//   [2..3]   where the second region starts in the image (with bit 3)
//   [4..15]  desc, avail, used offsets (u32 each, with bit 2)
// The RAM image is copied into buffers of exactly its size, so ASan catches any access past it.
#include "devicemodel/bus/guest_memory.h"
#include "devicemodel/virtio-blk/block_request.h"
#include "devicemodel/virtio/virtio_device.h"
#include "devicemodel/virtio/virtqueue.h"

#include <linux/virtio_blk.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace {

constexpr std::size_t kHeader = 16;
constexpr std::uint64_t kSecondRegionGpa = 0x100000;  // the hole sits between the regions

std::uint32_t le32(const std::uint8_t* p) {
    std::uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

void exercise_chain(const vmm::virtio::DescriptorChain& chain) {
    // Touch every byte of every buffer through the accessors the devices use.
    std::vector<std::uint8_t> scratch(std::min<std::uint64_t>(chain.readable_bytes() + 8, 1 << 16));
    (void)chain.read(0, scratch);
    if (chain.readable_bytes() > 3) (void)chain.read(3, std::span(scratch).first(5));
    std::vector<std::uint8_t> fill(std::min<std::uint64_t>(chain.writable_bytes() + 8, 1 << 16), 0x5a);
    (void)chain.write(0, fill);
    if (chain.writable_bytes() > 1) (void)chain.write(chain.writable_bytes() - 1, std::span(fill).first(2));
    for (const auto& b : chain.readable()) {
        if (!b.host.empty()) scratch[0] ^= b.host.front() ^ b.host.back();
    }
    (void)chain.readable_iov(0, chain.readable_bytes());
    (void)chain.readable_iov(1, chain.readable_bytes());  // one past the end: nullopt
    (void)chain.writable_iov(chain.writable_bytes() / 2, chain.writable_bytes() - chain.writable_bytes() / 2);

    vmm::virtio_blk::BlockLimits limits;
    limits.capacity_sectors = 2048;
    limits.max_discard_sectors = 64;
    limits.max_discard_seg = 4;
    limits.max_write_zeroes_sectors = 64;
    limits.max_write_zeroes_seg = 4;
    const auto request = vmm::virtio_blk::parse_block_request(chain, limits);
    vmm::virtio::IoVecs data;
    if (!request.reject) vmm::virtio_blk::data_iov(chain, request, data);
    std::uint64_t data_bytes = 0;
    for (const auto& iov : data) data_bytes += iov.iov_len;
    if (data_bytes != (request.reject ? 0 : request.data_len)) __builtin_trap();  // the parser promised it whole
    for (const auto& iov : data) {
        // The parser hands these to the I/O engine: they must be real guest bytes.
        if (iov.iov_len > 0) {
            volatile std::uint8_t first = static_cast<const std::uint8_t*>(iov.iov_base)[0];
            volatile std::uint8_t last = static_cast<const std::uint8_t*>(iov.iov_base)[iov.iov_len - 1];
            (void)first;
            (void)last;
        }
    }
    (void)request.used_len_ok();
    limits.read_only = true;
    (void)vmm::virtio_blk::parse_block_request(chain, limits);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < kHeader) return 0;
    const std::uint8_t* h = data;
    const std::uint8_t* ram = data + kHeader;
    const std::size_t ram_size = size - kHeader;

    std::uint16_t queue_size = static_cast<std::uint16_t>(1u << (h[0] % 10));
    if (h[0] & 0x80) queue_size = static_cast<std::uint16_t>(queue_size + (h[0] & 0x40 ? 1 : 3));
    std::uint64_t features = vmm::virtio::feature_bit(vmm::virtio::kFeatureVersion1);
    if (h[1] & 1) features |= vmm::virtio::feature_bit(vmm::virtio::kFeatureIndirectDesc);
    if (h[1] & 2) features |= vmm::virtio::feature_bit(vmm::virtio::kFeatureEventIdx);

    // Guest RAM: one region, or two with a hole (a buffer straddling it must be refused).
    std::vector<std::vector<std::uint8_t>> storage;
    std::vector<vmm::GuestRegion> regions;
    std::size_t split = ram_size;
    if (h[1] & 8) split = std::min<std::size_t>(ram_size, std::uint16_t(h[2] | h[3] << 8));
    storage.emplace_back(ram, ram + split);
    if (!storage.back().empty()) regions.push_back({0, storage.back().size(), storage.back().data()});
    if (split < ram_size) {
        storage.emplace_back(ram + split, ram + ram_size);
        regions.push_back({kSecondRegionGpa, storage.back().size(), storage.back().data()});
    }
    const vmm::GuestMemory memory(regions);

    vmm::virtio::QueueConfig config;
    config.size = queue_size;
    config.enabled = true;
    if (h[1] & 4) {
        config.desc = le32(h + 4);
        config.avail = le32(h + 8);
        config.used = le32(h + 12);
    } else {
        config.desc = 0;
        config.avail = 16ull * queue_size;
        config.used = (config.avail + 6 + 2ull * queue_size + 3) & ~3ull;
    }

    vmm::virtio::VirtQueue queue(memory, config, /*max_size=*/256, features);
    // Every pop advances next_avail and the avail index may be at most `size` ahead, but the
    // guest's ring may overlap the used ring we write: bound the loop anyway.
    // Notification suppression (a polling device) toggles on and off along the way: both write
    // into the used ring, and the poll loop's lock-free reader reads the avail idx.
    const vmm::virtio::AvailIdxReader reader = queue.avail_idx_reader();
    for (unsigned i = 0; i < 4u * queue_size + 8; ++i) {
        (void)queue.has_available();
        (void)reader();
        if (h[1] & 16) {
            if (i % 3 == 0) queue.disable_notifications();
            if (i % 3 == 2) (void)queue.enable_notifications();
        }
        auto chain = queue.pop();
        if (!chain) break;
        std::uint32_t used_len = 0;
        if (chain->ok()) {
            exercise_chain(*chain);
            used_len = static_cast<std::uint32_t>(std::min<std::uint64_t>(chain->writable_bytes(), 1));
        }
        if (!queue.add_used(chain->head(), used_len)) break;
        (void)queue.needs_notification();
    }
    return 0;
}
