#include "kvm/kvm_system.h"

#include "common/error.h"
#include "kvm/kvm_flex.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

namespace vmm {

static_assert(x86::kCpuidFlagSignificantIndex == KVM_CPUID_FLAG_SIGNIFCANT_INDEX);

KvmSystem::KvmSystem(const std::string& path) {
    try {
        fd_ = open_fd(path.c_str(), O_RDWR);
    } catch (const std::system_error& e) {
        throw Error("cannot use KVM: " + std::string(e.what()) +
                    (e.code().value() == ENOENT ? " (this host offers no hardware virtualisation to us: "
                                                  "no kvm module loaded, or nested virtualisation disabled)"
                                                : ""));
    }
    const int version = ::ioctl(fd_.get(), KVM_GET_API_VERSION, 0);
    if (version != KVM_API_VERSION)
        throw Error("KVM API version " + std::to_string(version) + ", expected " + std::to_string(KVM_API_VERSION));
}

int KvmSystem::check_extension(long cap) const {
    const int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
    return r < 0 ? 0 : r;
}

void KvmSystem::require_extension(long cap, const char* name) const {
    if (check_extension(cap) <= 0) throw Error(std::string("KVM lacks the required capability ") + name);
}

void KvmSystem::require_anchor_capabilities() const {
    require_extension(KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY");
    require_extension(KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP");
    require_extension(KVM_CAP_PIT2, "KVM_CAP_PIT2");
    require_extension(KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING");
    require_extension(KVM_CAP_IRQFD, "KVM_CAP_IRQFD");
    require_extension(KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD");
    require_extension(KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID");
}

std::vector<x86::CpuidEntry> KvmSystem::supported_cpuid() const {
    // KVM_GET_SUPPORTED_CPUID fails with E2BIG until nent is large enough.
    for (std::uint32_t nent = 128; nent <= 4096; nent *= 2) {
        kvm_flex::FlexBuffer<kvm_flex::CpuidHeader, kvm_cpuid_entry2> buf(nent);
        buf.header()->nent = nent;
        if (::ioctl(fd_.get(), kvm_flex::kGetSupportedCpuid, buf.data()) < 0) {
            if (errno == E2BIG) continue;
            throw_errno("KVM_GET_SUPPORTED_CPUID");
        }
        std::vector<x86::CpuidEntry> out;
        out.reserve(buf.header()->nent);
        for (std::uint32_t i = 0; i < buf.header()->nent; ++i) {
            const auto& e = buf.entries()[i];
            out.push_back({e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx});
        }
        return out;
    }
    throw Error("KVM_GET_SUPPORTED_CPUID: more than 4096 entries");
}

std::size_t KvmSystem::vcpu_mmap_size() const {
    const int r = ::ioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
    if (r <= 0) throw_errno("KVM_GET_VCPU_MMAP_SIZE");
    return static_cast<std::size_t>(r);
}

unsigned KvmSystem::max_vcpus() const {
    int n = check_extension(KVM_CAP_MAX_VCPUS);
    if (n <= 0) n = check_extension(KVM_CAP_NR_VCPUS);
    return n > 0 ? static_cast<unsigned>(n) : 4;  // the API documents 4 when neither is reported
}

}  // namespace vmm
