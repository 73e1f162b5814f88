#include "boot/flat_binary.h"

#include "boot/load_util.h"
#include "common/error.h"

#include <algorithm>

namespace vmm::boot {

using detail::fail;
using detail::hex;

namespace {

bool overlaps(std::uint64_t a, std::uint64_t a_len, std::uint64_t b, std::uint64_t b_len) {
    return a < b + b_len && b < a + a_len;
}

}  // namespace

BootSetup load_flat(const GuestMemory& mem, const x86::RamLayout& ram, const BootImages& images, const FlatSpec& flat) {
    const std::string& name = images.kernel_name;
    const std::uint64_t size = images.kernel_bytes();
    if (size == 0) fail(name, "flat binary is empty");
    if (images.initrd) fail(name, "a flat binary takes no initrd (got " + images.initrd->name + ")");
    const std::uint64_t end = flat.load_address + size;
    if (end < flat.load_address || !mem.contains(flat.load_address, size))
        fail(name, "flat binary [" + hex(flat.load_address) + ", " + hex(end) + ") is outside guest RAM (" +
                       std::to_string(ram.total()) + " bytes)");

    BootSetup setup;
    switch (flat.mode) {
        case EntryMode::Real16: {
            if (flat.entry >= x86::kHighMemStart)
                fail(name, "real-mode entry " + hex(flat.entry) + " is not below 1 MiB");
            const auto cs = static_cast<std::uint16_t>((flat.entry >> 4) & 0xf000);
            const auto ip = static_cast<std::uint16_t>(flat.entry - (std::uint64_t(cs) << 4));
            setup.cpu = x86::real_mode_state(cs, ip, static_cast<std::uint16_t>(x86::kBootStackTop));
            // The boot stack is at a fixed physical address: address it from segment 0.
            setup.cpu.ss.selector = 0;
            setup.cpu.ss.base = 0;
            break;
        }
        case EntryMode::Protected32:
        case EntryMode::Long64: {
            if (flat.entry >= x86::k4GiB)
                fail(name, "entry " + hex(flat.entry) + " is not below 4 GiB (the boot GDT and page tables cover 4 GiB)");
            const std::uint64_t tables_end = flat.mode == EntryMode::Long64 ? x86::kPdAddr + 4 * 0x1000 : x86::kIdtAddr + 8;
            if (overlaps(flat.load_address, size, x86::kGdtAddr, tables_end - x86::kGdtAddr))
                fail(name, "flat binary [" + hex(flat.load_address) + ", " + hex(end) +
                               ") overlaps the boot GDT/page tables at [" + hex(x86::kGdtAddr) + ", " + hex(tables_end) + ")");
            x86::write_boot_gdt(mem);
            if (flat.mode == EntryMode::Long64) {
                x86::write_identity_page_tables(mem);
                setup.cpu = x86::long64_state(flat.entry);
            } else {
                setup.cpu = x86::protected32_state(static_cast<std::uint32_t>(flat.entry));
            }
            break;
        }
    }
    setup.cpu.rsp = x86::kBootStackTop;

    if (!images.cmdline.empty()) {
        if (images.cmdline.size() + 1 > x86::kCmdlineMax) fail(name, "command line too long");
        const std::string z = images.cmdline + '\0';
        mem.write_or_throw(x86::kCmdlineAddr, z.data(), z.size(), "command line");
    }
    images.copy_kernel(0, mem.span_or_throw(flat.load_address, size, "kernel " + name));

    setup.format = "flat";
    setup.kernel_addr = flat.load_address;
    setup.kernel_size = size;
    return setup;
}

}  // namespace vmm::boot
