// GPT parser: see gpt.h. Layout per UEFI 2.10 §5.3.2 (header) and §5.3.3 (entries).
#include "devicemodel/virtio-blk/gpt.h"

#include "common/error.h"

#include <cstring>

namespace vmm::virtio_blk {

namespace {

constexpr std::uint64_t kHeaderMinSize = 92;
constexpr std::uint32_t kMaxEntries = 65536;  // sanity bound: the array is read into memory

struct Crc32Table {
    std::uint32_t v[256];
    constexpr Crc32Table() : v{} {
        for (std::uint32_t i = 0; i < 256; ++i) {
            std::uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
            v[i] = c;
        }
    }
};
constexpr Crc32Table kCrcTable;

template <typename T>
T le(const std::uint8_t* p) {
    T v;
    std::memcpy(&v, p, sizeof v);  // x86 host: GPT fields are little-endian
    return v;
}

bool is_zero(std::span<const std::uint8_t> s) {
    for (auto b : s)
        if (b) return false;
    return true;
}

struct Header {
    std::uint64_t my_lba, alternate_lba, first_usable, last_usable, entries_lba;
    std::uint32_t num_entries, entry_size, entries_crc;
    std::string disk_guid;
};

// Validates the header at `lba`; returns nullopt with `why` set when it is not a valid GPT header.
std::optional<Header> read_header(const DiskReader& read, std::uint64_t lba, std::uint64_t disk_bytes,
                                  std::uint32_t lba_size, std::string& why) {
    std::vector<std::uint8_t> buf(lba_size);
    if (lba * lba_size + lba_size > disk_bytes || !read(lba * lba_size, buf)) {
        why = "cannot read LBA " + std::to_string(lba);
        return std::nullopt;
    }
    const std::uint8_t* p = buf.data();
    if (std::memcmp(p, "EFI PART", 8) != 0) {
        why = "no GPT signature at LBA " + std::to_string(lba);
        return std::nullopt;
    }
    const auto header_size = le<std::uint32_t>(p + 12);
    if (header_size < kHeaderMinSize || header_size > lba_size) {
        why = "bad header size " + std::to_string(header_size);
        return std::nullopt;
    }
    const auto stored_crc = le<std::uint32_t>(p + 16);
    std::memset(buf.data() + 16, 0, 4);
    if (crc32({buf.data(), header_size}) != stored_crc) {
        why = "header CRC32 mismatch at LBA " + std::to_string(lba);
        return std::nullopt;
    }
    Header h;
    h.my_lba = le<std::uint64_t>(p + 24);
    h.alternate_lba = le<std::uint64_t>(p + 32);
    h.first_usable = le<std::uint64_t>(p + 40);
    h.last_usable = le<std::uint64_t>(p + 48);
    h.disk_guid = format_guid(std::span<const std::uint8_t, 16>(p + 56, 16));
    h.entries_lba = le<std::uint64_t>(p + 72);
    h.num_entries = le<std::uint32_t>(p + 80);
    h.entry_size = le<std::uint32_t>(p + 84);
    h.entries_crc = le<std::uint32_t>(p + 88);
    const std::uint64_t disk_lbas = disk_bytes / lba_size;
    if (h.my_lba != lba) {
        why = "header at LBA " + std::to_string(lba) + " says it is at LBA " + std::to_string(h.my_lba);
        return std::nullopt;
    }
    if (h.entry_size < 128 || h.entry_size % 8 || h.num_entries > kMaxEntries) {
        why = "bad partition entry size/count";
        return std::nullopt;
    }
    const std::uint64_t array_bytes = std::uint64_t{h.num_entries} * h.entry_size;
    if (h.entries_lba >= disk_lbas || array_bytes > (disk_lbas - h.entries_lba) * lba_size) {
        why = "partition entry array outside the disk";
        return std::nullopt;
    }
    if (h.first_usable > h.last_usable || h.last_usable >= disk_lbas) {
        why = "bad usable LBA range";
        return std::nullopt;
    }
    return h;
}

}  // namespace

std::uint32_t crc32(std::span<const std::uint8_t> data, std::uint32_t crc) noexcept {
    crc = ~crc;
    for (auto b : data) crc = kCrcTable.v[(crc ^ b) & 0xff] ^ (crc >> 8);
    return ~crc;
}

std::string format_guid(std::span<const std::uint8_t, 16> b) {
    char out[37];
    std::snprintf(out, sizeof out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[3], b[2],
                  b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
    return out;
}

std::optional<std::array<std::uint8_t, 16>> parse_guid(std::string_view t) {
    if (t.size() != 36 || t[8] != '-' || t[13] != '-' || t[18] != '-' || t[23] != '-') return std::nullopt;
    std::uint8_t text_order[16];
    std::size_t n = 0;
    for (std::size_t i = 0; i < t.size();) {
        if (t[i] == '-') {
            ++i;
            continue;
        }
        auto nib = [](char c) -> int {
            if (c >= '0' && c <= '9') return c - '0';
            if (c >= 'a' && c <= 'f') return c - 'a' + 10;
            if (c >= 'A' && c <= 'F') return c - 'A' + 10;
            return -1;
        };
        const int hi = nib(t[i]), lo = nib(t[i + 1]);
        if (hi < 0 || lo < 0 || t[i + 1] == '-') return std::nullopt;
        text_order[n++] = static_cast<std::uint8_t>(hi << 4 | lo);
        i += 2;
    }
    if (n != 16) return std::nullopt;
    // The first three fields are stored little-endian (mixed-endian GUID).
    static constexpr int kOrder[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
    std::array<std::uint8_t, 16> out{};
    for (int i = 0; i < 16; ++i) out[i] = text_order[kOrder[i]];
    return out;
}

GptTable read_gpt(const DiskReader& read, std::uint64_t disk_bytes, std::uint32_t lba_size, const std::string& what) {
    if (lba_size < 512 || (lba_size & (lba_size - 1))) throw Error(what + ": bad logical block size");
    const std::uint64_t disk_lbas = disk_bytes / lba_size;
    if (disk_lbas < 3) throw Error(what + ": too small for a GPT");
    std::string why_primary, why_backup;
    GptTable table;
    table.lba_size = lba_size;
    auto header = read_header(read, 1, disk_bytes, lba_size, why_primary);
    if (!header) {
        header = read_header(read, disk_lbas - 1, disk_bytes, lba_size, why_backup);
        if (!header) throw Error(what + ": no valid GPT (primary: " + why_primary + "; backup: " + why_backup + ")");
        table.from_backup = true;
    }
    table.disk_guid = header->disk_guid;
    std::vector<std::uint8_t> entries(std::uint64_t{header->num_entries} * header->entry_size);
    if (!read(header->entries_lba * lba_size, entries))
        throw Error(what + ": cannot read the GPT partition entries");
    if (crc32(entries) != header->entries_crc) throw Error(what + ": GPT partition entry array CRC32 mismatch");
    for (std::uint32_t i = 0; i < header->num_entries; ++i) {
        const std::uint8_t* e = entries.data() + std::uint64_t{i} * header->entry_size;
        if (is_zero({e, 16})) continue;  // unused entry: zero type GUID
        GptPartition part;
        part.index = i;
        part.type_guid = format_guid(std::span<const std::uint8_t, 16>(e, 16));
        part.unique_guid = format_guid(std::span<const std::uint8_t, 16>(e + 16, 16));
        part.first_lba = le<std::uint64_t>(e + 32);
        part.last_lba = le<std::uint64_t>(e + 40);
        for (int k = 0; k < 36; ++k) {
            const auto c = le<std::uint16_t>(e + 56 + 2 * k);
            if (c == 0) break;
            if (c < 0x80) part.name.push_back(static_cast<char>(c));
        }
        if (part.first_lba > part.last_lba || part.first_lba < header->first_usable || part.last_lba > header->last_usable)
            throw Error(what + ": GPT partition " + std::to_string(i + 1) + " lies outside the usable LBA range");
        table.partitions.push_back(std::move(part));
    }
    return table;
}

std::optional<GptPartition> find_partition(const GptTable& table, std::string_view partuuid) {
    auto want = parse_guid(partuuid);
    if (!want) return std::nullopt;
    const std::string canonical = format_guid(*want);
    for (const auto& p : table.partitions)
        if (p.unique_guid == canonical) return p;
    return std::nullopt;
}

}  // namespace vmm::virtio_blk
