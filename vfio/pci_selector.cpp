// PCI device selectors (see pci_selector.h).
#include "vfio/pci_selector.h"

#include "vfio/pci_address.h"

#include <cstdio>

namespace vmm::vfio {

namespace {

std::string hex4(std::uint16_t v) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "%04x", v);
    return buf;
}

std::uint16_t parse_id(const nlohmann::json& entry, const std::string& where, const char* key) {
    const std::string field = where + "." + key;
    const auto& v = entry.at(key);
    if (!v.is_string()) throw PciSelectorError(field, "must be a string of 4 hex digits, e.g. \"1d0f\"");
    std::string s = v.get<std::string>();
    if (s.rfind("0x", 0) == 0 || s.rfind("0X", 0) == 0) s = s.substr(2);
    if (s.size() != 4) throw PciSelectorError(field, "\"" + v.get<std::string>() + "\" is not 4 hex digits");
    std::uint16_t id = 0;
    for (char c : s) {
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else throw PciSelectorError(field, "\"" + v.get<std::string>() + "\" is not 4 hex digits");
        id = static_cast<std::uint16_t>(id * 16 + d);
    }
    if (id == 0xffff) throw PciSelectorError(field, "ffff is not a valid ID (it is what an absent device reads)");
    return id;
}

}  // namespace

PciSelectorError::PciSelectorError(std::string f, const std::string& p)
    : vmm::Error("field \"" + f + "\": " + p), field(std::move(f)), problem(p) {}

std::string PciSelector::to_string() const {
    if (bdf) return *bdf;
    return hex4(vendor) + ":" + hex4(device) + " #" + std::to_string(index);
}

PciSelector parse_pci_selector(const nlohmann::json& entry, const std::string& where) {
    if (!entry.is_object()) {
        throw PciSelectorError(where, "must be an object: {\"bdf\": \"0000:03:00.0\"} or "
                                      "{\"vendor\": \"1d0f\", \"device\": \"0065\", \"index\": 0}");
    }
    for (const auto& [key, value] : entry.items()) {
        if (key != "bdf" && key != "vendor" && key != "device" && key != "index") {
            throw PciSelectorError(where + "." + key, "unknown field (accepted: bdf, or vendor, device, index)");
        }
    }
    PciSelector s;
    const bool by_id = entry.contains("vendor") || entry.contains("device") || entry.contains("index");
    if (entry.contains("bdf")) {
        if (by_id) {
            const char* other = entry.contains("vendor") ? "vendor" : entry.contains("device") ? "device" : "index";
            throw PciSelectorError(where + "." + other, "cannot be combined with bdf: give one or the other");
        }
        const auto& v = entry.at("bdf");
        if (!v.is_string()) throw PciSelectorError(where + ".bdf", "must be a string such as \"0000:03:00.0\"");
        const auto a = PciAddress::parse(v.get<std::string>());
        if (!a) {
            throw PciSelectorError(where + ".bdf", "\"" + v.get<std::string>() +
                                                       "\" is not a PCI address (domain:bus:device.function, "
                                                       "e.g. 0000:03:00.0)");
        }
        s.bdf = a->to_string();
        return s;
    }
    if (!entry.contains("vendor")) throw PciSelectorError(where + ".vendor", "missing (give bdf, or vendor and device)");
    if (!entry.contains("device")) throw PciSelectorError(where + ".device", "missing (vendor needs device)");
    s.vendor = parse_id(entry, where, "vendor");
    s.device = parse_id(entry, where, "device");
    if (entry.contains("index")) {
        const auto& v = entry.at("index");
        if (!v.is_number_integer() || v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > 0xffff) {
            throw PciSelectorError(where + ".index", "must be an integer from 0 (the first match in address order)");
        }
        s.index = static_cast<unsigned>(v.get<std::int64_t>());
    }
    return s;
}

nlohmann::json to_json(const PciSelector& s) {
    if (s.bdf) return {{"bdf", *s.bdf}};
    return {{"vendor", hex4(s.vendor)}, {"device", hex4(s.device)}, {"index", s.index}};
}

std::string resolve_pci_selector(const PciTopology& topology, const PciSelector& s) {
    if (s.bdf) {
        if (!topology.find(*s.bdf)) throw Error("PCI device " + *s.bdf + " not found on this host");
        return *s.bdf;
    }
    unsigned seen = 0;
    for (const auto& d : topology.devices()) {  // sorted by address
        if (d.vendor != s.vendor || d.device != s.device) continue;
        if (seen == s.index) return d.bdf;
        ++seen;
    }
    throw Error("PCI device " + s.to_string() + " not found on this host: " + std::to_string(seen) + " device" +
                (seen == 1 ? "" : "s") + " with ID " + hex4(s.vendor) + ":" + hex4(s.device) +
                (seen ? " (indexes 0.." + std::to_string(seen - 1) + ")" : ""));
}

}  // namespace vmm::vfio
