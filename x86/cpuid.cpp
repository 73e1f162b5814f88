// CPUID normalisation; see cpuid.h for the topology the guest is shown.
// Register layouts: Intel SDM vol. 2A, "CPUID—CPU Identification", table 3-8; AMD APM vol. 3,
// appendix E "Obtaining Processor Information Via the CPUID Instruction".
#include "x86/cpuid.h"

#include <algorithm>
#include <bit>
#include <stdexcept>

namespace vmm::x86 {
namespace {

// Replace bits [hi:lo] of `reg` with `value` (truncated to the field width).
std::uint32_t set_field(std::uint32_t reg, unsigned hi, unsigned lo, std::uint32_t value) {
    const std::uint32_t width_mask = hi - lo + 1 >= 32 ? ~0u : (1u << (hi - lo + 1)) - 1;
    const std::uint32_t mask = width_mask << lo;
    return (reg & ~mask) | ((value << lo) & mask);
}

std::uint32_t get_field(std::uint32_t reg, unsigned hi, unsigned lo) {
    const std::uint32_t width_mask = hi - lo + 1 >= 32 ? ~0u : (1u << (hi - lo + 1)) - 1;
    return (reg >> lo) & width_mask;
}

bool is_hypervisor_leaf(std::uint32_t function) {
    return function >= kLeafHypervisorFirst && function <= kLeafHypervisorLast;
}

bool is_topology_leaf(std::uint32_t function) {
    return function == kLeafTopology || function == kLeafTopologyV2;
}

struct Topology {
    std::uint32_t vcpus;
    std::uint32_t apic_id;
    // APIC ID bits that number the cores of the package: one thread per core, so cores are
    // numbered by the low bits and the package ID starts at bit core_shift.
    std::uint32_t core_shift;
};

// Leaf 1 (SDM table 3-8): EBX[31:24] initial APIC ID, EBX[23:16] addressable logical processor
// IDs in the package (valid only with EDX.HTT), EBX[15:8] CLFLUSH line size (kept).
void normalise_leaf1(CpuidEntry& e, const Topology& t, const CpuidPolicy& policy) {
    e.ebx = set_field(e.ebx, 31, 24, t.apic_id);
    e.ebx = set_field(e.ebx, 23, 16, t.vcpus);
    e.edx = t.vcpus > 1 ? (e.edx | kCpuid1EdxHtt) : (e.edx & ~kCpuid1EdxHtt);
    // OSXSAVE mirrors the guest's CR4.OSXSAVE; KVM updates it when the guest sets CR4, so the
    // initial value must be the reset value, 0 (SDM vol. 3A 2.5, CR4.OSXSAVE).
    e.ecx &= ~kCpuid1EcxOsxsave;
    // Bit 31 is reserved for hypervisor use and reads 1 under a hypervisor (SDM table 3-10).
    e.ecx = policy.hide_hypervisor ? (e.ecx & ~kCpuid1EcxHypervisor)
                                   : (e.ecx | kCpuid1EcxHypervisor);
}

// Leaf 4, one entry per cache (SDM table 3-8, "Deterministic Cache Parameters Leaf").
// EAX[4:0] cache type (0 = no more caches), EAX[7:5] cache level, EAX[25:14] maximum
// addressable IDs sharing this cache - 1, EAX[31:26] maximum addressable core IDs in the
// package - 1.
void normalise_leaf4(CpuidEntry& e, const Topology& t) {
    if (get_field(e.eax, 4, 0) == 0) {
        return;  // the null entry that ends the list; its EAX must stay all zero
    }
    // One thread per core: L1 and L2 are private to a vCPU, L3 (and beyond) shared by all.
    const std::uint32_t level = get_field(e.eax, 7, 5);
    const std::uint32_t sharing = level <= 2 ? 1 : t.vcpus;
    e.eax = set_field(e.eax, 25, 14, std::min<std::uint32_t>(sharing - 1, 0xfff));
    e.eax = set_field(e.eax, 31, 26, std::min<std::uint32_t>(t.vcpus - 1, 63));
}

// Leaf 0xb / 0x1f (SDM table 3-8, "Extended Topology Enumeration Leaf"): per subleaf,
// EAX[4:0] the x2APIC ID shift to the next level, EBX[15:0] logical processors at this level,
// ECX[7:0] the input subleaf, ECX[15:8] the level type, EDX the x2APIC ID of this vCPU.
CpuidEntry topology_subleaf(std::uint32_t function, std::uint32_t index, const Topology& t) {
    CpuidEntry e{.function = function, .index = index, .flags = kCpuidFlagSignificantIndex};
    e.edx = t.apic_id;
    e.ecx = index & 0xff;
    if (index == 0) {
        e.eax = 0;  // one thread per core: no SMT bits in the APIC ID
        e.ebx = 1;
        e.ecx |= kTopologyLevelSmt << 8;
    } else if (index == 1) {
        e.eax = t.core_shift;
        e.ebx = t.vcpus;
        e.ecx |= kTopologyLevelCore << 8;
    }
    // Further subleaves: EAX = EBX = 0, level type 0 (invalid) ends the enumeration.
    return e;
}

// AMD 0x80000008 ECX (APM vol. 3 E.4.7): [7:0] NC = logical processors in the package - 1,
// [15:12] ApicIdSize = APIC ID bits for them (0 = derive from NC). Linux uses ApicIdSize when
// non-zero, so a host value (e.g. 7 on a 128-thread EPYC) must not survive.
void normalise_amd_sizes(CpuidEntry& e, const Topology& t) {
    e.ecx = set_field(e.ecx, 7, 0, t.vcpus - 1);
    e.ecx = set_field(e.ecx, 15, 12, t.core_shift);
}

// AMD 0x8000001e (APM vol. 3 E.4.15): EAX extended APIC ID; EBX[7:0] core ID, EBX[15:8]
// threads per core - 1; ECX[7:0] node ID, ECX[10:8] nodes per processor - 1. The guest is one
// node of single-threaded cores, so the core ID is the APIC ID.
void normalise_amd_ext_apic(CpuidEntry& e, const Topology& t) {
    e.eax = t.apic_id;
    e.ebx = set_field(e.ebx, 7, 0, t.apic_id);
    e.ebx = set_field(e.ebx, 15, 8, 0);
    e.ecx = set_field(e.ecx, 10, 0, 0);
}

}  // namespace

const CpuidEntry* find_cpuid_entry(const std::vector<CpuidEntry>& table, std::uint32_t function,
                                   std::uint32_t index) {
    for (const CpuidEntry& e : table) {
        if (e.function == function &&
            (!(e.flags & kCpuidFlagSignificantIndex) || e.index == index)) {
            return &e;
        }
    }
    return nullptr;
}

std::vector<CpuidEntry> filter_cpuid(const std::vector<CpuidEntry>& supported,
                                     const CpuidPolicy& policy, unsigned apic_id) {
    if (policy.vcpu_count == 0 || policy.vcpu_count > 255) {
        throw std::invalid_argument("filter_cpuid: vcpu_count must be 1..255, got " +
                                    std::to_string(policy.vcpu_count));
    }
    if (apic_id >= policy.vcpu_count) {
        throw std::invalid_argument("filter_cpuid: apic_id " + std::to_string(apic_id) +
                                    " is not below vcpu_count " +
                                    std::to_string(policy.vcpu_count));
    }
    const auto core_shift = static_cast<std::uint32_t>(std::bit_width(policy.vcpu_count - 1));
    const Topology t{.vcpus = policy.vcpu_count, .apic_id = apic_id, .core_shift = core_shift};

    std::vector<CpuidEntry> out;
    out.reserve(supported.size() + 4);
    for (std::size_t i = 0; i < supported.size(); ++i) {
        CpuidEntry e = supported[i];
        if (policy.hide_hypervisor && is_hypervisor_leaf(e.function)) {
            continue;  // KVM signature "KVMKVMKVM\0\0\0" (0x40000000) and its feature leaves
        }
        switch (e.function) {
        case kLeafFeatures:
            normalise_leaf1(e, t, policy);
            break;
        case kLeafCacheParams:
            normalise_leaf4(e, t);
            break;
        case kLeafPmu:
            // Architectural PMU (SDM table 3-8 leaf 0AH): version 0 = no PMU. We do not promise
            // PMU virtualisation, so the guest must not program counters.
            e.eax = e.ebx = e.ecx = e.edx = 0;
            break;
        case kLeafTopology:
        case kLeafTopologyV2: {
            const CpuidEntry rewritten = topology_subleaf(e.function, e.index, t);
            e.eax = rewritten.eax;
            e.ebx = rewritten.ebx;
            e.ecx = rewritten.ecx;
            e.edx = rewritten.edx;
            e.flags |= kCpuidFlagSignificantIndex;
            break;
        }
        case kLeafAmdSizes:
            normalise_amd_sizes(e, t);
            break;
        case kLeafAmdExtApicId:
            normalise_amd_ext_apic(e, t);
            break;
        default:
            break;
        }
        out.push_back(e);

        // After the last subleaf of a present topology leaf, add subleaves 0 and 1 if KVM did
        // not report them, so the guest always sees the SMT and core levels.
        const bool last_of_leaf =
            i + 1 == supported.size() || supported[i + 1].function != e.function;
        if (is_topology_leaf(e.function) && last_of_leaf) {
            for (std::uint32_t sub : {0u, 1u}) {
                const bool present =
                    std::any_of(supported.begin(), supported.end(), [&](const CpuidEntry& s) {
                        return s.function == e.function && s.index == sub;
                    });
                if (!present) {
                    out.push_back(topology_subleaf(e.function, sub, t));
                }
            }
        }
    }
    return out;
}

std::string cpuid_signature(const std::vector<CpuidEntry>& table, std::uint32_t leaf) {
    const CpuidEntry* e = find_cpuid_entry(table, leaf, 0);
    if (e == nullptr) {
        return {};
    }
    std::string sig;
    for (std::uint32_t reg : {e->ebx, e->ecx, e->edx}) {
        for (unsigned byte = 0; byte < 4; ++byte) {
            sig.push_back(static_cast<char>((reg >> (8 * byte)) & 0xff));  // little-endian
        }
    }
    return sig;
}

}  // namespace vmm::x86
