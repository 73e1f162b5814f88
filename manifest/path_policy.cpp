#include "manifest/path_policy.h"

#include <filesystem>

namespace vmm {

namespace fs = std::filesystem;

namespace {

fs::path resolve(const std::string& p) {
    std::error_code ec;
    fs::path r = fs::weakly_canonical(fs::path(p), ec);
    return ec ? fs::path(p).lexically_normal() : r;
}

bool inside(const fs::path& path, const fs::path& dir) {
    auto d = dir.begin(), p = path.begin();
    for (; d != dir.end(); ++d, ++p) {
        if (d->empty()) continue;  // a trailing separator
        if (p == path.end() || *p != *d) return false;
    }
    return true;
}

}  // namespace

void check_manifest_paths(const DomainManifest& m, const std::vector<std::string>& allowed_dirs) {
    if (allowed_dirs.empty()) return;
    std::vector<fs::path> dirs;
    std::string listed;
    for (const auto& d : allowed_dirs) {
        if (d.empty() || d[0] != '/') throw ManifestError("--allow-dir", "\"" + d + "\" is not an absolute directory");
        dirs.push_back(resolve(d));
        listed += (listed.empty() ? "" : ", ") + dirs.back().string();
    }
    const auto check = [&](const std::string& field, const std::string& path) {
        if (path.empty()) return;
        const fs::path r = resolve(path);
        for (const auto& d : dirs)
            if (inside(r, d)) return;
        throw ManifestError(field, "\"" + path + "\"" + (r.string() != path ? " (" + r.string() + ")" : "") +
                                       " is outside the allowed directories (" + listed + ")");
    };
    check("kernel", m.kernel);
    check("initrd", m.initrd);
    for (std::size_t i = 0; i < m.disks.size(); ++i) check("disks[" + std::to_string(i) + "].path", m.disks[i].path);
    for (std::size_t i = 0; i < m.consoles.size(); ++i)
        if (m.consoles[i].kind == "socket") check("consoles[" + std::to_string(i) + "].path", m.consoles[i].path);
}

}  // namespace vmm
