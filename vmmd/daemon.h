// Daemon: vmmd's domains. Keeps one record per domain name (state machine, hypervisor, exit,
// restarts), drives the hypervisors, reacts to their events, applies the restart policy and
// tracks which domain holds which PCI device. The API server and the spool watcher call it.
//
// Threads: everything runs on the io_context thread. start() and stop() complete
// asynchronously through a Reply callback (when the domain runs / has stopped), invoked on
// that thread; the other requests answer at once.
#pragma once

#include "hypervisor/hypervisor.h"
#include "vmmd/domain_state.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace vmm::vmmd {

// A request that cannot be served; the API answers {"ok":false,"error":what(),"field":...,
// "domain":...}.
struct ApiError : vmm::Error {
    ApiError(const std::string& message, std::string field_ = {}, std::string domain_ = {})
        : vmm::Error(message), field(std::move(field_)), domain(std::move(domain_)) {}
    std::string field;   // the manifest or request field at fault, if any
    std::string domain;  // the domain at fault, if any
};

struct DaemonConfig {
    RestartPolicy restart_policy = RestartPolicy::Never;  // default for domains started without one
    std::chrono::milliseconds backoff_initial{1000}, backoff_max{30000};
    std::chrono::milliseconds stop_timeout{30000};
    // --allow-dir: a manifest's host paths must lie under one of these (empty: anywhere).
    std::vector<std::string> allowed_dirs;
};

// A reply: {"ok":true, ...} or {"ok":false, "error":...}.
using Reply = std::function<void(const nlohmann::json&)>;
nlohmann::json error_reply(const std::exception& e);

class Daemon {
public:
    Daemon(boost::asio::io_context& io, DaemonConfig config);
    ~Daemon();

    // Registers a hypervisor under its name(); the daemon receives its events.
    void add_hypervisor(std::unique_ptr<hv::Hypervisor> hypervisor);
    std::vector<std::string> hypervisors() const;
    hv::Hypervisor* hypervisor(const std::string& name) const;

    // Asks every hypervisor for the domains an earlier vmmd left running; they become
    // records in state running (or paused). Returns their names.
    std::vector<std::string> adopt_all();

    // Starts a domain; `done` gets {"ok":true,"domain":{...}} once it runs, or an error (also
    // when the domain exits while starting). Throws ApiError for what is wrong up front (name
    // in use, hypervisor not available, PCI device taken, setup failure).
    void start(const DomainManifest& manifest, std::optional<RestartPolicy> restart, Reply done);
    // Stops a domain; `done` gets {"ok":true,"domain":{...}} once it has exited.
    void stop(const std::string& name, const hv::StopOptions& options, Reply done);
    nlohmann::json pause(const std::string& name);
    nlohmann::json resume(const std::string& name);
    // Forgets a domain that is not active.
    void remove(const std::string& name);

    nlohmann::json list() const;
    nlohmann::json info(const std::string& name) const;
    nlohmann::json host() const;

    // For the spool watcher.
    std::optional<DomainState> state(const std::string& name) const;
    const DomainManifest* manifest(const std::string& name) const;

    const DaemonConfig& config() const { return config_; }

private:
    struct Domain {
        DomainManifest manifest;
        hv::Hypervisor* hv = nullptr;
        DomainState state = DomainState::Created;
        int pid = -1;
        bool adopted = false;
        std::chrono::system_clock::time_point started, running_since;
        std::optional<hv::ExitInfo> last_exit;
        RestartPolicy restart = RestartPolicy::Never;
        unsigned restarts = 0, consecutive_crashes = 0;
        std::unique_ptr<boost::asio::steady_timer> restart_timer;
        std::vector<Reply> start_waiters, stop_waiters;
        std::vector<std::string> pci;  // reserved BDFs
    };

    Domain& domain(const std::string& name);
    const Domain& domain(const std::string& name) const;
    void set_state(Domain& d, DomainState to);
    void on_event(const hv::DomainEvent& event);
    void on_exited(Domain& d, const hv::DomainEvent& event);
    void launch(Domain& d);  // setup + start of an existing record; throws
    void release_pci(Domain& d);
    void schedule_restart(Domain& d);
    nlohmann::json to_json(const Domain& d, bool details) const;

    boost::asio::io_context& io_;
    DaemonConfig config_;
    std::map<std::string, std::unique_ptr<hv::Hypervisor>> hypervisors_;
    std::map<std::string, std::unique_ptr<Domain>> domains_;
    std::map<std::string, std::string> pci_owner_;  // BDF -> domain
};

}  // namespace vmm::vmmd
