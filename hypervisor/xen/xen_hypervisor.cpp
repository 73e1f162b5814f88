#include "hypervisor/xen/xen_hypervisor.h"

#include "common/error.h"
#include "common/log.h"
#include "hypervisor/command.h"
#include "hypervisor/xen/xl_config.h"

#include <boost/asio/post.hpp>

#include <algorithm>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace vmm::hv::xen {

namespace fs = std::filesystem;

namespace {
auto log() { return logger("xen"); }
}  // namespace

std::vector<XlDomain> parse_xl_list(const std::string& text) {
    std::vector<XlDomain> out;
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        std::istringstream f(line);
        XlDomain d;
        std::string domid;
        if (!(f >> d.name >> domid >> d.memory_mb >> d.vcpus >> d.state >> d.cpu_seconds)) continue;  // header
        try {
            d.domid = std::stoi(domid);
        } catch (const std::exception&) {
            continue;
        }
        out.push_back(d);
    }
    return out;
}

XenHypervisor::XenHypervisor(boost::asio::io_context& io, XenConfig config)
    : io_(io), config_(std::move(config)), poll_timer_(io) {}

Capabilities XenHypervisor::capabilities() const {
    Capabilities c;
    c.pause = c.pci_passthrough = c.adoption = c.usage = true;
    return c;
}

XenHypervisor::Domain& XenHypervisor::domain(const std::string& name) const {
    auto it = domains_.find(name);
    if (it == domains_.end()) throw Error("xen: no domain '" + name + "'");
    return const_cast<Domain&>(it->second);
}

