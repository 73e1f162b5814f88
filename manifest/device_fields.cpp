#include "manifest/device_fields.h"

#include "manifest/json_fields.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>

namespace vmm::manifest {
namespace {

using nlohmann::json;

const json& expect_array(const std::string& field, const json& value, std::size_t max, std::string_view what) {
    if (!value.is_array()) throw ManifestError(field, "must be an array of " + std::string(what) + ", got " + describe(value));
    if (value.size() > max)
        throw ManifestError(field, "has " + std::to_string(value.size()) + " entries, at most " + std::to_string(max) +
                                       " are allowed");
    return value;
}

const json& expect_object(const std::string& field, const json& value, std::string_view what) {
    if (!value.is_object()) throw ManifestError(field, "must be an object " + std::string(what) + ", got " + describe(value));
    return value;
}

bool is_hex(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// 8-4-4-4-12 hex digits.
std::string expect_uuid(const std::string& field, const json& value) {
    const std::string text = expect_string(field, value, "a GPT partition UUID");
    bool ok = text.size() == 36;
    for (std::size_t i = 0; ok && i < text.size(); ++i) {
        const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        ok = dash ? text[i] == '-' : is_hex(text[i]);
    }
    if (!ok)
        throw ManifestError(field, "must be a UUID like \"0fc63daf-8483-4772-8e79-3d69d8477de4\", got " + describe(value));
    return lower(text);
}

std::uint16_t expect_pci_id(const std::string& field, const json& value) {
    const std::string text = expect_string(field, value, "a 4-digit hex PCI ID");
    std::string digits = text;
    if (digits.rfind("0x", 0) == 0 || digits.rfind("0X", 0) == 0) digits = digits.substr(2);
    if (digits.size() != 4 || !std::all_of(digits.begin(), digits.end(), is_hex))
        throw ManifestError(field, "must be a 4-digit hex PCI ID such as \"1d0f\", got " + describe(value));
    return static_cast<std::uint16_t>(std::stoul(digits, nullptr, 16));
}

std::string expect_mac(const std::string& field, const json& value) {
    const std::string text = lower(expect_string(field, value, "a MAC address"));
    bool ok = text.size() == 17;
    for (std::size_t i = 0; ok && i < text.size(); ++i) ok = (i % 3 == 2) ? text[i] == ':' : is_hex(text[i]);
    if (!ok) throw ManifestError(field, "must be a MAC address like \"52:54:00:12:34:56\", got " + describe(value));
    const unsigned first = static_cast<unsigned>(std::stoul(text.substr(0, 2), nullptr, 16));
    if (first & 1) throw ManifestError(field, "must be a unicast MAC address (the first byte is even), got " + describe(value));
    if (text == "00:00:00:00:00:00") throw ManifestError(field, "must not be all zeros");
    return text;
}

// Linux's dev_valid_name: 1..15 bytes, no '/', ':' or whitespace, not "." or "..".
std::string expect_ifname(const std::string& field, const json& value) {
    const std::string text = expect_string(field, value, "a tap interface name");
    bool ok = !text.empty() && text.size() <= 15 && text != "." && text != "..";
    for (char c : text) ok = ok && c != '/' && c != ':' && !std::isspace(static_cast<unsigned char>(c)) && c != '\0';
    if (!ok)
        throw ManifestError(field, "must be an interface name of 1 to 15 characters without '/', ':' or spaces, got " +
                                       describe(value));
    return text;
}

}  // namespace

std::string resolve_existing_file(const std::string& field, const json& value, const std::filesystem::path& base_dir) {
    const std::string text = expect_string(field, value, "a file path");
    if (text.empty()) throw ManifestError(field, "must be a non-empty file path, got \"\"");
    if (text.find('\0') != std::string::npos)
        throw ManifestError(field, "must be a file path without NUL bytes, got " + describe(value));
    std::filesystem::path path(text);
    if (path.is_relative()) path = base_dir / path;
    path = path.lexically_normal();
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        const int err = errno;
        throw ManifestError(field, "cannot use file \"" + path.string() + "\": " + std::strerror(err) +
                                       " (relative paths are resolved against \"" + base_dir.string() + "\")");
    }
    if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
        throw ManifestError(field, "\"" + path.string() + "\" is not a regular file or block device");
    return path.string();
}

std::vector<DiskSpec> parse_disks(const std::string& field, const json& value, const std::filesystem::path& base_dir) {
    std::vector<DiskSpec> disks;
    std::set<std::string> seen;
    for (const json& entry : expect_array(field, value, kMaxDisks, "disks {\"path\", \"readonly\", \"partuuid\", \"serial\"}")) {
        const std::string f = field + "[" + std::to_string(disks.size()) + "]";
        expect_object(f, entry, "{\"path\", \"readonly\", \"partuuid\", \"serial\"}");
        reject_unknown_fields(f, entry, {"path", "readonly", "partuuid", "serial"});
        if (!entry.contains("path")) throw ManifestError(f + ".path", "is required: the disk image or block device");
        DiskSpec d;
        d.path = resolve_existing_file(f + ".path", entry.at("path"), base_dir);
        if (entry.contains("readonly")) d.readonly = expect_bool(f + ".readonly", entry.at("readonly"));
        if (entry.contains("partuuid")) d.partuuid = expect_uuid(f + ".partuuid", entry.at("partuuid"));
        if (entry.contains("serial")) {
            d.serial = expect_string(f + ".serial", entry.at("serial"), "a disk serial");
            if (d.serial.size() > 20) throw ManifestError(f + ".serial", "must be at most 20 bytes (VIRTIO_BLK_ID_BYTES)");
        }
        // The same image twice would be two writers on one file.
        const std::string key = d.path + "#" + d.partuuid;
        if (!seen.insert(key).second)
            throw ManifestError(f + ".path", "\"" + d.path + "\" is already used by another disk of this domain");
        disks.push_back(std::move(d));
    }
    return disks;
}

std::vector<NicSpec> parse_nics(const std::string& field, const json& value) {
    std::vector<NicSpec> nics;
    std::set<std::string> taps, macs;
    for (const json& entry : expect_array(field, value, kMaxNics, "NICs {\"tap\", \"mac\"}")) {
        const std::string f = field + "[" + std::to_string(nics.size()) + "]";
        expect_object(f, entry, "{\"tap\", \"mac\"}");
        reject_unknown_fields(f, entry, {"tap", "mac"});
        if (!entry.contains("tap")) throw ManifestError(f + ".tap", "is required: the host tap interface name");
        NicSpec n;
        n.tap = expect_ifname(f + ".tap", entry.at("tap"));
        if (entry.contains("mac")) n.mac = expect_mac(f + ".mac", entry.at("mac"));
        if (!taps.insert(n.tap).second) throw ManifestError(f + ".tap", "\"" + n.tap + "\" is already used by another NIC");
        if (!n.mac.empty() && !macs.insert(n.mac).second)
            throw ManifestError(f + ".mac", "\"" + n.mac + "\" is already used by another NIC");
        nics.push_back(std::move(n));
    }
    return nics;
}

std::vector<ConsoleSpec> parse_consoles(const std::string& field, const json& value, const std::filesystem::path& base_dir) {
    std::vector<ConsoleSpec> consoles;
    for (const json& entry : expect_array(field, value, kMaxConsoles, "consoles {\"kind\", \"path\", \"name\"}")) {
        const std::string f = field + "[" + std::to_string(consoles.size()) + "]";
        expect_object(f, entry, "{\"kind\": \"pty\" | \"socket\", \"path\", \"name\"}");
        reject_unknown_fields(f, entry, {"kind", "path", "name"});
        ConsoleSpec c;
        if (entry.contains("kind")) c.kind = expect_enum(f + ".kind", entry.at("kind"), {"pty", "socket"});
        if (c.kind == "socket") {
            if (!entry.contains("path")) throw ManifestError(f + ".path", "is required for kind \"socket\": the unix socket path");
            std::filesystem::path p(expect_string(f + ".path", entry.at("path"), "a unix socket path"));
            if (p.empty()) throw ManifestError(f + ".path", "must not be empty");
            if (p.is_relative()) p = base_dir / p;
            c.path = p.lexically_normal().string();
            if (c.path.size() >= 108) throw ManifestError(f + ".path", "is longer than a unix socket path may be (107 bytes)");
        } else if (entry.contains("path")) {
            throw ManifestError(f + ".path", "is only for kind \"socket\"; a pty's path is chosen by the kernel");
        }
        if (entry.contains("name")) {
            c.name = expect_string(f + ".name", entry.at("name"), "a port name");
            // 127: virtio_console::kMaxPortName (the manifest does not depend on the device model).
            static constexpr std::string_view kAccepted = "1 to 127 characters from A-Z a-z 0-9 . _ - :";
            if (c.name.empty() || c.name.size() > 127 ||
                !std::all_of(c.name.begin(), c.name.end(), [](char ch) {
                    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '_' || ch == '-' || ch == ':';
                }))
                throw ManifestError(f + ".name", "\"" + c.name + "\" is not a port name; accepted: " + std::string(kAccepted) +
                                                     " (the guest's /dev/virtio-ports/<name>)");
            for (const ConsoleSpec& other : consoles)
                if (other.name == c.name) throw ManifestError(f + ".name", "\"" + c.name + "\" is already used by another console");
        }
        consoles.push_back(std::move(c));
    }
    return consoles;
}

std::vector<PciSpec> parse_pci(const std::string& field, const json& value) {
    std::vector<PciSpec> devices;
    for (const json& entry : expect_array(field, value, kMaxPciDevices, "{\"bdf\"} or {\"vendor\", \"device\", \"index\"}")) {
        const std::string f = field + "[" + std::to_string(devices.size()) + "]";
        expect_object(f, entry, "{\"bdf\"} or {\"vendor\", \"device\", \"index\"}");
        reject_unknown_fields(f, entry, {"bdf", "vendor", "device", "index"});
        PciSpec p;
        if (entry.contains("bdf")) {
            if (entry.contains("vendor") || entry.contains("device") || entry.contains("index"))
                throw ManifestError(f, "give either \"bdf\" or \"vendor\"+\"device\"(+\"index\"), not both");
            p.bdf = normalize_bdf(f + ".bdf", expect_string(f + ".bdf", entry.at("bdf"), "a PCI address"));
        } else {
            if (!entry.contains("vendor") || !entry.contains("device"))
                throw ManifestError(f, "needs \"bdf\" (\"0000:03:00.0\") or both \"vendor\" and \"device\" (\"1d0f\", \"0065\")");
            p.vendor = expect_pci_id(f + ".vendor", entry.at("vendor"));
            p.device = expect_pci_id(f + ".device", entry.at("device"));
            if (entry.contains("index")) p.index = static_cast<unsigned>(expect_integer(f + ".index", entry.at("index"), 0, 255, ""));
        }
        for (const PciSpec& other : devices)
            if (other == p) throw ManifestError(f, "names the same device as an earlier entry");
        devices.push_back(std::move(p));
    }
    return devices;
}

json to_json(const DiskSpec& d) {
    json j = {{"path", d.path}, {"readonly", d.readonly}};
    if (!d.partuuid.empty()) j["partuuid"] = d.partuuid;
    if (!d.serial.empty()) j["serial"] = d.serial;
    return j;
}
json to_json(const NicSpec& n) {
    json j = {{"tap", n.tap}};
    if (!n.mac.empty()) j["mac"] = n.mac;
    return j;
}
json to_json(const ConsoleSpec& c) {
    json j = {{"kind", c.kind}};
    if (!c.path.empty()) j["path"] = c.path;
    if (!c.name.empty()) j["name"] = c.name;
    return j;
}
json to_json(const PciSpec& p) {
    if (!p.bdf.empty()) return {{"bdf", p.bdf}};
    char v[8], d[8];
    std::snprintf(v, sizeof v, "%04x", p.vendor);
    std::snprintf(d, sizeof d, "%04x", p.device);
    return {{"vendor", v}, {"device", d}, {"index", p.index}};
}

}  // namespace vmm::manifest

