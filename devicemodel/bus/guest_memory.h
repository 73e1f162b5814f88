// GuestMemory: the guest-physical address space as a device sees it.
//
// Guest memory is hostile input: every accessor checks the address *and* the length against
// the regions before a host pointer exists; an access never spans two regions. Accessors
// return std::nullopt / false on a bad access, never throw (a bad guest request is not an
// exception). Host-side setup code that must not fail uses the *_or_throw variants.
//
// Thread-safety: the region list is fixed at construction; concurrent reads/writes of guest
// bytes are the guest's business (as on real hardware).
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
    bool contains(std::uint64_t gpa, std::uint64_t len) const noexcept { return span(gpa, len).has_value(); }

    bool read(std::uint64_t gpa, void* dst, std::size_t len) const noexcept;
    bool write(std::uint64_t gpa, const void* src, std::size_t len) const noexcept;

    template <typename T>
    std::optional<T> read_obj(std::uint64_t gpa) const noexcept {
        static_assert(std::is_trivially_copyable_v<T>);
        T v;
        if (!read(gpa, &v, sizeof v)) return std::nullopt;
        return v;
    }
    template <typename T>
    bool write_obj(std::uint64_t gpa, const T& v) const noexcept {
        static_assert(std::is_trivially_copyable_v<T>);
        return write(gpa, &v, sizeof v);
    }

    // For host-side setup (boot loaders): throws vmm::Error naming `what`.
    std::span<std::uint8_t> span_or_throw(std::uint64_t gpa, std::uint64_t len, const std::string& what) const;
    void write_or_throw(std::uint64_t gpa, const void* src, std::size_t len, const std::string& what) const;

private:
    std::vector<GuestRegion> regions_;  // sorted by gpa
};

}  // namespace vmm
