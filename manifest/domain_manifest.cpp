// Manifest parsing: one table entry per field (kFields), each with its parser and writer.
#include "manifest/domain_manifest.h"

#include "common/fd.h"
#include "manifest/device_fields.h"
#include "manifest/json_fields.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <vector>

namespace vmm {
namespace {

using nlohmann::json;
using namespace manifest;

struct ParseContext {
    std::filesystem::path base_dir;  // absolute
};

// One top-level field. `parse` sees the value only when the field is present; `write` adds
// the field to a document (or leaves it out when unset). `help` is the accepted form, quoted
// in "is required" messages.
struct FieldHandler {
    std::string_view name;
    bool required;
    std::string_view help;
    void (*parse)(const std::string& field, const json& value, const ParseContext& ctx,
                  DomainManifest& m);
    void (*write)(const DomainManifest& m, json& doc);
};

std::string resolve_existing_file(const std::string& field, const json& value, const ParseContext& ctx) {
    return manifest::resolve_existing_file(field, value, ctx.base_dir);
}

// real16 starts at cs:ip, so the entry must be below 1 MiB; protected32 runs with paging off,
// so image and entry must be 32-bit physical addresses (x86/cpu_state.h).
void check_flat_mode_limits(const FlatBootSpec& flat) {
    if (flat.mode == "real16" && flat.entry >= 0x100000) {
        throw ManifestError("flat.entry",
                            "must be below 0x100000 (1 MiB) in mode \"real16\", got " +
                                hex(flat.entry));
    }
    if (flat.mode == "protected32") {
        if (flat.load_address > 0xffffffff) {
            throw ManifestError("flat.load_address",
                                "must be below 4 GiB in mode \"protected32\", got " +
                                    hex(flat.load_address));
        }
        if (flat.entry > 0xffffffff) {
            throw ManifestError("flat.entry", "must be below 4 GiB in mode \"protected32\", got " +
                                                  hex(flat.entry));
        }
    }
}

FlatBootSpec parse_flat(const std::string& field, const json& value) {
    static const std::vector<std::string_view> kKnown = {"load_address", "entry", "mode"};
    if (!value.is_object()) {
        throw ManifestError(field,
                            "must be an object {\"load_address\", \"entry\", \"mode\"}, got " +
                                describe(value));
    }
    reject_unknown_fields(field, value, kKnown);
    FlatBootSpec flat;
    if (!value.contains("load_address")) {
        throw ManifestError(field + ".load_address", "is required: the guest-physical address "
                                                     "the image is loaded at");
    }
    flat.load_address = expect_address(field + ".load_address", value.at("load_address"));
    flat.entry = value.contains("entry") ? expect_address(field + ".entry", value.at("entry"))
                                         : flat.load_address;
    if (!value.contains("mode")) {
        throw ManifestError(field + ".mode",
                            "is required: one of \"real16\", \"protected32\", \"long64\"");
    }
    flat.mode = expect_enum(field + ".mode", value.at("mode"), {"real16", "protected32", "long64"});
    check_flat_mode_limits(flat);
    return flat;
}

double parse_cpu_quota(const std::string& field, const json& value) {
    // is_number() is false for booleans and strings; JSON has no NaN or infinity.
    if (!value.is_number() || !(value.get<double>() >= kMinCpuQuota && value.get<double>() <= kMaxCpuQuota)) {
        throw ManifestError(field, "must be a number of CPUs from 0.01 to 64 (1.5 = one and a half CPUs), got " +
                                       describe(value));
    }
    return value.get<double>();
}

// The field table. Order is the order of checks and of to_json output.
const std::vector<FieldHandler>& fields() {
    static const std::vector<FieldHandler> kFields = {
        {"name", true, "1 to 64 characters from A-Z a-z 0-9 . _ -",
         [](const std::string& f, const json& v, const ParseContext&, DomainManifest& m) {
             m.name = expect_string(f, v, "a domain name");
             validate_domain_name(m.name);
         },
         [](const DomainManifest& m, json& d) { d["name"] = m.name; }},
        {"hypervisor", false, "\"kvm\", \"xen\" or \"null\"",
         [](const std::string& f, const json& v, const ParseContext&, DomainManifest& m) {
             m.hypervisor = expect_enum(f, v, {"kvm", "xen", "null"});
         },
         [](const DomainManifest& m, json& d) { d["hypervisor"] = m.hypervisor; }},
        {"vcpus", false, "an integer from 1 to 64",
         [](const std::string& f, const json& v, const ParseContext&, DomainManifest& m) {
             m.vcpus = static_cast<unsigned>(expect_integer(f, v, 1, kMaxVcpus, ""));
         },
         [](const DomainManifest& m, json& d) { d["vcpus"] = m.vcpus; }},
        {"memory_mb", false, "an integer number of MiB from 2 to 1048576",
         [](const std::string& f, const json& v, const ParseContext&, DomainManifest& m) {
             m.memory_mb = expect_integer(f, v, kMinMemoryMb, kMaxMemoryMb, " (MiB)");
         },
         [](const DomainManifest& m, json& d) { d["memory_mb"] = m.memory_mb; }},
        {"kernel", true, "the path of the kernel image",
         [](const std::string& f, const json& v, const ParseContext& ctx, DomainManifest& m) {
             m.kernel = resolve_existing_file(f, v, ctx);
         },
         [](const DomainManifest& m, json& d) { d["kernel"] = m.kernel; }},
        {"initrd", false, "the path of an initial ramdisk",
         [](const std::string& f, const json& v, const ParseContext& ctx, DomainManifest& m) {
             m.initrd = resolve_existing_file(f, v, ctx);
         },
         [](const DomainManifest& m, json& d) {
             if (!m.initrd.empty()) d["initrd"] = m.initrd;
         }},
        {"cmdline", false, "a kernel command line of at most 4095 bytes",
         [](const std::string& f, const json& v, const ParseContext&, DomainManifest& m) {
             m.cmdline = expect_string(f, v, "a kernel command line");
             if (m.cmdline.size() > kMaxCmdlineLength) {
                 throw ManifestError(f, "must be at most 4095 bytes, got " +
                                            std::to_string(m.cmdline.size()) + " bytes");
             }
             if (m.cmdline.find('\0') != std::string::npos) {
                 throw ManifestError(f, "must not contain NUL bytes (the boot protocol passes a "
                                        "NUL-terminated string)");
             }
         },
         [](const DomainManifest& m, json& d) {
             if (!m.cmdline.empty()) d["cmdline"] = m.cmdline;
         }},
        {"flat", false, "an object {\"load_address\", \"entry\", \"mode\"}",
         [](const std::string& f, const json& v, const ParseContext&, DomainManifest& m) {
             m.flat = parse_flat(f, v);
         },
         [](const DomainManifest& m, json& d) {
             if (m.flat) {
                 d["flat"] = {{"load_address", hex(m.flat->load_address)},
                              {"entry", hex(m.flat->entry)},
                              {"mode", m.flat->mode}};
             }
         }},
        {"hide_hypervisor", false, "true or false",
         [](const std::string& f, const json& v, const ParseContext&, DomainManifest& m) {
             m.hide_hypervisor = expect_bool(f, v);
         },
         [](const DomainManifest& m, json& d) { d["hide_hypervisor"] = m.hide_hypervisor; }},
        {"hugepages", false, "true or false",
         [](const std::string& f, const json& v, const ParseContext&, DomainManifest& m) {
             m.hugepages = expect_bool(f, v);
         },
         [](const DomainManifest& m, json& d) { d["hugepages"] = m.hugepages; }},
        {"thp", false, "true or false",
         [](const std::string& f, const json& v, const ParseContext&, DomainManifest& m) {
             m.thp = expect_bool(f, v);
         },
         [](const DomainManifest& m, json& d) { d["thp"] = m.thp; }},
        {"start_paused", false, "true or false",
         [](const std::string& f, const json& v, const ParseContext&, DomainManifest& m) {
             m.start_paused = expect_bool(f, v);
         },
         [](const DomainManifest& m, json& d) { d["start_paused"] = m.start_paused; }},
        {"on_poweroff", false, "\"exit\" or \"pause\"",
         [](const std::string& f, const json& v, const ParseContext&, DomainManifest& m) {
             m.on_poweroff = expect_enum(f, v, {"exit", "pause"});
         },
         [](const DomainManifest& m, json& d) { d["on_poweroff"] = m.on_poweroff; }},
        {"on_reboot", false, "\"exit\" or \"restart\"",
         [](const std::string& f, const json& v, const ParseContext&, DomainManifest& m) {
             m.on_reboot = expect_enum(f, v, {"exit", "restart"});
         },
         [](const DomainManifest& m, json& d) { d["on_reboot"] = m.on_reboot; }},
        {"on_crash", false, "\"exit\" or \"pause\"",
         [](const std::string& f, const json& v, const ParseContext&, DomainManifest& m) {
             m.on_crash = expect_enum(f, v, {"exit", "pause"});
         },
         [](const DomainManifest& m, json& d) { d["on_crash"] = m.on_crash; }},
        {"cpu_quota", false, "a number of CPUs from 0.01 to 64",
         [](const std::string& f, const json& v, const ParseContext&, DomainManifest& m) {
             m.cpu_quota = parse_cpu_quota(f, v);
         },
         [](const DomainManifest& m, json& d) {
             if (m.cpu_quota) d["cpu_quota"] = *m.cpu_quota;
         }},
        {"jail", false, "{\"uid\": N, \"gid\": M}: run jailed as this uid/gid",
         [](const std::string& f, const json& v, const ParseContext&, DomainManifest& m) {
             if (!v.is_object()) throw ManifestError(f, "must be an object {\"uid\": N, \"gid\": M}, got " + describe(v));
             reject_unknown_fields(f, v, {"uid", "gid"});
             if (!v.contains("uid")) throw ManifestError(f + ".uid", "is required: the uid the jailed anchor runs as");
             // (uid_t)-1 means "unchanged" to setresuid: not an identity.
             constexpr std::uint64_t kMaxId = 0xfffffffeu;
             DomainManifest::JailIdentitySpec id;
             id.uid = static_cast<unsigned>(expect_integer(f + ".uid", v.at("uid"), 0, kMaxId, ""));
             id.gid = v.contains("gid") ? static_cast<unsigned>(expect_integer(f + ".gid", v.at("gid"), 0, kMaxId, ""))
                                        : id.uid;
             m.jail = id;
         },
         [](const DomainManifest& m, json& d) {
             if (m.jail) d["jail"] = {{"uid", m.jail->uid}, {"gid", m.jail->gid}};
         }},
        {"disks", false, "an array of {\"path\", \"readonly\", \"partuuid\", \"serial\"}",
         [](const std::string& f, const json& v, const ParseContext& ctx, DomainManifest& m) {
             m.disks = parse_disks(f, v, ctx.base_dir);
         },
         [](const DomainManifest& m, json& d) {
             if (m.disks.empty()) return;
             for (const auto& x : m.disks) d["disks"].push_back(manifest::to_json(x));
         }},
        {"nics", false, "an array of {\"tap\", \"mac\"}",
         [](const std::string& f, const json& v, const ParseContext&, DomainManifest& m) { m.nics = parse_nics(f, v); },
         [](const DomainManifest& m, json& d) {
             if (m.nics.empty()) return;
             for (const auto& x : m.nics) d["nics"].push_back(manifest::to_json(x));
         }},
        {"consoles", false, "an array of {\"kind\": \"pty\" | \"socket\", \"path\", \"name\"}",
         [](const std::string& f, const json& v, const ParseContext& ctx, DomainManifest& m) {
             m.consoles = parse_consoles(f, v, ctx.base_dir);
         },
         [](const DomainManifest& m, json& d) {
             if (m.consoles.empty()) return;
             for (const auto& x : m.consoles) d["consoles"].push_back(manifest::to_json(x));
         }},
        {"pci", false, "an array of {\"bdf\"} or {\"vendor\", \"device\", \"index\"}",
         [](const std::string& f, const json& v, const ParseContext&, DomainManifest& m) { m.pci = parse_pci(f, v); },
         [](const DomainManifest& m, json& d) {
             if (m.pci.empty()) return;
             for (const auto& x : m.pci) d["pci"].push_back(manifest::to_json(x));
         }},
    };
    return kFields;
}

std::vector<std::string_view> field_names() {
    std::vector<std::string_view> names;
    for (const FieldHandler& h : fields()) {
        names.push_back(h.name);
    }
    return names;
}

}  // namespace

ManifestError::ManifestError(std::string field_, const std::string& problem)
    : vmm::Error(field_.empty() ? "manifest: " + problem
                                : "manifest field \"" + field_ + "\": " + problem),
      field(std::move(field_)) {}

void validate_domain_name(const std::string& name) {
    static constexpr std::string_view kAccepted =
        "1 to 64 characters from A-Z a-z 0-9 . _ -, not starting with '-' or '.'";
    const auto fail = [&](const std::string& problem) {
        throw ManifestError("name", problem + "; accepted: " + std::string(kAccepted) +
                                        " (the name is used in file paths)");
    };
    if (name.empty()) {
        fail("must not be empty");
    }
    if (name.size() > kMaxNameLength) {
        fail("is " + std::to_string(name.size()) + " characters long, at most 64 are allowed");
    }
    if (name == "." || name == "..") {
        fail("must not be \".\" or \"..\" (directory references)");
    }
    for (std::size_t i = 0; i < name.size(); ++i) {
        const unsigned char c = static_cast<unsigned char>(name[i]);
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!ok) {
            fail("contains a forbidden character at position " + std::to_string(i) + " in " +
                 describe(json(name)));
        }
    }
    if (name.front() == '-' || name.front() == '.') {
        fail("must not start with '" + std::string(1, name.front()) + "', got " +
             describe(json(name)));
    }
}