namespace vmm {

std::string normalize_bdf(const std::string& field, const std::string& text) {
    // [DDDD:]BB:DD.F: domain 16 bits, bus 8, device 5 (0..1f), function 3 (0..7).
    unsigned domain = 0, bus = 0, dev = 0, fn = 0;
    int used = 0;
    const std::string t = manifest::lower(text);
    bool ok = false;
    auto all_hex = [&](std::size_t from, std::size_t len) {
        for (std::size_t i = from; i < from + len; ++i)
            if (!manifest::is_hex(t[i])) return false;
        return true;
    };
    if (t.size() == 12 && t[4] == ':' && t[7] == ':' && t[10] == '.' && all_hex(0, 4) && all_hex(5, 2) && all_hex(8, 2) &&
        std::isdigit(static_cast<unsigned char>(t[11]))) {
        ok = std::sscanf(t.c_str(), "%4x:%2x:%2x.%1u%n", &domain, &bus, &dev, &fn, &used) == 4 && used == 12;
    } else if (t.size() == 7 && t[2] == ':' && t[5] == '.' && all_hex(0, 2) && all_hex(3, 2) &&
               std::isdigit(static_cast<unsigned char>(t[6]))) {
        ok = std::sscanf(t.c_str(), "%2x:%2x.%1u%n", &bus, &dev, &fn, &used) == 3 && used == 7;
    }
    if (!ok || dev > 0x1f || fn > 7)
        throw ManifestError(field, "must be a PCI address \"DDDD:BB:DD.F\" (device 00-1f, function 0-7), got \"" + text + "\"");
    char out[16];
    std::snprintf(out, sizeof out, "%04x:%02x:%02x.%u", domain, bus, dev, fn);
    return out;
}

}  // namespace vmm
