// DiskImage: the backend of a virtio-blk disk. A raw file or block device opened through a
// vmm::Fd, optionally narrowed to one GPT partition chosen by its unique GUID, so the guest sees
// only the window [offset, offset + size).
//
// Opened at setup on the anchor's main thread (throws on any host error); afterwards immutable
// and shared read-only by the device's I/O threads.
#pragma once

#include "common/fd.h"

#include <cstdint>
#include <optional>
#include <string>

namespace vmm::virtio_blk {

struct DiskSpec {
    std::string path;
    std::optional<std::string> partuuid;  // GPT unique partition GUID: expose only that partition
    bool read_only = false;
};

class DiskImage {
public:
    // Opens spec.path (O_RDWR, or O_RDONLY when read_only); with a partuuid, parses the GPT and
    // narrows to the partition. Throws std::system_error / vmm::Error naming the path.
    static DiskImage open(const DiskSpec& spec);

    int fd() const noexcept { return fd_.get(); }
    // Byte offset of the window on the host file/device, and its size in bytes (whole sectors).
    std::uint64_t offset() const noexcept { return offset_; }
    std::uint64_t size() const noexcept { return size_; }
    std::uint64_t capacity_sectors() const noexcept { return size_ / 512; }
    bool read_only() const noexcept { return read_only_; }
    bool is_block_device() const noexcept { return block_device_; }
    // Logical block size of the host device (512 for a file).
    std::uint32_t logical_block_size() const noexcept { return lbs_; }
    const std::string& path() const noexcept { return path_; }

private:
    Fd fd_;
    std::string path_;
    std::uint64_t offset_ = 0, size_ = 0;
    bool read_only_ = false, block_device_ = false;
    std::uint32_t lbs_ = 512;
};

}  // namespace vmm::virtio_blk
