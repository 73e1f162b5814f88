#include "x86/acpi/sdt.h"

#include "common/error.h"

#include <cstring>
#include <string>

namespace vmm::x86::acpi {

std::uint8_t byte_sum(std::span<const std::uint8_t> bytes) {
    std::uint8_t s = 0;
    for (auto b : bytes) s = static_cast<std::uint8_t>(s + b);
    return s;
}

std::uint8_t checksum_for(std::span<const std::uint8_t> bytes) { return static_cast<std::uint8_t>(0x100 - byte_sum(bytes)); }

SdtWriter::SdtWriter(std::string_view signature, std::uint8_t revision) {
    if (signature.size() != 4) throw Error("ACPI: table signature must be 4 characters");
    // Header layout (Table 5.4): signature, length (set by finish), revision, checksum (set by
    // finish), OEMID, OEM table id, OEM revision, creator id, creator revision.
    b_.assign(kSdtHeaderSize, 0);
    std::memcpy(&b_[0], signature.data(), 4);
    b_[8] = revision;
    std::memcpy(&b_[10], kOemId, 6);
    std::string table_id = "VMM" + std::string(signature);
    table_id.resize(8, ' ');
    std::memcpy(&b_[16], table_id.data(), 8);
    for (int i = 0; i < 4; ++i) b_[24 + i] = static_cast<std::uint8_t>(kOemRevision >> (8 * i));
    std::memcpy(&b_[28], kCreatorId, 4);
    for (int i = 0; i < 4; ++i) b_[32 + i] = static_cast<std::uint8_t>(kCreatorRevision >> (8 * i));
}

SdtWriter& SdtWriter::u8(std::uint8_t v) {
    b_.push_back(v);
    return *this;
}
SdtWriter& SdtWriter::u16(std::uint16_t v) {
    for (int i = 0; i < 2; ++i) b_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    return *this;
}
SdtWriter& SdtWriter::u32(std::uint32_t v) {
    for (int i = 0; i < 4; ++i) b_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    return *this;
}
SdtWriter& SdtWriter::u64(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) b_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
    return *this;
}
SdtWriter& SdtWriter::bytes(std::span<const std::uint8_t> b) {
    b_.insert(b_.end(), b.begin(), b.end());
    return *this;
}
SdtWriter& SdtWriter::zeros(std::size_t n) {
    b_.insert(b_.end(), n, 0);
    return *this;
}

SdtWriter& SdtWriter::gas(AddressSpace space, std::uint8_t bit_width, std::uint8_t bit_offset, AccessSize access,
                          std::uint64_t address) {
    u8(static_cast<std::uint8_t>(space));
    u8(bit_width);
    u8(bit_offset);
    u8(static_cast<std::uint8_t>(access));
    return u64(address);
}

std::vector<std::uint8_t> SdtWriter::finish() && {
    const auto len = static_cast<std::uint32_t>(b_.size());
    for (int i = 0; i < 4; ++i) b_[4 + i] = static_cast<std::uint8_t>(len >> (8 * i));
    b_[kSdtChecksumOffset] = 0;
    b_[kSdtChecksumOffset] = checksum_for(b_);
    return std::move(b_);
}

}  // namespace vmm::x86::acpi
