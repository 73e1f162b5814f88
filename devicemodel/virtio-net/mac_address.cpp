// MAC address helpers: see mac_address.h.
#include "devicemodel/virtio-net/mac_address.h"

#include "common/error.h"

#include <cstdio>

namespace vmm::virtio_net {

namespace {

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

}  // namespace

std::optional<MacAddress> parse_mac(std::string_view text) {
    if (text.size() != 17) return std::nullopt;
    MacAddress mac{};
    for (std::size_t i = 0; i < 6; ++i) {
        const int hi = hex_digit(text[3 * i]), lo = hex_digit(text[3 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        if (i < 5 && text[3 * i + 2] != ':') return std::nullopt;
        mac[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    return mac;
}

std::string format_mac(const MacAddress& mac) {
    char buf[18];
    std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
    return buf;
}

MacAddress derive_mac(std::string_view domain_name, unsigned nic_index) {
    // FNV-1a 64 over the name, a 0 separator and the index (little-endian): stable everywhere,
    // unlike std::hash.
    std::uint64_t h = 0xcbf29ce484222325ull;
    auto mix = [&h](std::uint8_t b) {
        h ^= b;
        h *= 0x100000001b3ull;
    };
    for (char c : domain_name) mix(static_cast<std::uint8_t>(c));
    mix(0);
    for (int i = 0; i < 4; ++i) mix(static_cast<std::uint8_t>(nic_index >> (8 * i)));
    // Fold the high half in so all 64 bits count.
    h ^= h >> 32;
    return {0x52, 0x54, 0x00, static_cast<std::uint8_t>(h >> 16), static_cast<std::uint8_t>(h >> 8),
            static_cast<std::uint8_t>(h)};
}

MacAddress mac_for_nic(std::string_view manifest_mac, std::string_view domain_name, unsigned nic_index) {
    if (manifest_mac.empty()) return derive_mac(domain_name, nic_index);
    auto mac = parse_mac(manifest_mac);
    if (!mac) throw Error("nics[" + std::to_string(nic_index) + "].mac: not a MAC address: " + std::string(manifest_mac));
    return *mac;
}

}  // namespace vmm::virtio_net