DomainManifest parse_manifest(const json& doc, const std::string& base_dir) {
    if (!doc.is_object()) {
        throw ManifestError("", "the document must be a JSON object, got " +
                                    std::string(doc.type_name()));
    }
    reject_unknown_fields("", doc, field_names());

    std::error_code ec;
    ParseContext ctx{std::filesystem::absolute(base_dir.empty() ? "." : base_dir, ec)};
    if (ec) {
        throw ManifestError("", "cannot resolve base directory \"" + base_dir +
                                    "\": " + ec.message());
    }
    DomainManifest m;
    for (const FieldHandler& h : fields()) {
        const std::string name(h.name);
        const auto it = doc.find(name);
        if (it == doc.end()) {
            if (h.required) {
                throw ManifestError(name, "is required: " + std::string(h.help));
            }
            continue;
        }
        h.parse(name, *it, ctx, m);
    }
    m.raw = doc;
    return m;
}

json to_json(const DomainManifest& m) {
    json doc = json::object();
    for (const FieldHandler& h : fields()) {
        h.write(m, doc);
    }
    return doc;
}

DomainManifest load_manifest_file(const std::string& path) {
    // A manifest is a few KiB; the cap stops a wrong path (/dev/zero) from reading forever.
    constexpr std::size_t kMaxManifestBytes = 4 << 20;
    const auto fail = [&](const std::string& what, int err) {
        throw ManifestError("", what + " manifest file \"" + path + "\": " + std::strerror(err));
    };
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
        fail("cannot open", errno);
    }
    std::string text;
    char buf[16384];
    for (;;) {
        const ssize_t n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            fail("cannot read", errno);
        }
        if (n == 0) {
            break;
        }
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > kMaxManifestBytes) {
            fail("cannot read", EFBIG);
        }
    }
    const json doc = parse_json_text(text, path);
    const std::filesystem::path dir = std::filesystem::path(path).parent_path();
    return parse_manifest(doc, dir.empty() ? std::string(".") : dir.string());
}

}  // namespace vmm
