// Rebinding host PCI functions to vfio-pci and back (see pci_driver_binder.h).
#include "vfio/pci_driver_binder.h"

#include "common/error.h"
#include "common/fd.h"
#include "common/log.h"
#include "vfio/assignability.h"
#include "vfio/pci_topology.h"

#include <fcntl.h>
#include <unistd.h>

namespace vmm::vfio {

namespace fs = std::filesystem;

void write_sysfs_attr(const fs::path& path, std::string_view value) {
    Fd fd = open_fd(path.c_str(), O_WRONLY);
    // sysfs attributes take the whole value in one write; a short write is an error.
    const ssize_t n = ::write(fd.get(), value.data(), value.size());
    if (n < 0) throw_errno("write \"" + std::string(value) + "\" to " + path.string());
    if (static_cast<std::size_t>(n) != value.size()) {
        throw Error("short write of \"" + std::string(value) + "\" to " + path.string());
    }
}

PciDriverBinder::PciDriverBinder(HostPaths paths, SysfsWriter writer)
    : paths_(std::move(paths)), write_(std::move(writer)) {}

fs::path PciDriverBinder::device_dir(const std::string& bdf) const {
    return paths_.sysfs_root / "bus/pci/devices" / bdf;
}

fs::path PciDriverBinder::driver_dir(const std::string& driver) const {
    return paths_.sysfs_root / "bus/pci/drivers" / driver;
}

std::string PciDriverBinder::current_driver(const std::string& bdf) const {
    return symlink_basename(device_dir(bdf) / "driver");
}

const Reservation& PciDriverBinder::reserve(const std::string& bdf_text, bool force) {
    auto log = logger("vfio");
    const std::string bdf = normalize_bdf(bdf_text);
    if (auto it = reservations_.find(bdf); it != reservations_.end()) return it->second;

    const PciTopology topo = PciTopology::scan(paths_.sysfs_root);
    const PciDeviceInfo* dev = topo.find(bdf);
    if (!dev) throw Error("cannot reserve " + bdf + ": no such PCI device");
    if (dev->is_bridge()) throw Error("cannot reserve " + dev->describe() + ": vfio-pci does not take bridges");
    for (const auto& use : find_host_devices(topo, paths_)) {
        if (use.bdf != bdf) continue;
        if (!force) throw Error("refusing to reserve " + bdf + ": it " + use.what + " (force to take it anyway)");
        log->warn("reserving {} although it {} (forced)", bdf, use.what);
    }
    if (!fs::is_directory(driver_dir("vfio-pci"))) {
        throw Error("cannot reserve " + bdf + ": the vfio-pci driver is not loaded (modprobe vfio-pci)");
    }

    Reservation r{bdf, dev->driver, dev->driver_override};
    if (r.original_driver != "vfio-pci") {
        // driver_override makes the next probe pick vfio-pci whatever the ID tables say
        // (Documentation/ABI/testing/sysfs-bus-pci); it is set before the unbind so that no
        // other driver grabs the device in between.
        write_(device_dir(bdf) / "driver_override", "vfio-pci");
        try {
            if (!r.original_driver.empty()) write_(driver_dir(r.original_driver) / "unbind", bdf);
            write_(paths_.sysfs_root / "bus/pci/drivers_probe", bdf);
            const std::string now = current_driver(bdf);
            if (now != "vfio-pci") {
                throw Error("reserving " + bdf + ": vfio-pci did not bind it (driver now " +
                            (now.empty() ? std::string("none") : now) + "; see the kernel log)");
            }
        } catch (...) {
            try {
                restore(r);
            } catch (const std::exception& e) {
                log->error("could not give {} back to {}: {}", bdf, r.original_driver, e.what());
            }
            throw;
        }
        log->info("reserved {} for vfio-pci (was {})", bdf, r.original_driver.empty() ? "unbound" : r.original_driver);
    }
    return reservations_.emplace(bdf, std::move(r)).first->second;
}

void PciDriverBinder::restore(const Reservation& r) {
    // An empty write clears driver_override; "\n" is what `echo > driver_override` sends.
    write_(device_dir(r.bdf) / "driver_override", r.original_override.empty() ? "\n" : r.original_override);
    const std::string now = current_driver(r.bdf);
    if (now == r.original_driver) return;
    if (!now.empty()) write_(driver_dir(now) / "unbind", r.bdf);
    if (r.original_driver.empty()) return;
    write_(driver_dir(r.original_driver) / "bind", r.bdf);
    const std::string after = current_driver(r.bdf);
    if (after != r.original_driver) {
        throw Error("releasing " + r.bdf + ": " + r.original_driver + " did not take it back (driver now " +
                    (after.empty() ? std::string("none") : after) + ")");
    }
}

void PciDriverBinder::release(const std::string& bdf_text) {
    const std::string bdf = normalize_bdf(bdf_text);
    auto it = reservations_.find(bdf);
    if (it == reservations_.end()) throw Error("cannot release " + bdf + ": it is not reserved");
    const Reservation r = it->second;
    reservations_.erase(it);
    restore(r);
    logger("vfio")->info("released {} back to {}", bdf, r.original_driver.empty() ? "no driver" : r.original_driver);
}

}  // namespace vmm::vfio
