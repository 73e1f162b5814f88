#include "vmmd/spool_watcher.h"

#include "common/error.h"
#include "common/log.h"

#include <sys/inotify.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace vmm::vmmd {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {
auto log() { return logger("spool"); }

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}
}  // namespace

std::string spool_domain_name(const std::string& file_name) {
    constexpr std::string_view ext = ".json";
    if (file_name.size() <= ext.size() || file_name[0] == '.') return "";
    if (file_name.compare(file_name.size() - ext.size(), ext.size(), ext) != 0) return "";
    return file_name.substr(0, file_name.size() - ext.size());
}

SpoolWatcher::SpoolWatcher(boost::asio::io_context& io, Daemon& daemon, std::string dir)
    : daemon_(daemon), dir_(std::move(dir)), inotify_(io) {
    fs::create_directories(dir_);
    const int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) throw_errno("inotify_init1");
    inotify_.assign(fd);
    if (::inotify_add_watch(fd, dir_.c_str(), IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE) < 0)
        throw_errno("inotify_add_watch " + dir_);
    read_events();
}

std::string SpoolWatcher::last_error(const std::string& name) const {
    auto it = errors_.find(name);
    return it == errors_.end() ? "" : it->second;
}

void SpoolWatcher::read_events() {
    inotify_.async_read_some(boost::asio::buffer(buf_), [this](const boost::system::error_code& ec, std::size_t n) {
        if (ec) {
            if (ec != boost::asio::error::operation_aborted) log()->error("inotify on {}: {}", dir_, ec.message());
            return;
        }
        for (std::size_t off = 0; off + sizeof(inotify_event) <= n;) {
            // The kernel writes whole, aligned inotify_event records followed by their names.
            const auto* ev = reinterpret_cast<const inotify_event*>(buf_ + off);
            off += sizeof(inotify_event) + ev->len;
            if (ev->len == 0) continue;
            const std::string name = spool_domain_name(ev->name);
            if (name.empty()) continue;
            if (ev->mask & (IN_CLOSE_WRITE | IN_MOVED_TO)) file_changed(name);
            if (ev->mask & (IN_DELETE | IN_MOVED_FROM)) file_removed(name);
        }
        read_events();
    });
}

void SpoolWatcher::scan() {
    for (const auto& entry : fs::directory_iterator(dir_)) {
        const std::string name = spool_domain_name(entry.path().filename().string());
        if (name.empty() || !entry.is_regular_file()) continue;
        const DomainManifest* running = daemon_.manifest(name);
        const auto state = daemon_.state(name);
        if (running && state && is_active(*state)) {
            // Adopted: the file may have changed while vmmd was away.
            const std::string text = read_text(path(name));
            try {
                const DomainManifest m = load_manifest_file(path(name));
                if (to_json(m) == to_json(*running)) {
                    known_[name] = text;
                    continue;
                }
                log()->info("{}: {} changed while vmmd was away", name, path(name));
            } catch (const std::exception& e) {
                errors_[name] = e.what();
                log()->error("{}: {}: {}", name, path(name), e.what());
                continue;
            }
        }
        file_changed(name);
    }
}

void SpoolWatcher::start(const std::string& name, const DomainManifest& manifest) {
    try {
        daemon_.start(manifest, std::nullopt, [this, name](const json& r) {
            if (r.value("ok", false)) {
                errors_.erase(name);
                log()->info("{}: running", name);
            } else {
                errors_[name] = r.value("error", "");
                log()->error("{}: {}", name, errors_[name]);
            }
        });
    } catch (const std::exception& e) {
        errors_[name] = e.what();
        log()->error("{}: {}: {}", name, path(name), e.what());
    }
}

void SpoolWatcher::file_changed(const std::string& name) {
    const std::string text = read_text(path(name));
    auto known = known_.find(name);
    const auto state = daemon_.state(name);
    const bool active = state && is_active(*state);
    if (known != known_.end() && known->second == text && active) return;  // rewritten unchanged
    DomainManifest manifest;
    try {
        manifest = load_manifest_file(path(name));
        if (manifest.name != name)
            throw ManifestError("name", "is \"" + manifest.name + "\" but the spool file is " + name + ".json");
    } catch (const std::exception& e) {
        errors_[name] = e.what();
        log()->error("{}: {}: {}", name, path(name), e.what());
        return;
    }
    known_[name] = text;
    if (!active) {
        log()->info("{}: {} appeared; starting", name, path(name));
        start(name, manifest);
        return;
    }
    log()->info("{}: {} changed; restarting", name, path(name));
    hv::StopOptions opts;
    opts.timeout = daemon_.config().stop_timeout;
    try {
        daemon_.stop(name, opts, [this, name, manifest](const json&) {
            // Start what the file says now: it may have changed again meanwhile.
            if (known_.count(name)) start(name, manifest);
        });
    } catch (const std::exception& e) {
        // Stopping already: the restart waits for no one; start once it has stopped.
        log()->warn("{}: {}", name, e.what());
    }
}

void SpoolWatcher::file_removed(const std::string& name) {
    known_.erase(name);
    errors_.erase(name);
    const auto state = daemon_.state(name);
    if (!state || !is_active(*state) || *state == DomainState::Stopping) return;
    log()->info("{}: {} removed; stopping", name, path(name));
    hv::StopOptions opts;
    opts.timeout = daemon_.config().stop_timeout;
    try {
        daemon_.stop(name, opts, [name](const json& r) {
            log()->info("{}: stopped ({})", name, r.value("ok", false) ? "ok" : r.value("error", ""));
        });
    } catch (const std::exception& e) {
        log()->error("{}: {}", name, e.what());
    }
}

}  // namespace vmm::vmmd
