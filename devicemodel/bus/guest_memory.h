// GuestMemory: the guest-physical address space as a device sees it.
//
// Guest memory is hostile input: every accessor checks the address *and* the length against
// the regions before a host pointer exists; an access never spans two regions. Accessors
// return std::nullopt / false on a bad access, never throw (a bad guest request is not an
// exception). Host-side setup code that must not fail uses the *_or_throw variants.
//
// Thread-safety: the region list is fixed at construction; concurrent reads/writes of guest
// bytes are the guest's business (as on real hardware). But a naturally aligned integer of 2, 4
// or 8 bytes (a ring index, a flags word) is read and written by read_obj/write_obj in one
// access, as the guest's own 16-bit store of an index is: the other side may be writing it
// right then, and a copy made byte by byte (glibc's memcpy of 2 or 3 bytes) can return the new
// high byte with the old low one, an avail idx up to 255 ahead of the driver's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

namespace vmm {

struct GuestRegion {
    std::uint64_t gpa;
    std::uint64_t size;
    std::uint8_t* host;  // not owned
};

class GuestMemory {
public:
    GuestMemory() = default;
    // Regions must not overlap; throws vmm::Error if they do or one wraps around.
    explicit GuestMemory(std::vector<GuestRegion> regions);

    const std::vector<GuestRegion>& regions() const noexcept { return regions_; }
    std::uint64_t total_size() const noexcept;

    // A host view of [gpa, gpa+len) if it lies wholly inside one region.
    std::optional<std::span<std::uint8_t>> span(std::uint64_t gpa, std::uint64_t len) const noexcept;
    // The same check, answered with the host address of gpa (nullptr: not wholly inside one
    // region). Inline and in a register: for the per-descriptor lookups of a virtqueue walk,
    // where span()'s optional, returned through memory and copied into a buffer record, stalled
    // on store forwarding (~10 % of the device model's user-space time per request, issue #3).
    std::uint8_t* host_address(std::uint64_t gpa, std::uint64_t len) const noexcept {
        // A guest has a handful of regions (RAM below and above the PCI hole): a linear scan of
        // the sorted, disjoint list is cheaper than a binary search. At most one region holds gpa.
        for (const GuestRegion& r : regions_) {
            if (gpa < r.gpa) break;
            const std::uint64_t off = gpa - r.gpa;
            if (off >= r.size) continue;
            // off < size, so size - off cannot wrap.
            return len > r.size - off ? nullptr : r.host + off;
        }
        return nullptr;
    }
    bool contains(std::uint64_t gpa, std::uint64_t len) const noexcept { return span(gpa, len).has_value(); }

    bool read(std::uint64_t gpa, void* dst, std::size_t len) const noexcept;
    bool write(std::uint64_t gpa, const void* src, std::size_t len) const noexcept;

    template <typename T>
    std::optional<T> read_obj(std::uint64_t gpa) const noexcept {
        static_assert(std::is_trivially_copyable_v<T>);
        if constexpr (single_access<T>()) {
            const auto s = span(gpa, sizeof(T));
            if (!s) return std::nullopt;
            if (aligned<T>(s->data())) return __atomic_load_n(reinterpret_cast<const T*>(s->data()), __ATOMIC_RELAXED);
        }
        T v;
        if (!read(gpa, &v, sizeof v)) return std::nullopt;
        return v;
    }
    template <typename T>
    bool write_obj(std::uint64_t gpa, const T& v) const noexcept {
        static_assert(std::is_trivially_copyable_v<T>);
        if constexpr (single_access<T>()) {
            const auto s = span(gpa, sizeof(T));
            if (!s) return false;
            if (aligned<T>(s->data())) {
                __atomic_store_n(reinterpret_cast<T*>(s->data()), v, __ATOMIC_RELAXED);
                return true;
            }
        }
        return write(gpa, &v, sizeof v);
    }

    // For host-side setup (boot loaders): throws vmm::Error naming `what`.
    std::span<std::uint8_t> span_or_throw(std::uint64_t gpa, std::uint64_t len, const std::string& what) const;
    void write_or_throw(std::uint64_t gpa, const void* src, std::size_t len, const std::string& what) const;

private:
    // Integers the hardware loads and stores in one access (read_obj/write_obj above).
    template <typename T>
    static constexpr bool single_access() {
        return std::is_integral_v<T> && (sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8);
    }
    template <typename T>
    static bool aligned(const std::uint8_t* p) noexcept {
        return reinterpret_cast<std::uintptr_t>(p) % sizeof(T) == 0;
    }

    std::vector<GuestRegion> regions_;  // sorted by gpa
};

}  // namespace vmm
