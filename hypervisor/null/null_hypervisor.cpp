#include "hypervisor/null/null_hypervisor.h"

#include "common/error.h"
#include "common/log.h"

#include <boost/asio/post.hpp>

#include <filesystem>
#include <fstream>

namespace vmm::hv {

namespace fs = std::filesystem;
using nlohmann::json;

NullHypervisor::NullHypervisor(boost::asio::io_context& io, std::string run_dir)
    : io_(io), run_dir_(std::move(run_dir)) {}

Capabilities NullHypervisor::capabilities() const {
    Capabilities c;
    c.pause = true;
    c.adoption = !run_dir_.empty();
    return c;
}

NullHypervisor::Entry& NullHypervisor::entry(const std::string& name) {
    auto it = domains_.find(name);
    if (it == domains_.end()) throw Error("null: no domain '" + name + "'");
    return it->second;
}

const NullHypervisor::Entry& NullHypervisor::entry(const std::string& name) const {
    return const_cast<NullHypervisor*>(this)->entry(name);
}

std::string NullHypervisor::dir(const std::string& name) const { return run_dir_ + "/null/" + name; }

void NullHypervisor::persist(const std::string& name, const Entry& e) const {
    if (run_dir_.empty()) return;
    fs::create_directories(dir(name));
    const json doc = {{"manifest", to_json(e.manifest)},
                      {"started_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                         e.started.time_since_epoch()).count()},
                      {"paused", e.paused}};
    const std::string tmp = dir(name) + "/domain.json.tmp";
    {
        std::ofstream out(tmp);
        out << doc.dump() << "\n";
        if (!out) throw Error("null: cannot write " + tmp);
    }
    fs::rename(tmp, dir(name) + "/domain.json");
}

void NullHypervisor::setup(const DomainManifest& manifest) {
    auto it = domains_.find(manifest.name);
    if (it != domains_.end() && it->second.running)
        throw Error("null: domain '" + manifest.name + "' is running");
    domains_[manifest.name] = Entry{manifest, false, false, {}};
}

void NullHypervisor::start(const std::string& name) {
    Entry& e = entry(name);
    if (e.running) throw Error("null: domain '" + name + "' is already running");
    e.running = true;
    e.paused = e.manifest.start_paused;
    e.started = std::chrono::system_clock::now();
    persist(name, e);
    boost::asio::post(io_, [this, name] { emit({DomainEvent::Kind::Running, name, -1, {}}); });
}

void NullHypervisor::stop(const std::string& name, const StopOptions& options) {
    Entry& e = entry(name);
    if (!e.running) throw Error("null: domain '" + name + "' is not running");
    e.running = false;
    e.paused = false;
    cleanup(name);
    ExitInfo exit;
    exit.status = 0;
    exit.detail = options.force ? "destroyed" : "powered off";
    boost::asio::post(io_, [this, name, exit] { emit({DomainEvent::Kind::Exited, name, -1, exit}); });
}

void NullHypervisor::pause(const std::string& name) {
    Entry& e = entry(name);
    if (!e.running) throw Error("null: domain '" + name + "' is not running");
    e.paused = true;
    persist(name, e);
}

void NullHypervisor::resume(const std::string& name) {
    Entry& e = entry(name);
    if (!e.running) throw Error("null: domain '" + name + "' is not running");
    e.paused = false;
    persist(name, e);
}

void NullHypervisor::remove(const std::string& name) {
    auto it = domains_.find(name);
    if (it == domains_.end()) return;
    if (it->second.running) throw Error("null: domain '" + name + "' is running");
    domains_.erase(it);
}

void NullHypervisor::cleanup(const std::string& name) {
    if (run_dir_.empty()) return;
    std::error_code ec;
    fs::remove(dir(name) + "/domain.json", ec);
    fs::remove(dir(name), ec);  // only if empty: foreign files stay
}

DomainStatus NullHypervisor::info(const std::string& name) const {
    const Entry& e = entry(name);
    DomainStatus s;
    s.paused = e.paused;
    if (e.running && !run_dir_.empty()) s.state_dir = dir(name);
    return s;
}

DomainUsage NullHypervisor::usage(const std::string& name) const {
    DomainUsage u;
    u.available_memory_mb = entry(name).manifest.memory_mb;
    return u;
}

std::vector<AdoptedDomain> NullHypervisor::adopt() {
    std::vector<AdoptedDomain> found;
    if (run_dir_.empty() || !fs::is_directory(run_dir_ + "/null")) return found;
    for (const auto& d : fs::directory_iterator(run_dir_ + "/null")) {
        const std::string name = d.path().filename().string();
        const std::string file = d.path().string() + "/domain.json";
        if (!fs::exists(file)) continue;
        try {
            std::ifstream in(file);
            const json doc = json::parse(in);
            Entry e;
            e.manifest = parse_manifest(doc.at("manifest"), "/");
            if (e.manifest.name != name) throw Error("its manifest names '" + e.manifest.name + "'");
            e.running = true;
            e.paused = doc.value("paused", false);
            e.started = std::chrono::system_clock::time_point(std::chrono::milliseconds(doc.at("started_ms").get<std::int64_t>()));
            found.push_back({e.manifest, -1, e.started});
            domains_[name] = std::move(e);
        } catch (const std::exception& ex) {
            logger("null")->warn("{}: removing unreadable record {}: {}", name, file, ex.what());
            cleanup(name);
        }
    }
    return found;
}

}  // namespace vmm::hv
