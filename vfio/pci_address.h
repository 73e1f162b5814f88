// PciAddress: a PCI function's address (domain:bus:device.function, "BDF"), parsed from and
// printed as sysfs names it ("0000:03:00.0").
//
// Pure value type; used by every thread that handles host PCI devices (vmmd's API thread,
// vmctl, the anchor's main thread at start-up).
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vmm::vfio {

struct PciAddress {
    std::uint32_t domain = 0;
    std::uint8_t bus = 0;
    std::uint8_t device = 0;    // 0..31
    std::uint8_t function = 0;  // 0..7

    // "DDDD:BB:DD.F" (domain of 4 to 8 hex digits, as VMD domains are 5) or "BB:DD.F" (domain 0).
    // Case-insensitive. nullopt on anything else.
    static std::optional<PciAddress> parse(std::string_view text);
    // Always the sysfs form: 4-digit (or wider) lowercase domain, "0000:03:00.0".
    std::string to_string() const;

    auto operator<=>(const PciAddress&) const = default;
};

// parse() followed by to_string(); throws vmm::Error naming `text` when it is not a BDF.
std::string normalize_bdf(std::string_view text);

}  // namespace vmm::vfio
