// XenHypervisor: drives the xl toolstack. setup() writes <run-dir>/xen/<name>/<name>.cfg
// (xl_config.h) next to the manifest; start() runs `xl create`, stop() `xl shutdown` then, after
// the timeout, `xl destroy`; pause/resume are `xl pause`/`xl unpause`; PCI devices are made
// assignable with `xl pci-assignable-add/-remove`. A timer polls `xl list` to see domains go
// (or crash: on_crash is "preserve", state 'c'). xl is found on PATH (or `xl_path`); each xl
// call is short and blocking, on vmmd's io_context thread.
#pragma once

#include "hypervisor/hypervisor.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <map>

namespace vmm::hv::xen {

struct XenConfig {
    std::string xl_path = "xl";
    std::string run_dir;
    std::chrono::milliseconds poll_interval{1000};
};

// One row of `xl list`.
struct XlDomain {
    std::string name;
    int domid = -1;
    std::uint64_t memory_mb = 0;
    unsigned vcpus = 0;
    std::string state;  // "r-----", "--p---", "----c-", ...
    double cpu_seconds = 0;
};
// Parses `xl list` output (header line, then Name ID Mem VCPUs State Time(s)).
std::vector<XlDomain> parse_xl_list(const std::string& text);

class XenHypervisor : public Hypervisor {
public:
    XenHypervisor(boost::asio::io_context& io, XenConfig config);

    std::string name() const override { return "xen"; }
    Capabilities capabilities() const override;
    void setup(const DomainManifest& manifest) override;
    void start(const std::string& name) override;
    void stop(const std::string& name, const StopOptions& options) override;
    void pause(const std::string& name) override;
    void resume(const std::string& name) override;
    void remove(const std::string& name) override;
    void cleanup(const std::string& name) override;
    DomainStatus info(const std::string& name) const override;
    DomainUsage usage(const std::string& name) const override;
    std::vector<AdoptedDomain> adopt() override;
    void pci_reserve(const std::string& bdf) override;
    void pci_release(const std::string& bdf) override;

    std::string config_file(const std::string& name) const { return dir(name) + "/" + name + ".cfg"; }
    // Runs one `xl list` poll now (the timer does this every poll_interval).
    void poll();

private:
    struct Domain {
        DomainManifest manifest;
        bool running = false, paused = false, stop_requested = false;
        std::unique_ptr<boost::asio::steady_timer> stop_timer;
    };
    std::string dir(const std::string& name) const { return config_.run_dir + "/xen/" + name; }
    Domain& domain(const std::string& name) const;
    std::string xl(const std::vector<std::string>& args) const;  // throws with xl's stderr
    std::vector<XlDomain> list() const;
    void arm_poll();
    void exited(const std::string& name, Domain& d, bool crashed, const std::string& detail);

    boost::asio::io_context& io_;
    XenConfig config_;
    std::map<std::string, Domain> domains_;
    boost::asio::steady_timer poll_timer_;
    bool polling_ = false;
};

}  // namespace vmm::hv::xen
