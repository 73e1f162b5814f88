// PCI for the test guests: configuration mechanism #1 (CONFIG_ADDRESS 0xcf8, CONFIG_DATA
// 0xcfc..0xcff; PCI Local Bus Specification 3.0 §3.2.2.3.2), bus 0 enumeration, BAR sizing and
// assignment, capability list walk. Called from the BSP only (config mechanism #1 is one
// address/data pair: two CPUs would race on it).
//
// BARs: under QEMU the firmware (SeaBIOS) has assigned them before the guest runs; under
// vmm-anchor nothing has. pci_setup_bars() keeps an assigned 32-bit address and programs one
// itself when a BAR reads 0 (or a 64-bit BAR sits above 4 GiB, which a paging-off guest cannot
// reach), from kPciGuestMmioStart..kPciGuestMmioEnd and kPciGuestIoStart..kPciGuestIoEnd,
// above whatever the firmware already placed there.
#pragma once

#include <stdbool.h>
#include <stdint.h>

enum {
    // Type 0 configuration header offsets (PCI 3.0 §6.1).
    kPciVendorId = 0x00,
    kPciDeviceId = 0x02,
    kPciCommand = 0x04,
    kPciStatus = 0x06,
    kPciClassRevision = 0x08,  // revision in bits 7:0, class code (base, sub, prog-if) in 31:8
    kPciHeaderType = 0x0e,     // bit 7: multi-function
    kPciBar0 = 0x10,
    kPciCapabilityPointer = 0x34,

    kPciCommandIo = 1 << 0,
    kPciCommandMemory = 1 << 1,
    kPciCommandBusMaster = 1 << 2,
    kPciStatusCapabilityList = 1 << 4,

    kPciBarIo = 1 << 0,        // bit 0 of a BAR: I/O space
    kPciBarMemType64 = 2 << 1, // bits 2:1 of a memory BAR: 64-bit
    kPciBarPrefetchable = 1 << 3,

    kPciMaxBars = 6,
    kPciCapVendorSpecific = 0x09,

    kPciGuestIoStart = 0xc000,
    kPciGuestIoEnd = 0x10000,  // exclusive
};
#define kPciGuestMmioStart 0xc0000000u
#define kPciGuestMmioEnd 0xe0000000u  // exclusive

struct pci_dev {
    uint8_t bus, slot, fn;
    uint16_t vendor, device;
    uint32_t class_code;  // base << 16 | sub << 8 | prog-if
    uint8_t revision;
    uint8_t header_type;  // bits 6:0 (0 = device, 1 = PCI-PCI bridge)
};

struct pci_bar {
    uint32_t addr;  // 0 when the BAR is not implemented
    uint32_t size;  // bytes; 0 when not implemented
    bool io;
    bool is64;        // a 64-bit memory BAR (it also uses the next BAR slot, left empty here)
    bool prefetchable;
    bool assigned;    // pci_setup_bars() programmed the address (it read 0 or was above 4 GiB)
};

enum pci_status {
    kPciOk = 0,
    kPciNoSpace,      // the guest window has no room left for a BAR
    kPciBarTooLarge,  // a BAR of 2 GiB or more (or a 64-bit BAR this guest cannot size)
};

// Raw configuration access. off is a byte offset (< 256); 16- and 32-bit accesses must be
// naturally aligned.
uint32_t pci_cfg_read32(uint8_t bus, uint8_t slot, uint8_t fn, uint8_t off);
uint16_t pci_cfg_read16(uint8_t bus, uint8_t slot, uint8_t fn, uint8_t off);
uint8_t pci_cfg_read8(uint8_t bus, uint8_t slot, uint8_t fn, uint8_t off);
void pci_cfg_write32(uint8_t bus, uint8_t slot, uint8_t fn, uint8_t off, uint32_t v);
void pci_cfg_write16(uint8_t bus, uint8_t slot, uint8_t fn, uint8_t off, uint16_t v);
void pci_cfg_write8(uint8_t bus, uint8_t slot, uint8_t fn, uint8_t off, uint8_t v);

// The same on a found device.
uint32_t pci_read32(const struct pci_dev* d, uint8_t off);
uint16_t pci_read16(const struct pci_dev* d, uint8_t off);
uint8_t pci_read8(const struct pci_dev* d, uint8_t off);
void pci_write32(const struct pci_dev* d, uint8_t off, uint32_t v);
void pci_write16(const struct pci_dev* d, uint8_t off, uint16_t v);
void pci_write8(const struct pci_dev* d, uint8_t off, uint8_t v);

// Calls visit for every function present on bus 0 (slots 0..31; functions 1..7 only when
// function 0 is multi-function), in bdf order, until visit returns false. Returns the number
// of functions visited.
typedef bool (*pci_visit_fn)(const struct pci_dev* d, void* ctx);
uint32_t pci_scan_bus0(pci_visit_fn visit, void* ctx);

// The first function on bus 0 with this vendor:device.
bool pci_find_device(uint16_t vendor, uint16_t device, struct pci_dev* out);

// Sizes every BAR of a type 0 function (decoding off meanwhile), assigns the ones that need
// an address (see above), then enables memory and I/O decoding (for the kinds present) and
// bus mastering. bars[] is indexed by BAR number.
enum pci_status pci_setup_bars(const struct pci_dev* d, struct pci_bar bars[kPciMaxBars]);

// Capability list (PCI 3.0 §6.7): stores the offset of each capability, in list order, into
// offsets[] and returns how many. At most kPciMaxCaps: a looping list ends there.
enum { kPciMaxCaps = 48 };
uint32_t pci_caps(const struct pci_dev* d, uint8_t offsets[kPciMaxCaps]);
