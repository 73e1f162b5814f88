#include "x86/acpi/acpi_tables.h"

#include "common/error.h"
#include "common/fd.h"
#include "x86/acpi/dsdt.h"
#include "x86/acpi/tables.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>

namespace vmm::x86::acpi {

namespace {

std::uint64_t align_up(std::uint64_t v, std::uint64_t a) { return (v + a - 1) / a * a; }

// Hands out addresses in [start, end) in build order.
class Placer {
public:
    Placer(std::uint64_t start, std::uint64_t end) : next_(start), end_(end) {}
    std::uint64_t place(std::size_t size, std::uint64_t alignment) {
        const std::uint64_t addr = align_up(next_, alignment);
        if (addr + size > end_ || addr < next_) {
            throw Error("ACPI tables do not fit below " + std::to_string(end_));
        }
        next_ = addr + size;
        return addr;
    }

private:
    std::uint64_t next_, end_;
};

}  // namespace

AcpiTables build_tables(const AcpiConfig& config) {
    if (config.vcpus == 0 || config.vcpus > kMaxVcpus) {
        throw Error("ACPI: vcpus must be 1.." + std::to_string(kMaxVcpus) + ", got " + std::to_string(config.vcpus));
    }
    if (config.tables_start % 16 != 0) throw Error("ACPI: the RSDP must be 16-byte aligned");
    if (config.tables_end > (std::uint64_t(1) << 32)) throw Error("ACPI: tables must lie below 4 GiB (RSDT, FADT 32-bit fields)");

    Placer placer(config.tables_start, config.tables_end);
    const std::uint64_t rsdp_addr = placer.place(kRsdpSize, 16);
    auto facs = build_facs();
    const std::uint64_t facs_addr = placer.place(facs.size(), 64);  // §5.2.10: 64-byte aligned
    auto dsdt = build_dsdt(config);
    const std::uint64_t dsdt_addr = placer.place(dsdt.size(), 16);
    auto fadt = build_fadt(config, facs_addr, dsdt_addr);
    const std::uint64_t fadt_addr = placer.place(fadt.size(), 16);
    auto madt = build_madt(config);
    const std::uint64_t madt_addr = placer.place(madt.size(), 16);
    auto mcfg = build_mcfg();
    const std::uint64_t mcfg_addr = placer.place(mcfg.size(), 16);
    const std::vector<std::uint64_t> entries{fadt_addr, madt_addr, mcfg_addr};
    auto xsdt = build_xsdt(entries);
    const std::uint64_t xsdt_addr = placer.place(xsdt.size(), 16);
    std::vector<std::uint32_t> entries32;
    for (auto e : entries) entries32.push_back(static_cast<std::uint32_t>(e));
    auto rsdt = build_rsdt(entries32);
    const std::uint64_t rsdt_addr = placer.place(rsdt.size(), 16);
    auto rsdp = build_rsdp(xsdt_addr, static_cast<std::uint32_t>(rsdt_addr));

    AcpiTables t;
    t.rsdp_addr = rsdp_addr;
    t.blobs.emplace_back(rsdp_addr, std::move(rsdp));
    t.blobs.emplace_back(facs_addr, std::move(facs));
    t.blobs.emplace_back(dsdt_addr, std::move(dsdt));
    t.blobs.emplace_back(fadt_addr, std::move(fadt));
    t.blobs.emplace_back(madt_addr, std::move(madt));
    t.blobs.emplace_back(mcfg_addr, std::move(mcfg));
    t.blobs.emplace_back(xsdt_addr, std::move(xsdt));
    t.blobs.emplace_back(rsdt_addr, std::move(rsdt));
    return t;
}

void write_tables(const GuestMemory& mem, const AcpiTables& tables) {
    for (const auto& [addr, bytes] : tables.blobs) {
        mem.write_or_throw(addr, bytes.data(), bytes.size(), "ACPI table " + table_signature(bytes));
    }
}

std::string table_signature(const std::vector<std::uint8_t>& blob) {
    if (blob.size() >= 8 && std::memcmp(blob.data(), "RSD PTR ", 8) == 0) return "RSDP";
    if (blob.size() < 4) return "????";
    return std::string(blob.begin(), blob.begin() + 4);
}

void dump_tables(const AcpiTables& tables, const std::string& dir) {
    for (const auto& [addr, bytes] : tables.blobs) {
        const std::string path = dir + "/" + table_signature(bytes) + ".dat";
        const Fd fd = open_fd(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        std::size_t done = 0;
        while (done < bytes.size()) {
            const ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) throw_errno("write " + path);
            done += static_cast<std::size_t>(n);
        }
    }
}

}  // namespace vmm::x86::acpi
