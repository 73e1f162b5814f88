// BlockRequest: a pure parser that turns one popped descriptor chain into a checked virtio-blk
// request (virtio 1.2 §5.2.6), apart from the device (as Firecracker's request.rs).
//
// Layout: a 16-byte device-readable header {type, reserved, sector}; for OUT, DISCARD and
// WRITE_ZEROES the data follows in the device-readable part; for IN and GET_ID the data is the
// device-writable part minus its last byte, which is the status byte. Buffer boundaries may
// fall anywhere (VIRTIO_F_ANY_LAYOUT is implied by VERSION_1).
//
// Every data range is checked against the capacity and the read-only flag here, so the device
// only has to execute what the parser accepted. Called from the device's dispatcher thread.
#pragma once

#include "devicemodel/virtio/virtqueue.h"

#include <linux/virtio_blk.h>
#include <sys/uio.h>

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

namespace vmm::virtio_blk {

inline constexpr std::uint64_t kSectorSize = 512;
inline constexpr std::uint64_t kRequestHeaderSize = sizeof(virtio_blk_outhdr);  // {type, reserved, sector}

struct BlockLimits {
    std::uint64_t capacity_sectors = 0;
    bool read_only = false;
    std::uint32_t max_discard_sectors = 0;
    std::uint32_t max_discard_seg = 0;
    std::uint32_t max_write_zeroes_sectors = 0;
    std::uint32_t max_write_zeroes_seg = 0;
};

struct BlockRequest {
    std::uint32_t type = 0;  // VIRTIO_BLK_T_*
    std::uint64_t sector = 0;
    // A status byte exists (the chain has a device-writable part). Without one the request can
    // only be handed back with used length 0.
    bool has_status = false;
    // Set when the request is rejected without I/O: VIRTIO_BLK_S_IOERR or VIRTIO_BLK_S_UNSUPP.
    std::optional<std::uint8_t> reject;
    // IN / OUT / GET_ID: the data's length. It starts the device-writable part (IN, GET_ID) or
    // follows the header in the device-readable part (OUT), and lies there whole (the parser
    // checked): data_iov() gives its host iovecs.
    std::uint64_t data_len = 0;
    // DISCARD / WRITE_ZEROES: (first sector, sectors) of each segment; unmap flag of WRITE_ZEROES.
    std::vector<std::pair<std::uint64_t, std::uint64_t>> segments;
    bool unmap = false;
    // Bytes the device writes to the chain on success (data + status): the used length.
    std::uint32_t used_len_ok() const noexcept { return static_cast<std::uint32_t>(writes_data() ? data_len + 1 : 1); }
    bool writes_data() const noexcept { return type == VIRTIO_BLK_T_IN || type == VIRTIO_BLK_T_GET_ID; }
};

// Parses `chain` into `req`, every field set anew (a device keeps one request and parses each
// chain into it: no containers built and dropped per request).
void parse_block_request(const virtio::DescriptorChain& chain, const BlockLimits& limits, BlockRequest& req);
BlockRequest parse_block_request(const virtio::DescriptorChain& chain, const BlockLimits& limits);

// The host iovecs of an accepted IN / OUT / GET_ID request's data, into `out` (replaced).
// Inside its part (the parser checked): neither call can come up short.
inline void data_iov(const virtio::DescriptorChain& chain, const BlockRequest& req, virtio::IoVecs& out) {
    if (req.writes_data())
        chain.writable_iov(0, req.data_len, out);
    else
        chain.readable_iov(kRequestHeaderSize, req.data_len, out);
}

}  // namespace vmm::virtio_blk
