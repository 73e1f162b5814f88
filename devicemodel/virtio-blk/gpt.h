// GPT (UEFI 2.10 §5.3) parser: finds a partition's [first_lba, last_lba] by its unique GUID so a
// virtio-blk disk can be a window of a host disk ({"path": "/dev/nvme0n1", "partuuid": "..."}).
//
// The header and the entry array are CRC32-checked; when the primary header (LBA 1) is bad the
// backup header (last LBA) is used. A disk is host input, not guest input, so failures throw
// vmm::Error naming the disk. Called once at setup, from the anchor's main thread.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vmm::virtio_blk {

// CRC32 as GPT uses it (IEEE 802.3, reflected, init and final xor 0xffffffff).
std::uint32_t crc32(std::span<const std::uint8_t> data, std::uint32_t crc = 0) noexcept;

// "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", lowercase, from GPT's mixed-endian GUID bytes.
std::string format_guid(std::span<const std::uint8_t, 16> bytes);
// The inverse; nullopt on a malformed string. Case-insensitive.
std::optional<std::array<std::uint8_t, 16>> parse_guid(std::string_view text);

struct GptPartition {
    std::uint32_t index = 0;  // entry number in the array, from 0
    std::string type_guid;
    std::string unique_guid;  // the partition UUID (PARTUUID)
    std::uint64_t first_lba = 0, last_lba = 0;  // inclusive
    std::string name;  // UTF-16LE name, ASCII characters only kept
};

struct GptTable {
    std::uint32_t lba_size = 512;
    std::string disk_guid;
    bool from_backup = false;  // the primary header was bad
    std::vector<GptPartition> partitions;  // used entries only
};

// Reads `len` bytes at byte `offset` of the disk into `dst`; false on error or short read.
using DiskReader = std::function<bool(std::uint64_t offset, std::span<std::uint8_t> dst)>;

// Parses the GPT of a disk of `disk_bytes` bytes with `lba_size`-byte logical blocks. Throws
// vmm::Error (prefixed with `what`) when neither header is valid or the entries are corrupt.
GptTable read_gpt(const DiskReader& read, std::uint64_t disk_bytes, std::uint32_t lba_size, const std::string& what);

// The partition whose unique GUID is `partuuid` (case-insensitive), if any.
std::optional<GptPartition> find_partition(const GptTable& table, std::string_view partuuid);

}  // namespace vmm::virtio_blk
