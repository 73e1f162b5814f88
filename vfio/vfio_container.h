// VfioContainer and VfioGroup: the legacy VFIO container/group API (Documentation/driver-api/
// vfio.rst). A container is one IOMMU context (/dev/vfio/vfio); groups (/dev/vfio/N) are
// attached to it; the first attachment selects the type1 IOMMU (v2 when available); guest RAM
// is then DMA-mapped at its guest-physical address as IOVA.
//
// Built and used by the anchor's main thread at start-up (and on memory hot-plug later); not
// thread-safe. Every failure throws std::system_error naming the ioctl and the file.
#pragma once

#include "common/fd.h"

#include <cstdint>
#include <string>

namespace vmm::vfio {

class VfioDevice;

inline constexpr const char* kVfioContainerPath = "/dev/vfio/vfio";

class VfioGroup {
public:
    // Opens <dev_dir>/<group>. Throws when it is missing or busy (another process holds it).
    explicit VfioGroup(unsigned group, const std::string& dev_dir = "/dev/vfio");

    unsigned id() const { return id_; }
    int fd() const { return fd_.get(); }
    // VFIO_GROUP_GET_STATUS: every device of the group is bound to vfio-pci/pci-stub/nothing.
    bool viable() const;
    bool has_container() const;
    // VFIO_GROUP_GET_DEVICE_FD for "0000:03:00.0". The group must be in a container with the
    // IOMMU set (VfioContainer::attach).
    VfioDevice open_device(const std::string& bdf) const;

private:
    unsigned id_;
    std::string path_;
    Fd fd_;
};

class VfioContainer {
public:
    // Empty when `path` can be opened read-write, else why not (for logs and GTEST_SKIP).
    static std::string unavailable_reason(const std::string& path = kVfioContainerPath);

    // Opens the container and checks VFIO_API_VERSION and that a type1 IOMMU is supported.
    explicit VfioContainer(const std::string& path = kVfioContainerPath);

    int fd() const { return fd_.get(); }
    // VFIO_TYPE1v2_IOMMU or VFIO_TYPE1_IOMMU: what attach() will set (or has set).
    int iommu_type() const { return type_; }

    // VFIO_GROUP_SET_CONTAINER, then VFIO_SET_IOMMU on the first group. Throws if the group
    // is not viable, with the group number.
    void attach(VfioGroup& group);

    // VFIO_IOMMU_MAP_DMA: the device sees host memory [vaddr, vaddr+size) at iova. vaddr, iova
    // and size must be page-aligned; the memory stays pinned until unmapped.
    void map_dma(std::uint64_t iova, void* vaddr, std::uint64_t size, bool writable = true);
    // VFIO_IOMMU_UNMAP_DMA of a range mapped before (whole mappings only, as type1 requires).
    void unmap_dma(std::uint64_t iova, std::uint64_t size);

private:
    std::string path_;
    Fd fd_;
    int type_ = 0;
    bool iommu_set_ = false;
};

}  // namespace vmm::vfio
