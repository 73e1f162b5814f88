// What the host offers: KVM (/dev/kvm usable) and Xen (/proc/xen present, i.e. we run in a Xen
// dom0/domU with the xen fs). The paths are parameters so tests can point them elsewhere.
// Pure, thread-safe.
#pragma once

#include "manifest/domain_manifest.h"

#include <string>
#include <vector>

namespace vmm::hv {

struct HostOffer {
    bool kvm = false, xen = false;
    std::string kvm_reason, xen_reason;  // why not, when false
};

HostOffer detect_host(const std::string& dev_kvm = "/dev/kvm", const std::string& proc_xen = "/proc/xen");

// The hypervisors available to domains: those the host offers, plus "null" always.
std::vector<std::string> available_hypervisors(const HostOffer& offer);

// The hypervisor a domain runs on: the manifest's "hypervisor" field when the document names it
// (an explicit choice), else the first of `enabled` that is not "null" (kvm before xen), else
// "null". Throws ManifestError("hypervisor") when the explicit choice is not enabled, saying
// which are.
std::string choose_hypervisor(const DomainManifest& manifest, const std::vector<std::string>& enabled);

}  // namespace vmm::hv
