// Mapping: an owned mmap(2) region, unmapped on destruction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

namespace vmm {

class Mapping {
public:
    Mapping() = default;
    Mapping(void* addr, std::size_t size) noexcept : addr_(addr), size_(size) {}
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    Mapping(Mapping&& o) noexcept : addr_(std::exchange(o.addr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
    Mapping& operator=(Mapping&& o) noexcept {
        if (this != &o) {
            reset();
            addr_ = std::exchange(o.addr_, nullptr);
            size_ = std::exchange(o.size_, 0);
        }
        return *this;
    }
    ~Mapping() { reset(); }

    std::uint8_t* data() const noexcept { return static_cast<std::uint8_t*>(addr_); }
    std::size_t size() const noexcept { return size_; }
    bool valid() const noexcept { return addr_ != nullptr; }
    void reset() noexcept;

    // How guest RAM is backed: 4 KiB pages (advised MADV_NOHUGEPAGE, whatever the host's THP
    // default); transparent huge pages (the mapping 2 MiB-aligned and advised MADV_HUGEPAGE:
    // 2 MiB pages where the host's THP setting allows, 4 KiB where not); or hugetlbfs pages
    // (MAP_HUGETLB: throws if the host has none reserved).
    enum class RamPages { Small, Transparent, HugeTlb };
    // Anonymous private memory for guest RAM, left out of any child a fork makes (MADV_DONTFORK:
    // else every guest write after a fork would copy its page). Throws std::system_error on
    // failure. With RamPages::Transparent, *thp_refused (if given) is 0 where the kernel took the
    // advice, else its errno (THP compiled out, or refused): the RAM then has small pages.
    static Mapping guest_ram(std::size_t size, RamPages pages, int* thp_refused = nullptr);
    // A shared mapping of an fd (kvm_run, VFIO BARs).
    static Mapping of_fd(int fd, std::size_t size, int prot, long offset = 0);

private:
    void* addr_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace vmm
