// NullHypervisor: bookkeeping only, for tests and for controllers on hosts without a
// hypervisor. A "running" domain is a record <run-dir>/null/<name>/domain.json (the manifest and
// the start time), so a restarted vmmd adopts it like a live anchor. No process, no console.
// Called on vmmd's io_context thread; events are posted to it.
#pragma once

#include "hypervisor/hypervisor.h"

#include <boost/asio/io_context.hpp>

#include <map>

namespace vmm::hv {

class NullHypervisor : public Hypervisor {
public:
    // `run_dir` empty: nothing is persisted (no adoption).
    NullHypervisor(boost::asio::io_context& io, std::string run_dir);

    std::string name() const override { return "null"; }
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

private:
    struct Entry {
        DomainManifest manifest;
        bool running = false, paused = false;
        std::chrono::system_clock::time_point started;
    };
    Entry& entry(const std::string& name);
    const Entry& entry(const std::string& name) const;
    std::string dir(const std::string& name) const;
    void persist(const std::string& name, const Entry& e) const;

    boost::asio::io_context& io_;
    std::string run_dir_;
    std::map<std::string, Entry> domains_;
};

}  // namespace vmm::hv
