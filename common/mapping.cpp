#include "common/mapping.h"

#include "common/error.h"

#include <sys/mman.h>

#include <string>

namespace vmm {

void Mapping::reset() noexcept {
    if (addr_ != nullptr) {
        ::munmap(addr_, size_);
        addr_ = nullptr;
        size_ = 0;
    }
}

Mapping Mapping::anonymous_shared(std::size_t size, bool hugepages) {
    int flags = MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE;
    if (hugepages) flags |= MAP_HUGETLB;
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) {
        throw_errno("mmap guest RAM of " + std::to_string(size) + " bytes" +
                    (hugepages ? " with hugepages (are hugepages reserved in /proc/sys/vm/nr_hugepages?)" : ""));
    }
    return Mapping(p, size);
}

Mapping Mapping::of_fd(int fd, std::size_t size, int prot, long offset) {
    void* p = ::mmap(nullptr, size, prot, MAP_SHARED, fd, offset);
    if (p == MAP_FAILED) throw_errno("mmap fd " + std::to_string(fd));
    return Mapping(p, size);
}

}  // namespace vmm
