// The region and interrupt descriptions of a VFIO device (VFIO_DEVICE_GET_REGION_INFO,
// VFIO_DEVICE_GET_IRQ_INFO), shared by VfioDevice and the passthrough model's fakes.
#pragma once

#include "common/mapping.h"

#include <cstdint>
#include <vector>

namespace vmm::vfio {

struct VfioSparseArea {
    std::uint64_t offset = 0;  // within the region
    std::uint64_t size = 0;
    bool operator==(const VfioSparseArea&) const = default;
};

struct VfioRegionInfo {
    std::uint32_t index = 0;
    std::uint32_t flags = 0;  // VFIO_REGION_INFO_FLAG_*
    std::uint64_t size = 0;
    std::uint64_t offset = 0;  // of the region in the device fd
    // With VFIO_REGION_INFO_CAP_SPARSE_MMAP only these parts may be mmapped (the rest, e.g. the
    // MSI-X table, must be trapped). Empty with the MMAP flag: the whole region is mappable.
    std::vector<VfioSparseArea> sparse;
    bool has_sparse_cap = false;

    bool readable() const;
    bool writable() const;
    bool mappable() const;
    // The parts that map_region() maps.
    std::vector<VfioSparseArea> mmap_areas() const;
};

struct VfioIrqInfo {
    std::uint32_t index = 0;
    std::uint32_t flags = 0;  // VFIO_IRQ_INFO_*
    std::uint32_t count = 0;  // vectors; 0: the device does not have this interrupt
};

struct VfioRegionMapping {
    std::uint64_t offset = 0;  // within the region
    Mapping mapping;
};

}  // namespace vmm::vfio
