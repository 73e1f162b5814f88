// MsixTable: a function's MSI-X capability, vector table and pending bit array (PCI Local Bus
// Specification 3.0 §6.8.2). The owning device puts the table and the PBA inside one of its
// BARs and forwards the BAR accesses that fall there; delivery goes to an MsiVectorSink.
//
// Masking: a vector fires only if MSI-X is enabled, the function is not masked (control bit
// 14) and the vector is not masked (vector control bit 0). A vector that fires while masked
// sets its pending bit instead; the message is sent when it becomes unmasked (§6.8.2.9).
// While MSI-X is disabled trigger() returns false so the device can fall back to INTx.
//
// Threads: table/PBA accesses and config_written come from vCPU threads; trigger from any
// thread. One internal mutex; the sink is called under it (see msi.h).
#pragma once

#include "devicemodel/pci/msi.h"
#include "devicemodel/pci/pci_config_space.h"

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

namespace vmm::pci {

class MsixTable {
public:
    static constexpr unsigned kMaxVectors = 2048;

    // Throws vmm::Error unless 1 <= vectors <= 2048 and sink is set.
    MsixTable(unsigned vectors, std::shared_ptr<MsiVectorSink> sink);

    unsigned vectors() const { return unsigned(entries_.size()); }
    std::uint64_t table_bytes() const { return std::uint64_t(vectors()) * 16; }
    std::uint64_t pba_bytes() const { return (std::uint64_t(vectors()) + 63) / 64 * 8; }

    // Adds the capability to `config` (table at table_offset in BAR table_bar, PBA at
    // pba_offset in BAR pba_bar; offsets 8-byte aligned). Returns the capability's offset.
    std::uint8_t add_capability(PciConfigSpace& config, unsigned table_bar, std::uint32_t table_offset,
                                unsigned pba_bar, std::uint32_t pba_offset);
    // For a function whose config space already holds the capability at `offset` (a
    // passed-through device): config_written() reads its message control word from there.
    void attach_capability(std::uint8_t offset) { cap_ = offset; }
    // The owning device calls this after every config write (cheap): it picks up the enable
    // and function-mask bits from the capability's message control word.
    void config_written(const PciConfigSpace& config);

    // Accesses inside the table / PBA (offset relative to their start). Dword or qword,
    // naturally aligned; anything else reads all-ones and writes are dropped. The PBA is
    // read-only.
    void table_read(std::uint64_t offset, std::span<std::uint8_t> data);
    void table_write(std::uint64_t offset, std::span<const std::uint8_t> data);
    void pba_read(std::uint64_t offset, std::span<std::uint8_t> data);

    // Fires `vector`. Returns false (nothing sent, nothing pending) if MSI-X is disabled or the
    // vector does not exist.
    bool trigger(unsigned vector);

    bool enabled() const;
    bool function_masked() const;
    bool vector_masked(unsigned vector) const;
    bool pending(unsigned vector) const;

private:
    struct Entry {
        // Vectors come out of reset masked (vector control bit 0 = 1, §6.8.2.9).
        std::uint32_t addr_lo = 0, addr_hi = 0, data = 0, control = 1;
    };
    struct Sent {
        std::uint64_t address = 0;
        std::uint32_t data = 0;
        bool masked = true;
    };
    bool masked_locked(unsigned v) const;
    void update_locked(unsigned v);
    std::uint32_t table_dword_locked(std::uint64_t offset) const;
    void write_table_dword_locked(std::uint64_t offset, std::uint32_t value);

    std::shared_ptr<MsiVectorSink> sink_;
    mutable std::mutex mutex_;
    std::vector<Entry> entries_;
    std::vector<Sent> sent_;
    std::vector<bool> pending_;
    bool enabled_ = false;
    bool function_masked_ = false;
    std::uint8_t cap_ = 0;
};

}  // namespace vmm::pci
