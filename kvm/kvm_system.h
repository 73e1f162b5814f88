// KvmSystem: /dev/kvm itself. Opened once per anchor on the main thread.
#pragma once

#include "common/fd.h"
#include "x86/cpuid.h"

#include <cstddef>
#include <string>
#include <vector>

namespace vmm {

class KvmSystem {
public:
    // Opens /dev/kvm (or `path`) and checks the API version. Throws vmm::Error with a message
    // a user can act on when KVM is missing or unusable.
    explicit KvmSystem(const std::string& path = "/dev/kvm");

    int fd() const noexcept { return fd_.get(); }
    // KVM_CHECK_EXTENSION on /dev/kvm; 0 when absent.
    int check_extension(long cap) const;
    void require_extension(long cap, const char* name) const;
    // What every anchor needs: user memory slots, in-kernel irqchip, PIT2, GSI routing,
    // irqfd and ioeventfd. Throws naming the first one missing.
    void require_anchor_capabilities() const;
    std::vector<x86::CpuidEntry> supported_cpuid() const;
    std::size_t vcpu_mmap_size() const;
    unsigned max_vcpus() const;

private:
    Fd fd_;
};

}  // namespace vmm
