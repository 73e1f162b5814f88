#include "devicemodel/bus/guest_memory.h"

#include "common/error.h"

#include <algorithm>
#include <cstdio>

namespace vmm {

namespace {
std::string hex(std::uint64_t v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}
}  // namespace

GuestMemory::GuestMemory(std::vector<GuestRegion> regions) : regions_(std::move(regions)) {
    std::sort(regions_.begin(), regions_.end(), [](const auto& a, const auto& b) { return a.gpa < b.gpa; });
    for (std::size_t i = 0; i < regions_.size(); ++i) {
        const auto& r = regions_[i];
        if (r.size == 0 || r.gpa + r.size < r.gpa) throw Error("guest memory region at " + hex(r.gpa) + " is empty or wraps");
        if (i > 0 && regions_[i - 1].gpa + regions_[i - 1].size > r.gpa)
            throw Error("guest memory regions overlap at " + hex(r.gpa));
    }
}

std::uint64_t GuestMemory::total_size() const noexcept {
    std::uint64_t t = 0;
    for (const auto& r : regions_) t += r.size;
    return t;
}

std::optional<std::span<std::uint8_t>> GuestMemory::span(std::uint64_t gpa, std::uint64_t len) const noexcept {
    std::uint8_t* host = host_address(gpa, len);
    if (host == nullptr) return std::nullopt;
    return std::span<std::uint8_t>(host, static_cast<std::size_t>(len));
}

bool GuestMemory::read(std::uint64_t gpa, void* dst, std::size_t len) const noexcept {
    auto s = span(gpa, len);
    if (!s) return false;
    if (len) std::memcpy(dst, s->data(), len);
    return true;
}

bool GuestMemory::write(std::uint64_t gpa, const void* src, std::size_t len) const noexcept {
    auto s = span(gpa, len);
    if (!s) return false;
    if (len) std::memcpy(s->data(), src, len);
    return true;
}

std::span<std::uint8_t> GuestMemory::span_or_throw(std::uint64_t gpa, std::uint64_t len, const std::string& what) const {
    auto s = span(gpa, len);
    if (!s) throw Error(what + ": guest range " + hex(gpa) + "+" + hex(len) + " is outside guest RAM");
    return *s;
}

void GuestMemory::write_or_throw(std::uint64_t gpa, const void* src, std::size_t len, const std::string& what) const {
    auto s = span_or_throw(gpa, len, what);
    if (len) std::memcpy(s.data(), src, len);
}

}  // namespace vmm
