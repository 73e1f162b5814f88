// PciAddress parsing and printing (see pci_address.h).
#include "vfio/pci_address.h"

#include "common/error.h"

#include <cstdio>

namespace vmm::vfio {
namespace {

// Parses exactly `text` as hex with min..max digits; nullopt otherwise.
std::optional<std::uint32_t> parse_hex(std::string_view text, std::size_t min_digits, std::size_t max_digits) {
    if (text.size() < min_digits || text.size() > max_digits) return std::nullopt;
    std::uint32_t v = 0;
    for (char c : text) {
        unsigned d;
        if (c >= '0' && c <= '9') d = static_cast<unsigned>(c - '0');
        else if (c >= 'a' && c <= 'f') d = static_cast<unsigned>(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = static_cast<unsigned>(c - 'A' + 10);
        else return std::nullopt;
        v = v * 16 + d;
    }
    return v;
}

}  // namespace

std::optional<PciAddress> PciAddress::parse(std::string_view text) {
    PciAddress a;
    const auto dot = text.rfind('.');
    if (dot == std::string_view::npos) return std::nullopt;
    const auto fn = parse_hex(text.substr(dot + 1), 1, 1);
    if (!fn || *fn > 7) return std::nullopt;
    const std::string_view head = text.substr(0, dot);
    const auto c2 = head.rfind(':');
    if (c2 == std::string_view::npos) return std::nullopt;
    const auto dev = parse_hex(head.substr(c2 + 1), 2, 2);
    if (!dev || *dev > 31) return std::nullopt;
    const std::string_view head2 = head.substr(0, c2);
    const auto c1 = head2.rfind(':');
    std::optional<std::uint32_t> bus, domain = 0;
    if (c1 == std::string_view::npos) {
        bus = parse_hex(head2, 2, 2);
    } else {
        bus = parse_hex(head2.substr(c1 + 1), 2, 2);
        domain = parse_hex(head2.substr(0, c1), 4, 8);
    }
    if (!bus || !domain) return std::nullopt;
    a.domain = *domain;
    a.bus = static_cast<std::uint8_t>(*bus);
    a.device = static_cast<std::uint8_t>(*dev);
    a.function = static_cast<std::uint8_t>(*fn);
    return a;
}

std::string PciAddress::to_string() const {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%04x:%02x:%02x.%x", domain, bus, device, function);
    return buf;
}

std::string normalize_bdf(std::string_view text) {
    const auto a = PciAddress::parse(text);
    if (!a) {
        throw Error("\"" + std::string(text) +
                    "\" is not a PCI address (expected domain:bus:device.function, e.g. 0000:03:00.0)");
    }
    return a->to_string();
}

}  // namespace vmm::vfio
