#include "hypervisor/detect.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace vmm::hv {

HostOffer detect_host(const std::string& dev_kvm, const std::string& proc_xen) {
    HostOffer o;
    const int fd = ::open(dev_kvm.c_str(), O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        ::close(fd);
        o.kvm = true;
    } else {
        o.kvm_reason = dev_kvm + ": " + std::strerror(errno);
    }
    struct stat st{};
    if (::stat(proc_xen.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
        o.xen = true;
    } else {
        o.xen_reason = proc_xen + " is not present (not a Xen host)";
    }
    return o;
}

std::vector<std::string> available_hypervisors(const HostOffer& offer) {
    std::vector<std::string> v;
    if (offer.kvm) v.push_back("kvm");
    if (offer.xen) v.push_back("xen");
    v.push_back("null");
    return v;
}

std::string choose_hypervisor(const DomainManifest& manifest, const std::vector<std::string>& enabled) {
    const bool explicit_choice = manifest.raw.is_object() && manifest.raw.contains("hypervisor");
    if (explicit_choice) {
        if (std::find(enabled.begin(), enabled.end(), manifest.hypervisor) != enabled.end()) return manifest.hypervisor;
        std::string list;
        for (const auto& e : enabled) list += (list.empty() ? "" : ", ") + ("\"" + e + "\"");
        throw ManifestError("hypervisor", "\"" + manifest.hypervisor + "\" is not available on this host (available: " +
                                              list + ")");
    }
    for (const auto& e : enabled) {
        if (e != "null") return e;
    }
    return "null";
}

}  // namespace vmm::hv
