// SdtWriter: assembles one ACPI table — the 36-byte System Description Table header (ACPI 6.4
// §5.2.6), little-endian fields, Generic Address Structures (§5.2.3.2) — and finishes it with
// its length and checksum (all bytes sum to zero mod 256). Also the checksum helper the RSDP
// and the tests use.
//
// Pure value type, used by the table builders on whichever thread builds the tables.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace vmm::x86::acpi {

inline constexpr std::size_t kSdtHeaderSize = 36;
inline constexpr std::size_t kSdtChecksumOffset = 9;
inline constexpr char kOemId[] = "VMMKVM";      // 6 bytes
inline constexpr char kCreatorId[] = "VMMA";    // 4 bytes
inline constexpr std::uint32_t kOemRevision = 1;
inline constexpr std::uint32_t kCreatorRevision = 1;

// The byte that makes `bytes` (with 0 in the checksum byte's place) sum to zero.
std::uint8_t checksum_for(std::span<const std::uint8_t> bytes);
// The sum of `bytes` mod 256 (0 for a table with a correct checksum).
std::uint8_t byte_sum(std::span<const std::uint8_t> bytes);

// Generic Address Structure address space ids (§5.2.3.2, Table 5.25).
enum class AddressSpace : std::uint8_t { SystemMemory = 0, SystemIo = 1 };
// Access sizes: 1 byte, 2 word, 3 dword, 4 qword.
enum class AccessSize : std::uint8_t { Undefined = 0, Byte = 1, Word = 2, DWord = 3, QWord = 4 };

class SdtWriter {
public:
    // Starts a table: header with `signature` (4 characters), `revision`, OEM ids; the OEM
    // table id is "VMM" followed by the signature.
    SdtWriter(std::string_view signature, std::uint8_t revision);

    SdtWriter& u8(std::uint8_t v);
    SdtWriter& u16(std::uint16_t v);
    SdtWriter& u32(std::uint32_t v);
    SdtWriter& u64(std::uint64_t v);
    SdtWriter& bytes(std::span<const std::uint8_t> b);
    SdtWriter& zeros(std::size_t n);
    // A 12-byte Generic Address Structure.
    SdtWriter& gas(AddressSpace space, std::uint8_t bit_width, std::uint8_t bit_offset, AccessSize access,
                   std::uint64_t address);
    // An all-zero GAS: "not supported".
    SdtWriter& gas_none() { return zeros(12); }

    std::size_t size() const noexcept { return b_.size(); }
    // Sets the length and checksum fields and returns the table.
    std::vector<std::uint8_t> finish() &&;

private:
    std::vector<std::uint8_t> b_;
};

}  // namespace vmm::x86::acpi
