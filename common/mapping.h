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

    // Anonymous shared memory (guest RAM). hugepages asks for MAP_HUGETLB and throws if the
    // host has none reserved. Throws std::system_error on failure.
    static Mapping anonymous_shared(std::size_t size, bool hugepages = false);
    // A shared mapping of an fd (kvm_run, VFIO BARs).
    static Mapping of_fd(int fd, std::size_t size, int prot, long offset = 0);

private:
    void* addr_ = nullptr;
    std::size_t size_ = 0;
};

}  // namespace vmm
