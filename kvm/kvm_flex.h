// Variable-length KVM ioctl arguments, laid out as C lays them out.
//
// linux-libc-dev 6.1 declares their trailing arrays with __DECLARE_FLEX_ARRAY, which expands to
// an empty struct before the array. An empty struct takes one byte in C++, so under g++ the
// entries move (kvm_cpuid2.entries to offset 12, kvm_irq_routing.entries to 16) and sizeof
// changes, and with it the ioctl numbers, which encode the header size: KVM answers ENOTTY.
// These headers are the C layouts; the entry structs themselves are unaffected.
// Private to kvm/.
#pragma once

#include <linux/kvm.h>

#include <cstdint>

namespace vmm::kvm_flex {

struct CpuidHeader {  // struct kvm_cpuid2 without entries
    std::uint32_t nent;
    std::uint32_t padding;
};
struct MsrsHeader {  // struct kvm_msrs without entries
    std::uint32_t nmsrs;
    std::uint32_t pad;
};
struct RoutingHeader {  // struct kvm_irq_routing without entries
    std::uint32_t nr;
    std::uint32_t flags;
};

inline constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);
inline constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CpuidHeader);
inline constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);
inline constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, MsrsHeader);
inline constexpr unsigned long kSetGsiRouting = _IOW(KVMIO, 0x6a, RoutingHeader);

// The numbers a C program gets from <linux/kvm.h> on x86-64.
static_assert(kGetSupportedCpuid == 0xc008ae05ul);
static_assert(kSetCpuid2 == 0x4008ae90ul);
static_assert(kSetMsrs == 0x4008ae89ul);
static_assert(kSetGsiRouting == 0x4008ae6aul);

// A header followed by `n` entries in one zeroed allocation, as the ioctls read it.
template <typename Header, typename Entry>
class FlexBuffer {
public:
    explicit FlexBuffer(std::size_t n) : bytes_(sizeof(Header) + n * sizeof(Entry)), buf_(new std::uint8_t[bytes_]()) {}
    ~FlexBuffer() { delete[] buf_; }
    FlexBuffer(const FlexBuffer&) = delete;
    FlexBuffer& operator=(const FlexBuffer&) = delete;
    // The buffer is a zeroed byte array of header+entries; Header and Entry are C structs
    // with alignment <= 8, and new[] aligns to at least 16.
    Header* header() { return reinterpret_cast<Header*>(buf_); }
    Entry* entries() { return reinterpret_cast<Entry*>(buf_ + sizeof(Header)); }
    void* data() { return buf_; }

private:
    std::size_t bytes_;
    std::uint8_t* buf_;
};

}  // namespace vmm::kvm_flex
