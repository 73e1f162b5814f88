#include "common/mapping.h"

#include "common/error.h"

#include <sys/mman.h>

#include <cstdint>
#include <string>

namespace vmm {

void Mapping::reset() noexcept {
    if (addr_ != nullptr) {
        ::munmap(addr_, size_);
        addr_ = nullptr;
        size_ = 0;
    }
}

namespace {

void dont_fork(const Mapping& m) {
    if (::madvise(m.data(), m.size(), MADV_DONTFORK) != 0) throw_errno("madvise(MADV_DONTFORK) guest RAM");
}

}  // namespace

Mapping Mapping::guest_ram(std::size_t size, RamPages pages, int* thp_refused) {
    // A huge page backs guest memory only where the host address and the guest address agree
    // modulo 2 MiB (KVM maps its 2 MiB pages from the host's); guest RAM slots start 2 MiB-aligned,
    // so the host side is aligned too: map 2 MiB more, unmap the slack on both sides.
    constexpr std::size_t kHuge = std::size_t{2} << 20;
    const bool thp = pages == RamPages::Transparent;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
    if (pages == RamPages::HugeTlb) flags |= MAP_HUGETLB;
    const std::size_t len = thp ? size + kHuge : size;
    void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) {
        throw_errno("mmap guest RAM of " + std::to_string(size) + " bytes" +
                    (pages == RamPages::HugeTlb ? " with hugepages (are hugepages reserved in /proc/sys/vm/nr_hugepages?)" : ""));
    }
    void* base = p;
    if (thp) {
        const auto start = reinterpret_cast<std::uintptr_t>(p);
        const auto aligned = (start + kHuge - 1) & ~(kHuge - 1);
        if (aligned > start) ::munmap(p, aligned - start);
        if (const std::size_t tail = start + len - (aligned + size); tail > 0) ::munmap(reinterpret_cast<void*>(aligned + size), tail);
        base = reinterpret_cast<void*>(aligned);
    }
    Mapping ram(base, size);
    dont_fork(ram);
    if (pages == RamPages::Small) {
        // Small pages even where the host's THP setting is "always" (which would otherwise give
        // this mapping huge pages wherever an aligned 2 MiB fits): an idle guest costs the pages
        // it touched. Best effort: a kernel without THP has small pages anyway.
        ::madvise(ram.data(), size, MADV_NOHUGEPAGE);
    } else if (thp) {
        const int refused = ::madvise(ram.data(), size, MADV_HUGEPAGE) == 0 ? 0 : errno;
        if (thp_refused != nullptr) *thp_refused = refused;
    }
    return ram;
}

Mapping Mapping::of_fd(int fd, std::size_t size, int prot, long offset) {
    void* p = ::mmap(nullptr, size, prot, MAP_SHARED, fd, offset);
    if (p == MAP_FAILED) throw_errno("mmap fd " + std::to_string(fd));
    return Mapping(p, size);
}

}  // namespace vmm
