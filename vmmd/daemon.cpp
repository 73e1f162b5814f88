#include "vmmd/daemon.h"

#include "manifest/path_policy.h"

#include "common/log.h"
#include "hypervisor/detect.h"

namespace vmm::vmmd {

using nlohmann::json;

namespace {

auto log() { return logger("vmmd"); }

std::int64_t unix_seconds(std::chrono::system_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

}  // namespace

json error_reply(const std::exception& e) {
    json r = {{"ok", false}, {"error", e.what()}};
    if (auto* api = dynamic_cast<const ApiError*>(&e)) {
        if (!api->field.empty()) r["field"] = api->field;
        if (!api->domain.empty()) r["domain"] = api->domain;
    } else if (auto* m = dynamic_cast<const ManifestError*>(&e)) {
        if (!m->field.empty()) r["field"] = m->field;
    }
    return r;
}

Daemon::Daemon(boost::asio::io_context& io, DaemonConfig config) : io_(io), config_(config) {}

Daemon::~Daemon() {
    for (auto& [name, h] : hypervisors_) h->set_event_sink({});
}

void Daemon::add_hypervisor(std::unique_ptr<hv::Hypervisor> hypervisor) {
    hypervisor->set_event_sink([this](const hv::DomainEvent& e) { on_event(e); });
    const std::string name = hypervisor->name();
    hypervisors_[name] = std::move(hypervisor);
}

std::vector<std::string> Daemon::hypervisors() const {
    std::vector<std::string> v;
    for (const auto& [name, h] : hypervisors_) v.push_back(name);
    return v;
}

hv::Hypervisor* Daemon::hypervisor(const std::string& name) const {
    auto it = hypervisors_.find(name);
    return it == hypervisors_.end() ? nullptr : it->second.get();
}

Daemon::Domain& Daemon::domain(const std::string& name) {
    auto it = domains_.find(name);
    if (it == domains_.end()) throw ApiError("no domain '" + name + "'", "name", name);
    return *it->second;
}

const Daemon::Domain& Daemon::domain(const std::string& name) const { return const_cast<Daemon*>(this)->domain(name); }

std::optional<DomainState> Daemon::state(const std::string& name) const {
    auto it = domains_.find(name);
    if (it == domains_.end()) return std::nullopt;
    return it->second->state;
}

const DomainManifest* Daemon::manifest(const std::string& name) const {
    auto it = domains_.find(name);
    return it == domains_.end() ? nullptr : &it->second->manifest;
}

void Daemon::set_state(Domain& d, DomainState to) {
    if (d.state == to) return;
    if (!can_transition(d.state, to)) {
        log()->error("{}: ignoring impossible transition {} -> {}", d.manifest.name, to_string(d.state), to_string(to));
        return;
    }
    log()->info("{}: {} -> {}", d.manifest.name, to_string(d.state), to_string(to));
    d.state = to;
}

std::vector<std::string> Daemon::adopt_all() {
    std::vector<std::string> names;
    for (auto& [hv_name, h] : hypervisors_) {
        for (auto& a : h->adopt()) {
            const std::string name = a.manifest.name;
            if (domains_.count(name)) {
                log()->error("{}: found running on {} and on {}; keeping the first", name,
                             domains_[name]->hv->name(), hv_name);
                continue;
            }
            auto d = std::make_unique<Domain>();
            d->manifest = a.manifest;
            d->hv = h.get();
            d->pid = a.pid;
            d->adopted = true;
            d->started = d->running_since = a.started;
            d->restart = config_.restart_policy;
            d->state = h->info(name).paused ? DomainState::Paused : DomainState::Running;
            for (const auto& p : a.manifest.pci) {
                if (!p.bdf.empty()) {
                    pci_owner_[p.bdf] = name;
                    d->pci.push_back(p.bdf);
                }
            }
            log()->info("{}: adopted from {} (pid {}, {})", name, hv_name, a.pid, to_string(d->state));
            domains_[name] = std::move(d);
            names.push_back(name);
        }
    }
    return names;
}

void Daemon::launch(Domain& d) {
    const std::string& name = d.manifest.name;
    // PCI devices first: a device another domain holds is the manifest's fault.
    for (std::size_t i = 0; i < d.manifest.pci.size(); ++i) {
        const std::string& bdf = d.manifest.pci[i].bdf;
        if (bdf.empty()) continue;
        auto owner = pci_owner_.find(bdf);
        if (owner != pci_owner_.end() && owner->second != name) {
            release_pci(d);
            throw ApiError("manifest field \"pci[" + std::to_string(i) + "]\": PCI device " + bdf +
                               " is in use by domain '" + owner->second + "'",
                           "pci[" + std::to_string(i) + "]", name);
        }
        try {
            d.hv->pci_reserve(bdf);
        } catch (const std::exception& e) {
            release_pci(d);
            throw ApiError("manifest field \"pci[" + std::to_string(i) + "]\": " + e.what(),
                           "pci[" + std::to_string(i) + "]", name);
        }
        pci_owner_[bdf] = name;
        d.pci.push_back(bdf);
    }
    try {
        d.hv->setup(d.manifest);
        set_state(d, DomainState::Starting);
        d.hv->start(name);
    } catch (const ManifestError& e) {
        release_pci(d);
        throw ApiError(e.what(), e.field, name);
    } catch (const ApiError&) {
        release_pci(d);
        throw;
    } catch (const std::exception& e) {
        release_pci(d);
        throw ApiError("domain '" + name + "': " + e.what(), "", name);
    }
    d.started = std::chrono::system_clock::now();
    d.adopted = false;
    d.pid = -1;
}

void Daemon::release_pci(Domain& d) {
    for (const auto& bdf : d.pci) {
        try {
            d.hv->pci_release(bdf);
        } catch (const std::exception& e) {
            log()->warn("{}: releasing PCI device {}: {}", d.manifest.name, bdf, e.what());
        }
        pci_owner_.erase(bdf);
    }
    d.pci.clear();
}

void Daemon::start(const DomainManifest& manifest, std::optional<RestartPolicy> restart, Reply done) {
    const std::string name = manifest.name;
    std::string hv_name;
    try {
        check_manifest_paths(manifest, config_.allowed_dirs);
        hv_name = hv::choose_hypervisor(manifest, hypervisors());
    } catch (const ManifestError& e) {
        throw ApiError(e.what(), e.field, name);
    }
    auto it = domains_.find(name);
    if (it != domains_.end() && is_active(it->second->state))
        throw ApiError("domain '" + name + "' is already " + to_string(it->second->state) + " on " +
                           it->second->hv->name(), "name", name);
    if (it != domains_.end()) {
        // A stopped or crashed record is replaced; its hypervisor forgets the old configuration.
        Domain& old = *it->second;
        old.restart_timer.reset();
        try {
            old.hv->remove(name);
        } catch (const std::exception& e) {
            log()->warn("{}: {}", name, e.what());
        }
        domains_.erase(it);
    }
    auto d = std::make_unique<Domain>();
    d->manifest = manifest;
    d->hv = hypervisors_.at(hv_name).get();
    d->restart = restart.value_or(config_.restart_policy);
    Domain& ref = *d;
    domains_[name] = std::move(d);
    try {
        launch(ref);
    } catch (...) {
        domains_.erase(name);
        throw;
    }
    ref.start_waiters.push_back(std::move(done));
}

void Daemon::stop(const std::string& name, const hv::StopOptions& options, Reply done) {
    Domain& d = domain(name);
    if (!is_active(d.state)) {
        if (d.restart_timer) {
            // A crashed domain waiting for its restart: stopping it cancels the restart.
            d.restart_timer.reset();
            log()->info("{}: restart cancelled", name);
            done({{"ok", true}, {"domain", to_json(d, false)}});
            return;
        }
        throw ApiError("domain '" + name + "' is not running (state " + to_string(d.state) + ")", "", name);
    }
    try {
        d.hv->stop(name, options);
    } catch (const std::exception& e) {
        throw ApiError("domain '" + name + "': " + e.what(), "", name);
    }
    set_state(d, DomainState::Stopping);
    d.stop_waiters.push_back(std::move(done));
}

json Daemon::pause(const std::string& name) {
    Domain& d = domain(name);
    if (d.state == DomainState::Paused) return {{"ok", true}, {"domain", to_json(d, false)}};
    if (d.state != DomainState::Running)
        throw ApiError("domain '" + name + "' cannot be paused in state " + to_string(d.state), "", name);
    if (!d.hv->capabilities().pause) throw ApiError("the " + d.hv->name() + " hypervisor cannot pause domains", "", name);
    try {
        d.hv->pause(name);
    } catch (const std::exception& e) {
        throw ApiError("domain '" + name + "': " + e.what(), "", name);
    }
    set_state(d, DomainState::Paused);
    return {{"ok", true}, {"domain", to_json(d, false)}};
}

json Daemon::resume(const std::string& name) {
    Domain& d = domain(name);
    if (d.state == DomainState::Running) return {{"ok", true}, {"domain", to_json(d, false)}};
    if (d.state != DomainState::Paused)
        throw ApiError("domain '" + name + "' cannot be resumed in state " + to_string(d.state), "", name);
    try {
        d.hv->resume(name);
    } catch (const std::exception& e) {
        throw ApiError("domain '" + name + "': " + e.what(), "", name);
    }
    set_state(d, DomainState::Running);
    return {{"ok", true}, {"domain", to_json(d, false)}};
}

void Daemon::remove(const std::string& name) {
    Domain& d = domain(name);
    if (is_active(d.state))
        throw ApiError("domain '" + name + "' is " + to_string(d.state) + "; stop it first", "", name);
    try {
        d.hv->remove(name);
    } catch (const std::exception& e) {
        throw ApiError("domain '" + name + "': " + e.what(), "", name);
    }
    domains_.erase(name);
}

void Daemon::on_event(const hv::DomainEvent& event) {
    auto it = domains_.find(event.name);
    if (it == domains_.end()) {
        log()->warn("{}: event for an unknown domain", event.name);
        return;
    }
    Domain& d = *it->second;
    if (event.kind == hv::DomainEvent::Kind::Running) {
        if (d.state != DomainState::Starting) return;
        d.pid = event.pid;
        d.running_since = std::chrono::system_clock::now();
        set_state(d, d.hv->info(d.manifest.name).paused ? DomainState::Paused : DomainState::Running);
        auto waiters = std::move(d.start_waiters);
        d.start_waiters.clear();
        const json reply = {{"ok", true}, {"domain", to_json(d, true)}};
        for (auto& w : waiters) w(reply);
        return;
    }
    on_exited(d, event);
}

void Daemon::on_exited(Domain& d, const hv::DomainEvent& event) {
    const std::string name = d.manifest.name;
    const bool was_starting = d.state == DomainState::Starting;
    const bool was_stopping = d.state == DomainState::Stopping;
    d.last_exit = event.exit;
    d.pid = -1;
    release_pci(d);
    try {
        d.hv->cleanup(name);
    } catch (const std::exception& e) {
        log()->warn("{}: cleanup: {}", name, e.what());
    }
    const bool crashed = event.exit.crashed && !was_stopping;
    set_state(d, crashed ? DomainState::Crashed : DomainState::Stopped);
    (crashed ? log()->warn("{}: crashed: {}", name, event.exit.detail)
             : log()->info("{}: stopped: {}", name, event.exit.detail));

    auto start_waiters = std::move(d.start_waiters);
    auto stop_waiters = std::move(d.stop_waiters);
    d.start_waiters.clear();
    d.stop_waiters.clear();
    if (!start_waiters.empty()) {
        const json err = {{"ok", false},
                          {"domain", name},
                          {"error", "domain '" + name + "' exited while starting: " + event.exit.detail},
                          {"state", to_json(d, false)}};
        for (auto& w : start_waiters) w(err);
    }
    const json ok = {{"ok", true}, {"domain", to_json(d, false)}};
    for (auto& w : stop_waiters) w(ok);

    const bool restart = !was_stopping && !was_starting &&
                         (d.restart == RestartPolicy::Always || (d.restart == RestartPolicy::OnCrash && crashed));
    if (restart) schedule_restart(d);
}

void Daemon::schedule_restart(Domain& d) {
    const auto uptime = std::chrono::system_clock::now() - d.running_since;
    if (uptime > config_.backoff_max) d.consecutive_crashes = 0;
    ++d.consecutive_crashes;
    const auto delay = restart_backoff(d.consecutive_crashes, config_.backoff_initial, config_.backoff_max);
    const std::string name = d.manifest.name;
    log()->info("{}: restarting in {} ms (attempt {})", name, delay.count(), d.consecutive_crashes);
    d.restart_timer = std::make_unique<boost::asio::steady_timer>(io_, delay);
    d.restart_timer->async_wait([this, name](const boost::system::error_code& ec) {
        if (ec) return;
        auto it = domains_.find(name);
        if (it == domains_.end() || is_active(it->second->state)) return;
        Domain& d = *it->second;
        d.restart_timer.reset();
        try {
            launch(d);
            ++d.restarts;
        } catch (const std::exception& e) {
            log()->error("{}: restart failed: {}", name, e.what());
            d.last_exit = hv::ExitInfo{std::nullopt, true, std::string("restart failed: ") + e.what()};
            if (d.state == DomainState::Starting) set_state(d, DomainState::Crashed);
            schedule_restart(d);
        }
    });
}

json Daemon::to_json(const Domain& d, bool details) const {
    const auto now = std::chrono::system_clock::now();
    json j = {{"name", d.manifest.name},
              {"hypervisor", d.hv->name()},
              {"state", to_string(d.state)},
              {"vcpus", d.manifest.vcpus},
              {"memory_mb", d.manifest.memory_mb},
              {"pid", d.pid > 0 ? json(d.pid) : json(nullptr)},
              {"adopted", d.adopted},
              {"restart_policy", to_string(d.restart)},
              {"restarts", d.restarts},
              {"restart_pending", d.restart_timer != nullptr}};
    const bool live = d.state == DomainState::Running || d.state == DomainState::Paused || d.state == DomainState::Stopping;
    if (live) {
        j["started"] = unix_seconds(d.running_since);
        j["uptime_s"] = std::chrono::duration_cast<std::chrono::seconds>(now - d.running_since).count();
    } else {
        j["started"] = nullptr;
        j["uptime_s"] = nullptr;
    }
    hv::DomainStatus status;
    try {
        status = d.hv->info(d.manifest.name);
    } catch (const std::exception&) {
    }
    j["state_dir"] = status.state_dir;
    j["console"] = status.console;
    if (d.last_exit) {
        j["exit"] = {{"status", d.last_exit->status ? json(*d.last_exit->status) : json(nullptr)},
                     {"crashed", d.last_exit->crashed},
                     {"detail", d.last_exit->detail}};
    } else {
        j["exit"] = nullptr;
    }
    if (details) {
        j["pci"] = d.pci;
        j["manifest"] = vmm::to_json(d.manifest);
        if (live) {
            try {
                const hv::DomainUsage u = d.hv->usage(d.manifest.name);
                j["usage"] = {{"cpu_total_ns", u.cpu_total_ns},
                              {"used_memory_mb", u.used_memory_mb},
                              {"max_used_memory_mb", u.max_used_memory_mb},
                              {"available_memory_mb", u.available_memory_mb},
                              {"used_memory_percent", u.used_memory_percent}};
            } catch (const std::exception& e) {
                j["usage"] = nullptr;
            }
        }
    }
    return j;
}

json Daemon::list() const {
    json arr = json::array();
    for (const auto& [name, d] : domains_) arr.push_back(to_json(*d, false));
    return {{"ok", true}, {"domains", arr}};
}

json Daemon::info(const std::string& name) const { return {{"ok", true}, {"domain", to_json(domain(name), true)}}; }

json Daemon::host() const {
    json hvs = json::array();
    for (const auto& [name, h] : hypervisors_) {
        const hv::Capabilities c = h->capabilities();
        hvs.push_back({{"name", name},
                       {"capabilities",
                        {{"pause", c.pause}, {"console", c.console}, {"pci_passthrough", c.pci_passthrough},
                         {"adoption", c.adoption}, {"usage", c.usage}}}});
    }
    hv::HostResources r;
    if (!hypervisors_.empty()) r = hypervisors_.begin()->second->host_resources();
    const hv::HostOffer offer = hv::detect_host();
    return {{"ok", true},
            {"hypervisors", hvs},
            {"host", {{"cpus", r.cpus}, {"total_memory_mb", r.total_memory_mb}, {"free_memory_mb", r.free_memory_mb},
                      {"kvm", offer.kvm}, {"xen", offer.xen}}}};
}

}  // namespace vmm::vmmd
