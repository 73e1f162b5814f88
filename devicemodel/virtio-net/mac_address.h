// MAC addresses for virtio-net NICs: parsing and printing "52:54:00:12:34:56", and the
// address derived for a manifest NIC that names none (NicSpec::mac == "").
// Pure functions, any thread.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vmm::virtio_net {

using MacAddress = std::array<std::uint8_t, 6>;

// "aa:bb:cc:dd:ee:ff" (either case) → bytes; nullopt on anything else.
std::optional<MacAddress> parse_mac(std::string_view text);
// Lower-case "aa:bb:cc:dd:ee:ff".
std::string format_mac(const MacAddress& mac);

// 52:54:00 (QEMU's locally administered, unicast prefix) followed by three bytes of a stable
// hash (FNV-1a 64) of the domain name and the NIC's index in the manifest: the same domain
// gets the same addresses on every start and every host, two NICs of a domain differ.
MacAddress derive_mac(std::string_view domain_name, unsigned nic_index);

// The manifest's mac if set (it is validated by the manifest parser; a bad one throws
// vmm::Error here anyway), otherwise derive_mac(domain_name, nic_index).
MacAddress mac_for_nic(std::string_view manifest_mac, std::string_view domain_name, unsigned nic_index);

}  // namespace vmm::virtio_net
