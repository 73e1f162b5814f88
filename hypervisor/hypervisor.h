// Hypervisor: the pluggable interface vmmd drives, in the spirit of EVE pillar's
// hypervisor.Hypervisor / Task: a name, capabilities, host and per-domain resource use, the
// life cycle of a domain (setup, start, stop, delete, info, cleanup), pause/resume, PCI
// reserve/release, and adoption of domains left running by an earlier vmmd.
//
// Implementations: hypervisor/kvm (one vmm-anchor process per domain), hypervisor/xen (drives
// `xl`), hypervisor/null (bookkeeping only).
//
// Threads: every method is called on vmmd's io_context thread, and events are delivered on it
// (posted, never from inside the call that caused them), so a caller never re-enters itself.
// Slow work (waiting for a domain to come up or go down) is asynchronous: start() and stop()
// return at once and the outcome arrives as a DomainEvent.
#pragma once

#include "manifest/domain_manifest.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace vmm::hv {

// How a domain's process (or xl domain) ended.
struct ExitInfo {
    std::optional<int> status;  // exit status, 128+signal if killed; empty when unknown (adopted)
    bool crashed = false;       // not a stop that was asked for nor a guest power-off
    std::string detail;         // one line for people: "exited with status 6 (KVM internal error)"
};

struct DomainEvent {
    enum class Kind { Running, Exited };
    Kind kind = Kind::Running;
    std::string name;
    int pid = -1;  // Running: the domain's process (anchor pid, xl domid), -1 if none
    ExitInfo exit;  // Exited
};
using EventSink = std::function<void(const DomainEvent&)>;

struct Capabilities {
    bool pause = false;            // pause()/resume()
    bool console = false;          // a `cons` pty in the state directory
    bool pci_passthrough = false;  // pci_reserve() hands a device to a domain
    bool adoption = false;         // adopt() finds domains left by an earlier vmmd
    bool usage = false;            // usage() reports real numbers
};

struct HostResources {
    unsigned cpus = 0;
    std::uint64_t total_memory_mb = 0, free_memory_mb = 0;
};

// EVE's DomainMetric: CPU time and memory of one domain.
struct DomainUsage {
    std::uint64_t cpu_total_ns = 0;         // user+system time of the domain's process
    std::uint64_t used_memory_mb = 0;       // resident set
    std::uint64_t max_used_memory_mb = 0;   // resident high-water mark
    std::uint64_t available_memory_mb = 0;  // what the manifest gives the guest
    double used_memory_percent = 0;         // used / available
};

struct DomainStatus {
    int pid = -1;            // -1: no process
    std::string state_dir;   // "" when the hypervisor keeps none
    std::string console;     // the console pty's path (state_dir + "/cons"), "" if none
    bool paused = false;
};

// A domain found running when vmmd starts.
struct AdoptedDomain {
    DomainManifest manifest;
    int pid = -1;
    std::chrono::system_clock::time_point started;
};

struct StopOptions {
    bool force = false;  // skip the guest's power-down: quit at once, then kill
    std::chrono::milliseconds timeout{30000};  // how long the guest may take to power down
};

class Hypervisor {
public:
    virtual ~Hypervisor() = default;

    virtual std::string name() const = 0;
    virtual Capabilities capabilities() const = 0;
    // Default: /proc/meminfo and the online CPUs.
    virtual HostResources host_resources() const;

    // Where Running/Exited events go. Set before the first start()/adopt().
    void set_event_sink(EventSink sink) { sink_ = std::move(sink); }

    // Prepares a domain: checks what this hypervisor can do with the manifest and writes its
    // configuration. Throws (ManifestError naming the field where the manifest is at fault).
    virtual void setup(const DomainManifest& manifest) = 0;
    // Starts a set-up domain; a Running or an Exited event follows.
    virtual void start(const std::string& name) = 0;
    // Asks a running domain to stop (graceful, with escalation); an Exited event follows.
    virtual void stop(const std::string& name, const StopOptions& options) = 0;
    virtual void pause(const std::string& name) = 0;
    virtual void resume(const std::string& name) = 0;
    // Forgets a domain that has exited (EVE's Delete): its configuration goes.
    virtual void remove(const std::string& name) = 0;
    // Removes what an exited domain left behind (its state directory).
    virtual void cleanup(const std::string& name) = 0;
    virtual DomainStatus info(const std::string& name) const = 0;
    virtual DomainUsage usage(const std::string& name) const = 0;
    // Called once when vmmd starts: the domains still running, now watched (their exits are
    // reported as events); stale leftovers are cleaned.
    virtual std::vector<AdoptedDomain> adopt() = 0;

    // Hands a host PCI device ("0000:03:00.0") to this hypervisor for a domain. The default
    // keeps the reservation only; throws if it is already reserved.
    virtual void pci_reserve(const std::string& bdf);
    virtual void pci_release(const std::string& bdf);
    const std::set<std::string>& pci_reserved() const { return pci_reserved_; }

protected:
    void emit(const DomainEvent& event) const {
        if (sink_) sink_(event);
    }

private:
    EventSink sink_;
    std::set<std::string> pci_reserved_;
};

}  // namespace vmm::hv
