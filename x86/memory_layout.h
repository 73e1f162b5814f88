// The guest-physical memory map every domain gets (x86, PC-compatible).
//
//   0x0000_0000  real-mode IVT + BDA (guest's)
//   0x0000_0500  boot GDT, IDT (kGdtAddr, kIdtAddr)
//   0x0000_7000  Linux boot_params (zero page)
//   0x0000_8ff0  boot stack (grows down)
//   0x0000_9000  identity page tables for 64-bit entry (PML4, PDPT, 4 PDs: 0x9000..0xefff)
//   0x0002_0000  kernel command line (up to kCmdlineMax)
//   0x0009_fc00  EBDA: MP floating pointer + MP table       [e820 reserved]
//   0x000a_0000  VGA hole / option ROMs                      [not RAM in e820]
//   0x000f_0000  BIOS area: RSDP (ACPI)                      [e820 reserved]
//   0x0010_0000  kernel (bzImage protected-mode part, multiboot, flat test guests)
//   ...          RAM up to min(memory, kPciHoleStart)
//   0xc000_0000  32-bit PCI hole: BARs, ECAM, IOAPIC, LAPIC, TSS  (no RAM)
//   0x1_0000_0000 RAM above 4 GiB (the part of memory that did not fit below the hole)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vmm::x86 {

inline constexpr std::uint64_t kGdtAddr = 0x500;
inline constexpr std::uint64_t kIdtAddr = 0x520;
inline constexpr std::uint64_t kBootParamsAddr = 0x7000;
inline constexpr std::uint64_t kBootStackTop = 0x8ff0;
inline constexpr std::uint64_t kPml4Addr = 0x9000;
inline constexpr std::uint64_t kPdptAddr = 0xa000;
inline constexpr std::uint64_t kPdAddr = 0xb000;  // four 4 KiB page directories: 4 GiB of 2 MiB pages
inline constexpr std::uint64_t kCmdlineAddr = 0x20000;
inline constexpr std::uint64_t kCmdlineMax = 0x10000;
inline constexpr std::uint64_t kEbdaStart = 0x9fc00;
inline constexpr std::uint64_t kLowRamEnd = 0xa0000;      // end of conventional memory
inline constexpr std::uint64_t kBiosAreaStart = 0xf0000;  // RSDP lives in 0xe0000..0xfffff
inline constexpr std::uint64_t kHighMemStart = 0x100000;  // 1 MiB
inline constexpr std::uint64_t kPciHoleStart = 0xc0000000;
inline constexpr std::uint64_t k4GiB = 0x100000000ull;
inline constexpr std::uint64_t kIoapicAddr = 0xfec00000;
inline constexpr std::uint64_t kLapicAddr = 0xfee00000;
// KVM needs three pages for the real-mode TSS and one for the EPT identity map on Intel;
// placed just below the BIOS flash region, inside the PCI hole, as QEMU does.
inline constexpr std::uint64_t kKvmIdentityMapAddr = 0xfeffc000;
inline constexpr std::uint64_t kKvmTssAddr = 0xfeffd000;

// PCI (one root bus segment 0, buses 0..255), shared by the PCI bus model, the ACPI tables
// (MCFG, the host bridge's _CRS and _PRT) and the test guests:
//   0xc000_0000 - 0xdfff_ffff  32-bit BAR window (non-prefetchable and prefetchable)
//   0xe000_0000 - 0xefff_ffff  ECAM / MMCONFIG (1 MiB per bus, 256 buses)
//   above RAM (>= 4 GiB)       64-bit BAR window, kPciMmio64Size long
//   I/O ports 0xc000 - 0xffff  I/O BAR window
inline constexpr std::uint64_t kPciMmio32Start = 0xc0000000;
inline constexpr std::uint64_t kPciMmio32End = 0xe0000000;  // exclusive
inline constexpr std::uint64_t kPciEcamBase = 0xe0000000;
inline constexpr std::uint64_t kPciEcamSize = 0x10000000;
inline constexpr std::uint64_t kPciMmio64Size = 0x1000000000ull;  // 64 GiB
inline constexpr std::uint16_t kPciIoStart = 0xc000;
inline constexpr std::uint32_t kPciIoEnd = 0x10000;  // exclusive
// Start of the 64-bit BAR window: the first 1 GiB boundary above RAM (and at least 4 GiB).
std::uint64_t pci_mmio64_start(std::uint64_t high_ram_size);

// Legacy INTx routing, fixed (no interrupt links): the device in slot `slot` (0..31) asserting
// pin `pin` (0 = INTA .. 3 = INTD) drives IOAPIC pin / GSI 16 + ((slot + pin) % 4), level,
// active-low, as the ACPI _PRT and the MP table's I/O interrupt entries announce.
constexpr std::uint32_t pci_intx_gsi(unsigned slot, unsigned pin) { return 16 + ((slot + pin) % 4); }

// Guest RAM as KVM memory slots: below the PCI hole and (if any) above 4 GiB.
struct RamLayout {
    std::uint64_t low_size = 0;   // RAM at [0, low_size)
    std::uint64_t high_size = 0;  // RAM at [4 GiB, 4 GiB + high_size)
    std::uint64_t total() const { return low_size + high_size; }
};
// Throws vmm::Error for sizes below 2 MiB or not a multiple of 4 KiB.
RamLayout ram_layout(std::uint64_t memory_bytes);

// E820 types (ACPI spec, "Address Range Types").
enum class E820Type : std::uint32_t { Ram = 1, Reserved = 2, Acpi = 3, Nvs = 4, Unusable = 5 };
struct E820Entry {
    std::uint64_t addr;
    std::uint64_t size;
    E820Type type;
    bool operator==(const E820Entry&) const = default;
};
// The map the guest is told about: RAM minus the EBDA/VGA/BIOS holes, plus the reserved
// areas (EBDA, BIOS area), sorted and non-overlapping.
std::vector<E820Entry> e820_map(const RamLayout& ram);
std::string to_string(const std::vector<E820Entry>& map);

}  // namespace vmm::x86
