// VFIO container and group (see vfio_container.h).
#include "vfio/vfio_container.h"

#include "common/error.h"
#include "common/log.h"
#include "vfio/vfio_device.h"

#include <fcntl.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstring>

namespace vmm::vfio {

std::string VfioContainer::unavailable_reason(const std::string& path) {
    if (::access(path.c_str(), F_OK) != 0) {
        return path + " is missing (load the vfio and vfio_iommu_type1 modules; an IOMMU must be on)";
    }
    const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return "cannot open " + path + ": " + std::strerror(errno);
    ::close(fd);
    return {};
}

VfioContainer::VfioContainer(const std::string& path) : path_(path), fd_(open_fd(path.c_str(), O_RDWR)) {
    // These ioctls take no pointer; the return value is the answer.
    const int version = ::ioctl(fd_.get(), VFIO_GET_API_VERSION);
    if (version < 0) throw_errno("VFIO_GET_API_VERSION on " + path);
    if (version != VFIO_API_VERSION) {
        throw Error(path + ": VFIO API version " + std::to_string(version) + ", expected " +
                    std::to_string(VFIO_API_VERSION));
    }
    if (::ioctl(fd_.get(), VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) > 0) {
        type_ = VFIO_TYPE1v2_IOMMU;
    } else if (::ioctl(fd_.get(), VFIO_CHECK_EXTENSION, VFIO_TYPE1_IOMMU) > 0) {
        type_ = VFIO_TYPE1_IOMMU;
    } else {
        throw Error(path + ": no type1 IOMMU support (load vfio_iommu_type1)");
    }
}

void VfioContainer::attach(VfioGroup& group) {
    if (!group.viable()) {
        throw Error("VFIO group " + std::to_string(group.id()) +
                    " is not viable: bind every device in it to vfio-pci (vmctl pci check)");
    }
    int cfd = fd_.get();
    // VFIO_GROUP_SET_CONTAINER reads an int holding the container fd.
    if (::ioctl(group.fd(), VFIO_GROUP_SET_CONTAINER, &cfd) < 0) {
        throw_errno("VFIO_GROUP_SET_CONTAINER group " + std::to_string(group.id()));
    }
    if (!iommu_set_) {
        // The IOMMU model can only be chosen once a group is attached (vfio.rst).
        if (::ioctl(fd_.get(), VFIO_SET_IOMMU, type_) < 0) {
            const int err = errno;
            // type1 refuses a platform without interrupt remapping: a device could then forge
            // MSIs to any vector on the host.
            throw_errno("VFIO_SET_IOMMU on " + path_ +
                            (err == EPERM ? " (the IOMMU has no interrupt remapping; vfio_iommu_type1's "
                                            "allow_unsafe_interrupts=1 accepts that risk)"
                                          : ""),
                        err);
        }
        iommu_set_ = true;
    }
    logger("vfio")->info("group {} attached to the container (type1{})", group.id(),
                         type_ == VFIO_TYPE1v2_IOMMU ? "v2" : "");
}

void VfioContainer::map_dma(std::uint64_t iova, void* vaddr, std::uint64_t size, bool writable) {
    vfio_iommu_type1_dma_map map{};
    map.argsz = sizeof map;
    map.flags = VFIO_DMA_MAP_FLAG_READ | (writable ? VFIO_DMA_MAP_FLAG_WRITE : 0);
    map.vaddr = reinterpret_cast<std::uintptr_t>(vaddr);
    map.iova = iova;
    map.size = size;
    // The kernel reads `map` (argsz says how much) and pins the pages.
    if (::ioctl(fd_.get(), VFIO_IOMMU_MAP_DMA, &map) < 0) {
        throw_errno("VFIO_IOMMU_MAP_DMA iova " + std::to_string(iova) + " size " + std::to_string(size));
    }
}

void VfioContainer::unmap_dma(std::uint64_t iova, std::uint64_t size) {
    vfio_iommu_type1_dma_unmap unmap{};
    unmap.argsz = sizeof unmap;
    unmap.iova = iova;
    unmap.size = size;
    if (::ioctl(fd_.get(), VFIO_IOMMU_UNMAP_DMA, &unmap) < 0) {
        throw_errno("VFIO_IOMMU_UNMAP_DMA iova " + std::to_string(iova) + " size " + std::to_string(size));
    }
    if (unmap.size != size) {
        throw Error("VFIO_IOMMU_UNMAP_DMA iova " + std::to_string(iova) + ": unmapped " +
                    std::to_string(unmap.size) + " of " + std::to_string(size) + " bytes");
    }
}

VfioGroup::VfioGroup(unsigned group, const std::string& dev_dir)
    : id_(group), path_(dev_dir + "/" + std::to_string(group)), fd_(open_fd(path_.c_str(), O_RDWR)) {}

namespace {
vfio_group_status group_status(int fd, const std::string& path) {
    vfio_group_status st{};
    st.argsz = sizeof st;
    if (::ioctl(fd, VFIO_GROUP_GET_STATUS, &st) < 0) throw_errno("VFIO_GROUP_GET_STATUS " + path);
    return st;
}
}  // namespace

bool VfioGroup::viable() const { return group_status(fd_.get(), path_).flags & VFIO_GROUP_FLAGS_VIABLE; }

bool VfioGroup::has_container() const {
    return group_status(fd_.get(), path_).flags & VFIO_GROUP_FLAGS_CONTAINER_SET;
}

VfioDevice VfioGroup::open_device(const std::string& bdf) const {
    // The argument is the device's name as a NUL-terminated string.
    const int fd = ::ioctl(fd_.get(), VFIO_GROUP_GET_DEVICE_FD, bdf.c_str());
    if (fd < 0) throw_errno("VFIO_GROUP_GET_DEVICE_FD " + bdf + " in " + path_);
    return VfioDevice(Fd(fd), bdf);
}

}  // namespace vmm::vfio
