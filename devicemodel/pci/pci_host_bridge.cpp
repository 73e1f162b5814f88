#include "devicemodel/pci/pci_host_bridge.h"

namespace vmm::pci {

PciHostBridge::PciHostBridge()
    : config_(PciIdentity{.vendor_id = kVendorId,
                          .device_id = kDeviceId,
                          .revision = 0,
                          .class_code = kClassCode,
                          .subsystem_vendor_id = kVendorId,
                          .subsystem_id = 0x1100}) {}

}  // namespace vmm::pci
