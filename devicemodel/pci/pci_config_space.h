// PciConfigSpace: the bytes of one function's 4 KiB configuration space with the standard
// type-0 header semantics (PCI Local Bus Specification 3.0 §6.1, §6.2.5, §6.7):
//   - identity: vendor/device/revision/class/subsystem, read-only;
//   - command (IO, MEM, bus master, parity, SERR, INTx disable writable), status read-only
//     (bit 4 "capabilities list" set once a capability exists, bit 3 "interrupt status" driven
//     by the device through set_interrupt_status);
//   - BARs: sizing falls out of the writable mask: writing all-ones reads back ~(size-1) with
//     the read-only type bits (I/O bit 0, memory type 64-bit bits 2:1, prefetchable bit 3);
//     a Mem64 BAR's upper dword carries the upper half of the mask;
//   - capability list: add_capability appends to the chain starting at 0x34 (dword-aligned
//     entries from 0x40), capability bytes are read-only unless set_writable says otherwise;
//   - interrupt line (0x3c) writable, interrupt pin (0x3d) read-only;
//   - everything else (expansion ROM, extended space 0x100..0xfff) reads 0 and ignores writes.
// A write applies bytewise: new = (old & ~wmask) | (value & wmask).
//
// Not thread-safe: the owning device serializes access (PciRootBus already calls config
// accessors one at a time).
#pragma once

#include "devicemodel/pci/pci_device.h"

#include <array>
#include <cstdint>
#include <optional>
#include <span>

namespace vmm::pci {

struct PciIdentity {
    std::uint16_t vendor_id = 0xffff;
    std::uint16_t device_id = 0xffff;
    std::uint8_t revision = 0;
    std::uint32_t class_code = 0;  // 24 bits: class << 16 | subclass << 8 | prog-if
    std::uint16_t subsystem_vendor_id = 0;
    std::uint16_t subsystem_id = 0;
};

class PciConfigSpace {
public:
    explicit PciConfigSpace(const PciIdentity& id);

    // Guest accesses (any offset < 4096, 1..4 bytes; bytes past 4096 read 0xff / are dropped).
    void read(std::uint32_t offset, std::span<std::uint8_t> data) const;
    void write(std::uint32_t offset, std::span<const std::uint8_t> data);

    // Setup (throws vmm::Error on a programming mistake): declares BAR `index`.
    void add_bar(unsigned index, const PciBar& bar);
    std::optional<PciBar> bar(unsigned index) const;
    // The address the BAR register(s) currently hold (type bits stripped).
    std::uint64_t bar_address(unsigned index) const;
    // Programs the BAR register(s) as firmware would (through the writable mask).
    void set_bar_address(unsigned index, std::uint64_t address);

    // Appends a capability `id` whose bytes after the id/next pair are `body`; returns its offset.
    // Throws vmm::Error if the standard space (up to 0xff) is full.
    std::uint8_t add_capability(std::uint8_t id, std::span<const std::uint8_t> body);
    // Makes bits writable: mask bytes apply from `offset` on.
    void set_writable(std::uint32_t offset, std::span<const std::uint8_t> mask);

    void set_interrupt_pin(std::uint8_t pin);  // 0 = none, 1 = INTA# .. 4 = INTD#
    void set_interrupt_status(bool pending);   // status bit 3 (PCI 3.0 §6.2.3)

    std::uint16_t command() const { return read16(0x04); }

    // Raw little-endian access for the owning device (no masks).
    std::uint8_t read8(std::uint32_t offset) const { return bytes_[offset]; }
    std::uint16_t read16(std::uint32_t offset) const;
    std::uint32_t read32(std::uint32_t offset) const;
    void store8(std::uint32_t offset, std::uint8_t v) { bytes_[offset] = v; }
    void store16(std::uint32_t offset, std::uint16_t v);
    void store32(std::uint32_t offset, std::uint32_t v);

private:
    void set_wmask32(std::uint32_t offset, std::uint32_t mask);

    std::array<std::uint8_t, kConfigSpaceSize> bytes_{};
    std::array<std::uint8_t, kConfigSpaceSize> wmask_{};
    std::array<std::optional<PciBar>, kNumBars> bars_{};
    std::array<bool, kNumBars> upper_half_{};
    std::uint8_t last_cap_ = 0;
    std::uint32_t next_cap_ = 0x40;
};

}  // namespace vmm::pci
