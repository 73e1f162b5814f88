// CPUID normalisation: turns the table KVM_GET_SUPPORTED_CPUID returns (the host's CPUID as
// filtered by KVM) into the table one vCPU gets with KVM_SET_CPUID2. Pure data in, data out;
// no linux/kvm.h here: the KVM layer converts struct kvm_cpuid_entry2 to and from CpuidEntry.
//
// Called by the anchor's wiring once per vCPU, on the thread that creates the vCPU, before the
// vCPU first runs. Thread-safe (no state).
//
// What changes and why (Intel SDM vol. 2A "CPUID", AMD APM vol. 3 appendix E): the host's
// topology (APIC IDs, core and thread counts, cache sharing) must not leak into the guest,
// otherwise a 4-vCPU guest on a 64-core host thinks it has 64 cores and waits for CPUs that
// never come, or computes wrong APIC IDs. The guest sees one socket with `vcpu_count` cores of
// one thread each, and vCPU n has APIC ID n. Firecracker and cloud-hypervisor normalise the same
// leaves for the same reason.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vmm::x86 {

struct CpuidEntry {
    std::uint32_t function = 0, index = 0, flags = 0, eax = 0, ebx = 0, ecx = 0, edx = 0;
    bool operator==(const CpuidEntry&) const = default;
};

// The entry's `index` (input ECX) selects a subleaf. Same value as the kernel's
// KVM_CPUID_FLAG_SIGNIFCANT_INDEX (sic); the KVM layer static_asserts that they agree.
inline constexpr std::uint32_t kCpuidFlagSignificantIndex = 1;

struct CpuidPolicy {
    unsigned vcpu_count = 1;
    // Remove the hypervisor leaves 0x40000000..0x4fffffff and clear CPUID.1:ECX.hypervisor, for
    // guests that refuse to run (or behave differently) under a hypervisor. The guest then also
    // loses kvmclock and paravirtual features.
    bool hide_hypervisor = false;
};

// Leaves and bits touched by filter_cpuid (Intel SDM vol. 2A, CPUID, table 3-8).
inline constexpr std::uint32_t kLeafFeatures = 0x1;
inline constexpr std::uint32_t kLeafCacheParams = 0x4;
inline constexpr std::uint32_t kLeafPmu = 0xa;
inline constexpr std::uint32_t kLeafTopology = 0xb;
inline constexpr std::uint32_t kLeafTopologyV2 = 0x1f;
inline constexpr std::uint32_t kLeafHypervisorFirst = 0x40000000;
inline constexpr std::uint32_t kLeafHypervisorLast = 0x4fffffff;
inline constexpr std::uint32_t kLeafAmdSizes = 0x80000008;
inline constexpr std::uint32_t kLeafAmdExtApicId = 0x8000001e;

inline constexpr std::uint32_t kCpuid1EcxOsxsave = 1u << 27;
inline constexpr std::uint32_t kCpuid1EcxHypervisor = 1u << 31;
inline constexpr std::uint32_t kCpuid1EdxHtt = 1u << 28;

// Leaf 0xb/0x1f ECX[15:8] level types.
inline constexpr std::uint32_t kTopologyLevelInvalid = 0, kTopologyLevelSmt = 1,
                               kTopologyLevelCore = 2;

// Given what KVM_GET_SUPPORTED_CPUID returned, the table for the vCPU with this APIC ID.
// Entries that are not normalised pass through unchanged and in their original order; hidden
// hypervisor leaves are dropped; leaf 0xb/0x1f subleaves 0 and 1 are added if the leaf is
// present without them. Throws std::invalid_argument if vcpu_count is 0 or apic_id >=
// vcpu_count (APIC IDs are dense, 0..vcpu_count-1) or vcpu_count > 255 (xAPIC IDs are 8 bits).
std::vector<CpuidEntry> filter_cpuid(const std::vector<CpuidEntry>& supported,
                                     const CpuidPolicy& policy, unsigned apic_id);

// EBX, ECX, EDX of (leaf, subleaf 0) as 12 characters, the order vendor and hypervisor
// signatures use ("GenuineIntel" is leaf 0 EBX,EDX,ECX; "KVMKVMKVM\0\0\0" is 0x40000000
// EBX,ECX,EDX). Empty string if the leaf is absent.
std::string cpuid_signature(const std::vector<CpuidEntry>& table, std::uint32_t leaf);

// First entry with this function and index, or nullptr. Index is compared only when the entry
// has kCpuidFlagSignificantIndex, as the CPU (and KVM) do.
const CpuidEntry* find_cpuid_entry(const std::vector<CpuidEntry>& table, std::uint32_t function,
                                   std::uint32_t index = 0);

}  // namespace vmm::x86
