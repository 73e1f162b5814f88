// VFIO device fd wrapper (see vfio_device.h).
#include "vfio/vfio_device.h"

#include "common/error.h"
#include "common/log.h"

#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>

namespace vmm::vfio {

// linux-libc-dev's flexible arrays must not move in C++ (docs/ARCHITECTURE.md, KVM pitfall).
static_assert(sizeof(vfio_irq_set) == 20 && offsetof(vfio_irq_set, data) == 20);
static_assert(sizeof(vfio_region_info) == 32);
static_assert(sizeof(vfio_info_cap_header) == 8);
static_assert(sizeof(vfio_region_info_cap_sparse_mmap) == 16 &&
              offsetof(vfio_region_info_cap_sparse_mmap, areas) == 16);
static_assert(sizeof(vfio_region_sparse_mmap_area) == 16);

namespace {

template <typename T>
T load(std::span<const std::uint8_t> buf, std::size_t off) {
    T v;
    std::memcpy(&v, buf.data() + off, sizeof v);
    return v;
}

constexpr int kMaxCaps = 64;

}  // namespace

bool VfioRegionInfo::readable() const { return flags & VFIO_REGION_INFO_FLAG_READ; }
bool VfioRegionInfo::writable() const { return flags & VFIO_REGION_INFO_FLAG_WRITE; }
bool VfioRegionInfo::mappable() const { return (flags & VFIO_REGION_INFO_FLAG_MMAP) && size > 0; }

std::vector<VfioSparseArea> VfioRegionInfo::mmap_areas() const {
    if (!mappable()) return {};
    if (has_sparse_cap) return sparse;
    return {VfioSparseArea{0, size}};
}

std::vector<VfioSparseArea> parse_region_caps(std::span<const std::uint8_t> info, std::uint64_t region_size,
                                              bool* found_sparse) {
    std::vector<VfioSparseArea> areas;
    if (found_sparse) *found_sparse = false;
    if (info.size() < sizeof(vfio_region_info)) return areas;
    const auto ri = load<vfio_region_info>(info, 0);
    if (!(ri.flags & VFIO_REGION_INFO_FLAG_CAPS)) return areas;
    std::size_t off = ri.cap_offset;
    std::size_t min_next = sizeof(vfio_region_info);
    for (int ttl = kMaxCaps; ttl > 0 && off != 0; --ttl) {
        // Each capability must lie inside the buffer and after the previous one (no loops).
        if (off < min_next || off > info.size() || info.size() - off < sizeof(vfio_info_cap_header)) break;
        const auto hdr = load<vfio_info_cap_header>(info, off);
        if (hdr.id == VFIO_REGION_INFO_CAP_SPARSE_MMAP &&
            info.size() - off >= sizeof(vfio_region_info_cap_sparse_mmap)) {
            const auto sp = load<vfio_region_info_cap_sparse_mmap>(info, off);
            const std::size_t room = (info.size() - off - sizeof sp) / sizeof(vfio_region_sparse_mmap_area);
            if (found_sparse) *found_sparse = true;
            for (std::size_t i = 0; i < sp.nr_areas && i < room; ++i) {
                const auto a = load<vfio_region_sparse_mmap_area>(
                    info, off + sizeof sp + i * sizeof(vfio_region_sparse_mmap_area));
                if (a.size == 0 || a.offset > region_size || a.size > region_size - a.offset) continue;
                areas.push_back({a.offset, a.size});
            }
        }
        min_next = off + sizeof(vfio_info_cap_header);
        off = hdr.next;
    }
    return areas;
}

std::vector<std::uint8_t> build_irq_set(std::uint32_t index, std::uint32_t flags, std::uint32_t start,
                                        std::uint32_t count, std::span<const std::int32_t> fds) {
    std::vector<std::uint8_t> buf(sizeof(vfio_irq_set) + fds.size_bytes());
    vfio_irq_set set{};
    set.argsz = static_cast<std::uint32_t>(buf.size());
    set.flags = flags;
    set.index = index;
    set.start = start;
    set.count = count;
    std::memcpy(buf.data(), &set, sizeof set);
    if (!fds.empty()) std::memcpy(buf.data() + sizeof set, fds.data(), fds.size_bytes());
    return buf;
}

VfioDevice::VfioDevice(Fd fd, std::string name) : name_(std::move(name)), fd_(std::move(fd)) {
    vfio_device_info info{};
    info.argsz = sizeof info;
    if (::ioctl(fd_.get(), VFIO_DEVICE_GET_INFO, &info) < 0) throw_errno("VFIO_DEVICE_GET_INFO " + name_);
    flags_ = info.flags;
    num_irqs_ = info.num_irqs;
    for (std::uint32_t i = 0; i < info.num_regions; ++i) regions_.push_back(query_region(i));
}

VfioRegionInfo VfioDevice::query_region(std::uint32_t index) const {
    std::vector<std::uint8_t> buf(sizeof(vfio_region_info));
    for (int attempt = 0; attempt < 2; ++attempt) {
        vfio_region_info ri{};
        ri.argsz = static_cast<std::uint32_t>(buf.size());
        ri.index = index;
        std::memcpy(buf.data(), &ri, sizeof ri);
        // The kernel fills up to argsz bytes and sets argsz to what the caps need.
        if (::ioctl(fd_.get(), VFIO_DEVICE_GET_REGION_INFO, buf.data()) < 0) {
            // Regions past the PCI ones (e.g. VGA on a non-VGA device) answer EINVAL: no region.
            if (errno == EINVAL) return VfioRegionInfo{index, 0, 0, 0, {}, false};
            throw_errno("VFIO_DEVICE_GET_REGION_INFO " + name_ + " region " + std::to_string(index));
        }
        std::memcpy(&ri, buf.data(), sizeof ri);
        if (ri.argsz > buf.size() && attempt == 0) {
            buf.assign(ri.argsz, 0);
            continue;
        }
        VfioRegionInfo r{index, ri.flags, ri.size, ri.offset, {}, false};
        r.sparse = parse_region_caps(std::span(buf.data(), std::min<std::size_t>(buf.size(), ri.argsz)), ri.size,
                                     &r.has_sparse_cap);
        return r;
    }
    throw Error("VFIO_DEVICE_GET_REGION_INFO " + name_ + " region " + std::to_string(index) + ": size kept growing");
}

bool VfioDevice::is_pci() const { return flags_ & VFIO_DEVICE_FLAGS_PCI; }
bool VfioDevice::can_reset() const { return flags_ & VFIO_DEVICE_FLAGS_RESET; }

const VfioRegionInfo& VfioDevice::region(std::uint32_t index) const {
    if (index >= regions_.size()) throw Error(name_ + ": no VFIO region " + std::to_string(index));
    return regions_[index];
}

VfioIrqInfo VfioDevice::irq_info(std::uint32_t index) const {
    if (index >= num_irqs_) return VfioIrqInfo{index, 0, 0};
    vfio_irq_info info{};
    info.argsz = sizeof info;
    info.index = index;
    if (::ioctl(fd_.get(), VFIO_DEVICE_GET_IRQ_INFO, &info) < 0) {
        throw_errno("VFIO_DEVICE_GET_IRQ_INFO " + name_ + " index " + std::to_string(index));
    }
    return VfioIrqInfo{index, info.flags, info.count};
}

void VfioDevice::read_region(std::uint32_t index, std::uint64_t offset, std::span<std::uint8_t> out) const {
    const VfioRegionInfo& r = region(index);
    if (offset > r.size || out.size() > r.size - offset) {
        throw Error(name_ + ": read of " + std::to_string(out.size()) + " bytes at " + std::to_string(offset) +
                    " leaves region " + std::to_string(index));
    }
    const ssize_t n = ::pread(fd_.get(), out.data(), out.size(), static_cast<off_t>(r.offset + offset));
    if (n < 0 || static_cast<std::size_t>(n) != out.size()) {
        throw_errno(name_ + ": pread region " + std::to_string(index) + " offset " + std::to_string(offset),
                    n < 0 ? errno : EIO);
    }
}

void VfioDevice::write_region(std::uint32_t index, std::uint64_t offset, std::span<const std::uint8_t> in) const {
    const VfioRegionInfo& r = region(index);
    if (offset > r.size || in.size() > r.size - offset) {
        throw Error(name_ + ": write of " + std::to_string(in.size()) + " bytes at " + std::to_string(offset) +
                    " leaves region " + std::to_string(index));
    }
    const ssize_t n = ::pwrite(fd_.get(), in.data(), in.size(), static_cast<off_t>(r.offset + offset));
    if (n < 0 || static_cast<std::size_t>(n) != in.size()) {
        throw_errno(name_ + ": pwrite region " + std::to_string(index) + " offset " + std::to_string(offset),
                    n < 0 ? errno : EIO);
    }
}

std::uint32_t VfioDevice::read_config(std::uint32_t offset, unsigned bytes) const {
    if (bytes != 1 && bytes != 2 && bytes != 4) throw Error("config read of " + std::to_string(bytes) + " bytes");
    std::uint8_t b[4] = {};
    read_region(VFIO_PCI_CONFIG_REGION_INDEX, offset, std::span(b, bytes));
    return b[0] | (b[1] << 8) | (b[2] << 16) | (static_cast<std::uint32_t>(b[3]) << 24);
}

void VfioDevice::write_config(std::uint32_t offset, std::uint32_t value, unsigned bytes) const {
    if (bytes != 1 && bytes != 2 && bytes != 4) throw Error("config write of " + std::to_string(bytes) + " bytes");
    const std::uint8_t b[4] = {static_cast<std::uint8_t>(value), static_cast<std::uint8_t>(value >> 8),
                               static_cast<std::uint8_t>(value >> 16), static_cast<std::uint8_t>(value >> 24)};
    write_region(VFIO_PCI_CONFIG_REGION_INDEX, offset, std::span(b, bytes));
}

std::vector<VfioRegionMapping> VfioDevice::map_region(std::uint32_t index) const {
    const VfioRegionInfo& r = region(index);
    std::vector<VfioRegionMapping> out;
    const long page = ::sysconf(_SC_PAGESIZE);
    const int prot = (r.readable() ? PROT_READ : 0) | (r.writable() ? PROT_WRITE : 0);
    for (const auto& a : r.mmap_areas()) {
        // vfio-pci maps whole pages only; an unaligned area (a BAR smaller than a page) is trapped.
        if (a.offset % static_cast<std::uint64_t>(page) != 0 || a.size % static_cast<std::uint64_t>(page) != 0) {
            logger("vfio")->debug("{}: region {} area {:#x}+{:#x} not page-aligned, trapped", name_, index, a.offset,
                                  a.size);
            continue;
        }
        out.push_back({a.offset, Mapping::of_fd(fd_.get(), a.size, prot, static_cast<long>(r.offset + a.offset))});
    }
    return out;
}

void VfioDevice::set_irqs(std::span<const std::uint8_t> irq_set, const char* what) {
    // The kernel reads argsz bytes: the header and the eventfd array behind it.
    if (::ioctl(fd_.get(), VFIO_DEVICE_SET_IRQS, irq_set.data()) < 0) {
        throw_errno(std::string("VFIO_DEVICE_SET_IRQS (") + what + ") " + name_);
    }
}

void VfioDevice::enable_msi(std::span<const std::int32_t> eventfds) {
    const auto buf = build_irq_set(VFIO_PCI_MSI_IRQ_INDEX, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
                                   0, static_cast<std::uint32_t>(eventfds.size()), eventfds);
    set_irqs(buf, "MSI");
}

void VfioDevice::enable_msix(std::span<const std::int32_t> eventfds) {
    const auto buf = build_irq_set(VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
                                   0, static_cast<std::uint32_t>(eventfds.size()), eventfds);
    set_irqs(buf, "MSI-X");
}

void VfioDevice::enable_intx(std::int32_t trigger, std::int32_t unmask) {
    const std::int32_t t[] = {trigger};
    set_irqs(build_irq_set(VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 1, t),
             "INTx trigger");
    const std::int32_t u[] = {unmask};
    set_irqs(build_irq_set(VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_UNMASK, 0, 1, u),
             "INTx unmask eventfd");
}

void VfioDevice::unmask_intx() {
    set_irqs(build_irq_set(VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 0, 1, {}),
             "INTx unmask");
}

void VfioDevice::disable_irq(std::uint32_t index) {
    set_irqs(build_irq_set(index, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0, {}), "disable");
}

void VfioDevice::reset() {
    if (!can_reset()) throw Error(name_ + ": the device offers no reset (VFIO_DEVICE_FLAGS_RESET clear)");
    if (::ioctl(fd_.get(), VFIO_DEVICE_RESET) < 0) throw_errno("VFIO_DEVICE_RESET " + name_);
}

}  // namespace vmm::vfio
