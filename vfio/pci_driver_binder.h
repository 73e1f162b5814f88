// PciDriverBinder: moves host PCI functions to vfio-pci for a guest and back.
//
// reserve(bdf): refuses a bridge, and a device the host uses for itself (boot VGA, root disk,
// default-route NIC) unless forced; remembers the current driver and driver_override; writes
// "vfio-pci" to driver_override, unbinds the host driver, asks the kernel to probe
// (bus/pci/drivers_probe), and checks that vfio-pci took it. release(bdf) restores the
// remembered driver_override and binds the original driver again.
//
// All sysfs writes go through a SysfsWriter so tests can emulate the kernel's reaction. One
// binder per process (vmmd's API thread); not thread-safe.
#pragma once

#include "vfio/host_usage.h"

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>

namespace vmm::vfio {

// Writes `value` to the sysfs attribute `path` in one write(2); throws std::system_error
// naming the path (the kernel's errno, e.g. ENODEV from bind, is the useful part).
using SysfsWriter = std::function<void(const std::filesystem::path& path, std::string_view value)>;
void write_sysfs_attr(const std::filesystem::path& path, std::string_view value);

struct Reservation {
    std::string bdf;
    std::string original_driver;    // empty: it had none
    std::string original_override;  // empty: none was set
};

class PciDriverBinder {
public:
    explicit PciDriverBinder(HostPaths paths = {}, SysfsWriter writer = write_sysfs_attr);

    // Binds `bdf` to vfio-pci. Already reserved: returns the existing reservation. Throws
    // vmm::Error (refusal, vfio-pci not loaded, the kernel did not bind it) or
    // std::system_error (a sysfs write failed); on failure after the unbind it tries to
    // give the device back to its original driver.
    const Reservation& reserve(const std::string& bdf, bool force = false);
    // Gives a reserved device back to its original driver. Throws vmm::Error if `bdf` is not
    // reserved or the original driver did not take it back (the reservation is dropped anyway).
    void release(const std::string& bdf);

    const std::map<std::string, Reservation>& reservations() const { return reservations_; }

private:
    std::filesystem::path device_dir(const std::string& bdf) const;
    std::filesystem::path driver_dir(const std::string& driver) const;
    std::string current_driver(const std::string& bdf) const;
    void restore(const Reservation& r);

    HostPaths paths_;
    SysfsWriter write_;
    std::map<std::string, Reservation> reservations_;
};

}  // namespace vmm::vfio