std::string XenHypervisor::xl(const std::vector<std::string>& args) const {
    std::vector<std::string> argv = {config_.xl_path};
    argv.insert(argv.end(), args.begin(), args.end());
    const CommandResult r = run_command(argv);
    if (r.status != 0) {
        std::string cmd;
        for (const auto& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
        std::string err = r.err;
        while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.pop_back();
        throw Error("xen: `" + cmd + "` failed with status " + std::to_string(r.status) + (err.empty() ? "" : ": " + err));
    }
    return r.out;
}

std::vector<XlDomain> XenHypervisor::list() const { return parse_xl_list(xl({"list"})); }

void XenHypervisor::setup(const DomainManifest& manifest) {
    auto it = domains_.find(manifest.name);
    if (it != domains_.end() && it->second.running) throw Error("xen: domain '" + manifest.name + "' is running");
    const std::string cfg = make_xl_config(manifest);
    fs::create_directories(dir(manifest.name));
    {
        std::ofstream out(config_file(manifest.name));
        out << cfg;
        std::ofstream m(dir(manifest.name) + "/manifest.json");
        m << to_json(manifest).dump(2) << "\n";
        if (!out || !m) throw Error("xen: cannot write " + dir(manifest.name));
    }
    Domain& d = domains_[manifest.name];
    d.manifest = manifest;
    d.running = d.paused = d.stop_requested = false;
}

void XenHypervisor::start(const std::string& name) {
    Domain& d = domain(name);
    if (d.running) throw Error("xen: domain '" + name + "' is already running");
    std::vector<std::string> args = {"create"};
    if (d.manifest.start_paused) args.push_back("-p");
    args.push_back(config_file(name));
    xl(args);
    d.running = true;
    d.paused = d.manifest.start_paused;
    d.stop_requested = false;
    int domid = -1;
    try {
        domid = std::stoi(xl({"domid", name}));
    } catch (const std::exception&) {
    }
    boost::asio::post(io_, [this, name, domid] { emit({DomainEvent::Kind::Running, name, domid, {}}); });
    arm_poll();
}

void XenHypervisor::stop(const std::string& name, const StopOptions& options) {
    Domain& d = domain(name);
    if (!d.running) throw Error("xen: domain '" + name + "' is not running");
    d.stop_requested = true;
    if (options.force) {
        xl({"destroy", name});
    } else {
        xl({"shutdown", name});
        d.stop_timer = std::make_unique<boost::asio::steady_timer>(io_, options.timeout);
        d.stop_timer->async_wait([this, name](const boost::system::error_code& ec) {
            if (ec) return;
            auto it = domains_.find(name);
            if (it == domains_.end() || !it->second.running) return;
            log()->info("{}: still running after the shutdown timeout; destroying", name);
            try {
                xl({"destroy", name});
            } catch (const std::exception& e) {
                log()->warn("{}: {}", name, e.what());
            }
            poll();
        });
    }
    boost::asio::post(io_, [this] { poll(); });
}

void XenHypervisor::pause(const std::string& name) {
    Domain& d = domain(name);
    if (!d.running) throw Error("xen: domain '" + name + "' is not running");
    xl({"pause", name});
    d.paused = true;
}

void XenHypervisor::resume(const std::string& name) {
    Domain& d = domain(name);
    if (!d.running) throw Error("xen: domain '" + name + "' is not running");
    xl({"unpause", name});
    d.paused = false;
}

void XenHypervisor::remove(const std::string& name) {
    auto it = domains_.find(name);
    if (it == domains_.end()) return;
    if (it->second.running) throw Error("xen: domain '" + name + "' is running");
    domains_.erase(it);
    cleanup(name);
}

void XenHypervisor::cleanup(const std::string& name) {
    std::error_code ec;
    fs::remove(config_file(name), ec);
    fs::remove(dir(name) + "/manifest.json", ec);
    fs::remove(dir(name), ec);
}

DomainStatus XenHypervisor::info(const std::string& name) const {
    const Domain& d = domain(name);
    DomainStatus s;
    s.paused = d.paused;
    if (d.running) s.state_dir = dir(name);
    return s;
}

DomainUsage XenHypervisor::usage(const std::string& name) const {
    const Domain& d = domain(name);
    DomainUsage u;
    u.available_memory_mb = d.manifest.memory_mb;
    if (!d.running) return u;
    for (const auto& x : parse_xl_list(xl({"list", name}))) {
        if (x.name != name) continue;
        u.cpu_total_ns = static_cast<std::uint64_t>(x.cpu_seconds * 1e9);
        u.used_memory_mb = u.max_used_memory_mb = x.memory_mb;
        if (u.available_memory_mb)
            u.used_memory_percent = 100.0 * static_cast<double>(x.memory_mb) / static_cast<double>(u.available_memory_mb);
    }
    return u;
}

void XenHypervisor::exited(const std::string& name, Domain& d, bool crashed, const std::string& detail) {
    d.running = d.paused = false;
    d.stop_timer.reset();
    ExitInfo e;
    e.crashed = crashed;
    e.detail = detail;
    emit({DomainEvent::Kind::Exited, name, -1, e});
}

void XenHypervisor::poll() {
    std::vector<XlDomain> live;
    try {
        live = list();
    } catch (const std::exception& e) {
        log()->warn("{}", e.what());
        return;
    }
    for (auto& [name, d] : domains_) {
        if (!d.running) continue;
        auto it = std::find_if(live.begin(), live.end(), [&n = name](const XlDomain& x) { return x.name == n; });
        if (it == live.end()) {
            exited(name, d, false, d.stop_requested ? "shut down" : "the domain is gone from xl list");
        } else if (it->state.find('c') != std::string::npos) {
            try {
                xl({"destroy", name});
            } catch (const std::exception& e) {
                log()->warn("{}: {}", name, e.what());
            }
            exited(name, d, true, "the domain crashed (xl list state " + it->state + ")");
        }
    }
}

void XenHypervisor::arm_poll() {
    if (polling_) return;
    polling_ = true;
    poll_timer_.expires_after(config_.poll_interval);
    poll_timer_.async_wait([this](const boost::system::error_code& ec) {
        polling_ = false;
        if (ec) return;
        poll();
        for (const auto& [name, d] : domains_) {
            if (d.running) {
                arm_poll();
                break;
            }
        }
    });
}

std::vector<AdoptedDomain> XenHypervisor::adopt() {
    std::vector<AdoptedDomain> found;
    std::vector<XlDomain> live;
    try {
        live = list();
    } catch (const std::exception& e) {
        log()->warn("cannot adopt xen domains: {}", e.what());
        return found;
    }
    for (const auto& x : live) {
        const std::string manifest_file = dir(x.name) + "/manifest.json";
        if (x.domid == 0 || !fs::exists(manifest_file)) continue;  // dom0, or not ours
        try {
            Domain& d = domains_[x.name];
            d.manifest = load_manifest_file(manifest_file);
            d.running = true;
            d.paused = x.state.find('p') != std::string::npos;
            found.push_back({d.manifest, -1, std::chrono::system_clock::now()});
        } catch (const std::exception& e) {
            log()->warn("{}: not adopted: {}", x.name, e.what());
            domains_.erase(x.name);
        }
    }
    if (!found.empty()) arm_poll();
    return found;
}

void XenHypervisor::pci_reserve(const std::string& bdf) {
    Hypervisor::pci_reserve(bdf);
    try {
        xl({"pci-assignable-add", bdf});
    } catch (...) {
        Hypervisor::pci_release(bdf);
        throw;
    }
}

void XenHypervisor::pci_release(const std::string& bdf) {
    Hypervisor::pci_release(bdf);
    xl({"pci-assignable-remove", bdf});
}

}  // namespace vmm::hv::xen
