// Guest-side VFIO: the pure parsers of kernel buffers (region capability chains, irq sets)
// on fabricated bytes, and the real container/group/device path on /dev/vfio, which skips with
// the reason where the host has no VFIO (VMM_TEST_VFIO_BDF names a device bound to vfio-pci
// to exercise a real device).
#include "common/error.h"
#include "vfio/pci_topology.h"
#include "vfio/vfio_container.h"
#include "vfio/vfio_device.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/vfio.h>
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>

namespace vmm::vfio {
namespace {

using ::testing::ElementsAre;

// A VFIO_DEVICE_GET_REGION_INFO answer: the info struct, then capabilities at given offsets.
class RegionInfoBuffer {
public:
    explicit RegionInfoBuffer(std::size_t size, std::uint64_t region_size = 0x4000) : buf_(size, 0) {
        vfio_region_info ri{};
        ri.argsz = static_cast<std::uint32_t>(size);
        ri.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE | VFIO_REGION_INFO_FLAG_MMAP |
                   VFIO_REGION_INFO_FLAG_CAPS;
        ri.size = region_size;
        std::memcpy(buf_.data(), &ri, sizeof ri);
    }
    void set_first(std::uint32_t off) { std::memcpy(buf_.data() + offsetof(vfio_region_info, cap_offset), &off, 4); }
    void cap(std::size_t at, std::uint16_t id, std::uint32_t next) {
        vfio_info_cap_header h{id, 1, next};
        std::memcpy(buf_.data() + at, &h, sizeof h);
    }
    void sparse(std::size_t at, std::uint32_t next, std::vector<VfioSparseArea> areas, std::uint32_t nr = ~0u) {
        vfio_region_info_cap_sparse_mmap s{};
        s.header = {VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1, next};
        s.nr_areas = nr == ~0u ? static_cast<std::uint32_t>(areas.size()) : nr;
        std::memcpy(buf_.data() + at, &s, sizeof s);
        for (std::size_t i = 0; i < areas.size(); ++i) {
            vfio_region_sparse_mmap_area a{areas[i].offset, areas[i].size};
            std::memcpy(buf_.data() + at + sizeof s + i * sizeof a, &a, sizeof a);
        }
    }
    std::span<const std::uint8_t> bytes() const { return buf_; }

private:
    std::vector<std::uint8_t> buf_;
};

TEST(VfioRegionCaps, SparseMmapAreasAroundAnMsixTable) {
    RegionInfoBuffer b(32 + 8 + 16 + 16 + 2 * 16);
    b.set_first(32);
    b.cap(32, 99, 40);  // an unknown capability first: skipped
    b.sparse(40, 0, {{0, 0x2000}, {0x3000, 0x1000}});
    bool sparse = false;
    EXPECT_THAT(parse_region_caps(b.bytes(), 0x4000, &sparse),
                ElementsAre(VfioSparseArea{0, 0x2000}, VfioSparseArea{0x3000, 0x1000}));
    EXPECT_TRUE(sparse);
}

TEST(VfioRegionCaps, HostileChainsAreBounded) {
    // nr_areas larger than the buffer holds: only what fits is read.
    RegionInfoBuffer big(32 + 16 + 16);
    big.set_first(32);
    big.sparse(32, 0, {{0, 0x1000}}, 1000);
    EXPECT_THAT(parse_region_caps(big.bytes(), 0x4000), ElementsAre(VfioSparseArea{0, 0x1000}));

    // An area past the region's end is dropped.
    RegionInfoBuffer past(32 + 16 + 32);
    past.set_first(32);
    past.sparse(32, 0, {{0x3000, 0x2000}, {0, 0x1000}});
    EXPECT_THAT(parse_region_caps(past.bytes(), 0x4000), ElementsAre(VfioSparseArea{0, 0x1000}));

    // A chain that points back at itself, one that points outside, one inside the header.
    RegionInfoBuffer loop(64);
    loop.set_first(32);
    loop.cap(32, 99, 32);
    EXPECT_TRUE(parse_region_caps(loop.bytes(), 0x4000).empty());
    RegionInfoBuffer outside(64);
    outside.set_first(4096);
    EXPECT_TRUE(parse_region_caps(outside.bytes(), 0x4000).empty());
    RegionInfoBuffer inside(64);
    inside.set_first(8);
    EXPECT_TRUE(parse_region_caps(inside.bytes(), 0x4000).empty());
    // Too short to be a region info at all.
    std::vector<std::uint8_t> tiny(8);
    EXPECT_TRUE(parse_region_caps(tiny, 0x4000).empty());
}

TEST(VfioRegionInfo, MmapAreasFollowFlagsAndSparseCap) {
    VfioRegionInfo whole{0, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_MMAP, 0x1000, 0, {}, false};
    EXPECT_THAT(whole.mmap_areas(), ElementsAre(VfioSparseArea{0, 0x1000}));
    VfioRegionInfo none = whole;
    none.has_sparse_cap = true;  // a sparse cap with no areas: nothing may be mapped
    EXPECT_TRUE(none.mmap_areas().empty());
    VfioRegionInfo trapped{0, VFIO_REGION_INFO_FLAG_READ, 0x1000, 0, {}, false};
    EXPECT_TRUE(trapped.mmap_areas().empty());
}

TEST(VfioIrqSet, EventfdsFollowTheHeader) {
    const std::int32_t fds[] = {7, -1, 9};
    const auto buf = build_irq_set(VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
                                   2, 3, fds);
    ASSERT_EQ(buf.size(), sizeof(vfio_irq_set) + 12);
    vfio_irq_set s;
    std::memcpy(&s, buf.data(), sizeof s);
    EXPECT_EQ(s.argsz, buf.size());
    EXPECT_EQ(s.index, static_cast<std::uint32_t>(VFIO_PCI_MSIX_IRQ_INDEX));
    EXPECT_EQ(s.start, 2u);
    EXPECT_EQ(s.count, 3u);
    std::int32_t got[3];
    std::memcpy(got, buf.data() + offsetof(vfio_irq_set, data), sizeof got);
    EXPECT_THAT(got, ElementsAre(7, -1, 9));
    const auto none = build_irq_set(VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 0, 1,
                                    {});
    EXPECT_EQ(none.size(), sizeof(vfio_irq_set));
}

// --- real VFIO ---------------------------------------------------------------------------

TEST(VfioContainerReal, OpensAndChecksApiAndType1) {
    if (const std::string why = VfioContainer::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
    VfioContainer c;
    EXPECT_TRUE(c.iommu_type() == VFIO_TYPE1v2_IOMMU || c.iommu_type() == VFIO_TYPE1_IOMMU);
}

TEST(VfioContainerReal, MissingContainerIsAClearError) {
    EXPECT_THROW(VfioContainer("/nonexistent-vmm/vfio"), std::system_error);
    EXPECT_THAT(VfioContainer::unavailable_reason("/nonexistent-vmm/vfio"), ::testing::HasSubstr("missing"));
}

TEST(VfioDeviceReal, AttachMapReadConfigAndReset) {
    if (const std::string why = VfioContainer::unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
    const char* bdf = std::getenv("VMM_TEST_VFIO_BDF");
    if (!bdf) GTEST_SKIP() << "set VMM_TEST_VFIO_BDF to a device bound to vfio-pci to test a real device";
    const PciTopology topo = PciTopology::scan();
    const PciDeviceInfo* info = topo.find(normalize_bdf(bdf));
    ASSERT_NE(info, nullptr);
    ASSERT_TRUE(info->iommu_group);
    VfioContainer c;
    VfioGroup g(*info->iommu_group);
    c.attach(g);
    const std::size_t size = 2 << 20;
    void* ram = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(ram, MAP_FAILED);
    c.map_dma(0, ram, size);
    VfioDevice d = g.open_device(info->bdf);
    EXPECT_TRUE(d.is_pci());
    EXPECT_EQ(d.read_config(0, 2), info->vendor);
    EXPECT_EQ(d.read_config(2, 2), info->device);
    for (std::uint32_t i = VFIO_PCI_BAR0_REGION_INDEX; i <= VFIO_PCI_BAR5_REGION_INDEX; ++i) {
        for (const auto& m : d.map_region(i)) EXPECT_TRUE(m.mapping.valid());
    }
    if (d.can_reset()) d.reset();
    c.unmap_dma(0, size);
    ::munmap(ram, size);
}

}  // namespace
}  // namespace vmm::vfio
