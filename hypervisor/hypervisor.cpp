#include "hypervisor/hypervisor.h"

#include "common/error.h"
#include "hypervisor/proc_stats.h"

#include <unistd.h>

namespace vmm::hv {

HostResources Hypervisor::host_resources() const {
    HostResources r;
    const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
    r.cpus = n > 0 ? static_cast<unsigned>(n) : 0;
    read_host_memory(r.total_memory_mb, r.free_memory_mb);
    return r;
}

void Hypervisor::pci_reserve(const std::string& bdf) {
    if (!pci_reserved_.insert(bdf).second)
        throw Error("PCI device " + bdf + " is already reserved by " + name());
}

void Hypervisor::pci_release(const std::string& bdf) { pci_reserved_.erase(bdf); }

}  // namespace vmm::hv
