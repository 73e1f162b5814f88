// BlockRequest parser: see block_request.h.
#include "devicemodel/virtio-blk/block_request.h"

#include <linux/virtio_blk.h>

#include <cstring>

namespace vmm::virtio_blk {

namespace {

static_assert(kRequestHeaderSize == 16);
static_assert(sizeof(virtio_blk_discard_write_zeroes) == 16);

// [sector, sector + count) inside the disk, without overflow.
bool in_range(std::uint64_t sector, std::uint64_t count, std::uint64_t capacity) {
    return sector <= capacity && count <= capacity - sector;
}

// Fills req from chain (req's fields at their defaults); returns the status to reject it with,
// or nullopt for a request to execute.
std::optional<std::uint8_t> parse_into(const virtio::DescriptorChain& chain, const BlockLimits& limits, BlockRequest& req) {
    auto reject = [](std::uint8_t status) { return std::optional<std::uint8_t>(status); };
    if (!chain.ok() || !req.has_status) return reject(VIRTIO_BLK_S_IOERR);
    virtio_blk_outhdr hdr{};
    if (!chain.read_obj(0, hdr)) return reject(VIRTIO_BLK_S_IOERR);  // header missing or (part of it) device-writable
    req.type = hdr.type;
    req.sector = hdr.sector;
    const std::uint64_t readable_data = chain.readable_bytes() - kRequestHeaderSize;
    const std::uint64_t writable_data = chain.writable_bytes() - 1;

    switch (req.type) {
        case VIRTIO_BLK_T_IN:
        case VIRTIO_BLK_T_OUT: {
            const bool in = req.type == VIRTIO_BLK_T_IN;
            // IN carries no readable data, OUT no writable data besides the status byte: data in
            // the wrong direction is a malformed request, not something to guess around.
            if (in ? readable_data != 0 : writable_data != 0) return reject(VIRTIO_BLK_S_IOERR);
            if (!in && limits.read_only) return reject(VIRTIO_BLK_S_IOERR);
            req.data_len = in ? writable_data : readable_data;
            if (req.data_len % kSectorSize) return reject(VIRTIO_BLK_S_IOERR);
            if (!in_range(req.sector, req.data_len / kSectorSize, limits.capacity_sectors)) return reject(VIRTIO_BLK_S_IOERR);
            return std::nullopt;  // the data is the whole rest of its part: data_iov() has it all
        }
        case VIRTIO_BLK_T_FLUSH:
            return std::nullopt;
        case VIRTIO_BLK_T_GET_ID: {
            req.data_len = std::min<std::uint64_t>(writable_data, VIRTIO_BLK_ID_BYTES);
            return std::nullopt;
        }
        case VIRTIO_BLK_T_DISCARD:
        case VIRTIO_BLK_T_WRITE_ZEROES: {
            const bool discard = req.type == VIRTIO_BLK_T_DISCARD;
            if (limits.read_only) return reject(VIRTIO_BLK_S_IOERR);
            const std::uint32_t max_seg = discard ? limits.max_discard_seg : limits.max_write_zeroes_seg;
            const std::uint32_t max_sectors = discard ? limits.max_discard_sectors : limits.max_write_zeroes_sectors;
            if (max_seg == 0) return reject(VIRTIO_BLK_S_UNSUPP);
            if (readable_data == 0 || readable_data % sizeof(virtio_blk_discard_write_zeroes) ||
                readable_data / sizeof(virtio_blk_discard_write_zeroes) > max_seg)
                return reject(VIRTIO_BLK_S_IOERR);
            const std::uint64_t count = readable_data / sizeof(virtio_blk_discard_write_zeroes);
            for (std::uint64_t i = 0; i < count; ++i) {
                virtio_blk_discard_write_zeroes seg{};
                chain.read_obj(kRequestHeaderSize + i * sizeof seg, seg);  // inside the readable part (checked above)
                // §5.2.6.2: unknown flags, or unmap on a discard, are UNSUPP.
                const std::uint32_t allowed = discard ? 0 : VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
                if (seg.flags & ~allowed) return reject(VIRTIO_BLK_S_UNSUPP);
                if (seg.num_sectors > max_sectors) return reject(VIRTIO_BLK_S_IOERR);
                if (!in_range(seg.sector, seg.num_sectors, limits.capacity_sectors)) return reject(VIRTIO_BLK_S_IOERR);
                if (seg.flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) req.unmap = true;
                req.segments.emplace_back(seg.sector, seg.num_sectors);
            }
            return std::nullopt;
        }
        default:
            return reject(VIRTIO_BLK_S_UNSUPP);
    }
}

}  // namespace

void parse_block_request(const virtio::DescriptorChain& chain, const BlockLimits& limits, BlockRequest& req) {
    req.type = 0;
    req.sector = 0;
    req.data_len = 0;
    req.segments.clear();  // keeps its capacity for the next request
    req.unmap = false;
    req.has_status = chain.writable_bytes() >= 1;
    req.reject = parse_into(chain, limits, req);
    if (req.reject) {
        req.data_len = 0;
        req.segments.clear();
    }
}

BlockRequest parse_block_request(const virtio::DescriptorChain& chain, const BlockLimits& limits) {
    BlockRequest req;
    parse_block_request(chain, limits, req);
    return req;
}

}  // namespace vmm::virtio_blk
