#include "boot/bzimage.h"

#include "boot/load_util.h"
#include "common/error.h"

#include <asm/bootparam.h>

#include <algorithm>
#include <cstring>

namespace vmm::boot {

using detail::align_down;
using detail::align_up;
using detail::fail;
using detail::hex;

namespace {

static_assert(sizeof(boot_params) == 4096, "the zero page is one page");
static_assert(offsetof(boot_params, hdr) == 0x1f1);
static_assert(offsetof(boot_params, e820_entries) == 0x1e8);
static_assert(offsetof(boot_params, e820_table) == 0x2d0);

constexpr std::size_t kHdr = offsetof(boot_params, hdr);
constexpr std::size_t kHdrAreaEnd = offsetof(boot_params, edd_mbr_sig_buffer);  // 0x290
constexpr std::uint32_t kHdrSMagic = 0x53726448;                               // "HdrS"
constexpr std::uint16_t kBootFlag = 0xaa55;
static_assert(kHdr + offsetof(setup_header, init_size) + 4 == kBzImageMinSize);

template <typename T>
T hdr_field(std::span<const std::uint8_t> image, std::size_t offset_in_hdr) {
    T v;
    std::memcpy(&v, image.data() + kHdr + offset_in_hdr, sizeof v);
    return v;
}
#define VMM_HDR(image, field) \
    hdr_field<decltype(setup_header::field)>(image, offsetof(setup_header, field))

std::string version_string(std::uint16_t v) { return std::to_string(v >> 8) + "." + std::to_string(v & 0xff); }

}  // namespace

bool BzImageInfo::supports_64bit_entry() const { return protocol >= 0x020c && (xloadflags & XLF_KERNEL_64); }

BzImageInfo parse_bzimage(std::span<const std::uint8_t> image, std::uint64_t file_size) {
    if (image.size() < kBzImageMinSize || file_size < image.size())
        throw Error("truncated: " + std::to_string(image.size()) + " bytes, a bzImage boot sector and setup header need " +
                    std::to_string(kBzImageMinSize));
    // boot.rst "THE REAL-MODE KERNEL HEADER": boot_flag 0xAA55 at 0x1fe, "HdrS" at 0x202.
    if (VMM_HDR(image, header) != kHdrSMagic) throw Error("not a bzImage: no \"HdrS\" setup header signature at 0x202");
    if (VMM_HDR(image, boot_flag) != kBootFlag) throw Error("not a bzImage: boot flag at 0x1fe is not 0xAA55");

    BzImageInfo info;
    info.protocol = VMM_HDR(image, version);
    if (info.protocol < 0x0200) throw Error("not a bzImage: boot protocol " + version_string(info.protocol));
    info.loadflags = VMM_HDR(image, loadflags);
    // A zImage (LOADED_HIGH clear) wants its payload at 0x10000: not supported.
    if (!(info.loadflags & LOADED_HIGH)) throw Error("not a bzImage: a zImage (LOADED_HIGH clear in loadflags)");

    // The header runs to the end of the jump at 0x200: 0x202 + the jump's displacement byte.
    info.header_end = 0x202 + image[0x201];
    if (info.header_end > kHdrAreaEnd)
        throw Error("setup header claims to end at " + hex(info.header_end) + ", past the zero page's header area " +
                    hex(kHdrAreaEnd));
    if (info.header_end > image.size())
        throw Error("truncated: the setup header ends at " + hex(info.header_end) + ", past the " +
                    std::to_string(image.size()) + " bytes read");

    const std::uint8_t sects = VMM_HDR(image, setup_sects);
    info.setup_sects = sects == 0 ? 4 : sects;  // "If this field is 0, the real value is 4."
    info.kernel_offset = (std::size_t(info.setup_sects) + 1) * 512;
    if (info.kernel_offset >= file_size)
        throw Error("setup_sects=" + std::to_string(info.setup_sects) + " puts the protected-mode kernel at offset " +
                    hex(info.kernel_offset) + ", past the end of the " + std::to_string(file_size) + "-byte file");
    info.kernel_size = file_size - info.kernel_offset;
    // syssize (2.04+) is the payload size in 16-byte units; the build pads the file to it.
    const std::uint64_t syssize = info.protocol >= 0x0204 ? std::uint64_t(VMM_HDR(image, syssize)) * 16 : 0;
    if (syssize > info.kernel_size)
        throw Error("truncated: syssize says the protected-mode kernel is " + std::to_string(syssize) +
                    " bytes, the file holds " + std::to_string(info.kernel_size));

    info.code32_start = VMM_HDR(image, code32_start);
    info.initrd_addr_max = info.protocol >= 0x0203 ? VMM_HDR(image, initrd_addr_max) : 0x37ffffff;
    if (info.protocol >= 0x0205) {
        info.relocatable = VMM_HDR(image, relocatable_kernel) != 0;
        info.kernel_alignment = VMM_HDR(image, kernel_alignment);
    }
    if (info.relocatable && (info.kernel_alignment == 0 || (info.kernel_alignment & (info.kernel_alignment - 1))))
        throw Error("relocatable kernel with kernel_alignment " + hex(info.kernel_alignment) +
                    ", which is not a power of two");
    info.cmdline_size = info.protocol >= 0x0206 ? VMM_HDR(image, cmdline_size) : 255;
    if (info.protocol >= 0x020a) {
        info.pref_address = VMM_HDR(image, pref_address);
        info.init_size = VMM_HDR(image, init_size);
    } else {
        info.pref_address = x86::kHighMemStart;
    }
    // Before 2.10 nothing says how much memory the kernel needs; the payload is the minimum.
    if (info.init_size < info.kernel_size) info.init_size = static_cast<std::uint32_t>(
        std::min<std::size_t>(info.kernel_size, 0xffffffff));
    info.xloadflags = info.protocol >= 0x020c ? VMM_HDR(image, xloadflags) : 0;
    return info;
}

BootSetup load_bzimage(const GuestMemory& mem, const x86::RamLayout& ram, const BootImages& images) {
    const std::string& name = images.kernel_name;
    BzImageInfo info;
    try {
        info = parse_bzimage(images.kernel, images.kernel_bytes());
    } catch (const Error& e) {
        fail(name, e.what());
    }
    // boot.rst "64-bit BOOT PROTOCOL": needs protocol 2.12+ with XLF_KERNEL_64.
    if (info.protocol < 0x020c)
        fail(name, "boot protocol " + version_string(info.protocol) +
                       " is too old: the 64-bit entry point needs protocol >= 2.12 with XLF_KERNEL_64");
    if (!(info.xloadflags & XLF_KERNEL_64))
        fail(name, "XLF_KERNEL_64 is not set in xloadflags: the kernel has no 64-bit entry point");

    const std::uint64_t ram_end = std::min(ram.low_size, x86::kPciHoleStart);
    // The kernel runs from align_up(load, kernel_alignment) if relocatable, else from
    // pref_address, and needs init_size bytes from there (boot.rst, init_size).
    auto runtime_end = [&](std::uint64_t load) {
        const std::uint64_t start = info.relocatable ? align_up(load, info.kernel_alignment) : info.pref_address;
        return std::max<std::uint64_t>(load + info.kernel_size, start + info.init_size);
    };
    if (!info.relocatable && info.pref_address < x86::kHighMemStart)
        fail(name, "non-relocatable kernel wants to run at " + hex(info.pref_address) + ", below 1 MiB");
    std::uint64_t kernel_addr = x86::kHighMemStart;
    if (info.relocatable && info.pref_address > kernel_addr && info.pref_address % info.kernel_alignment == 0 &&
        runtime_end(info.pref_address) <= ram_end)
        kernel_addr = info.pref_address;
    const std::uint64_t kernel_end = runtime_end(kernel_addr);
    if (kernel_end > ram_end)
        fail(name, "kernel larger than guest RAM: it needs memory up to " + hex(kernel_end) + " (payload " +
                       std::to_string(info.kernel_size) + " bytes, init_size " + std::to_string(info.init_size) +
                       ") but RAM below 4 GiB ends at " + hex(ram_end));

    // Command line (boot.rst "cmdline_size": the maximum size without the terminating zero).
    const std::string& cmdline = images.cmdline;
    if (cmdline.find('\0') != std::string::npos) fail(name, "command line contains a NUL byte");
    if (cmdline.size() > info.cmdline_size)
        fail(name, "command line is " + std::to_string(cmdline.size()) + " bytes, longer than the kernel's cmdline_size " +
                       std::to_string(info.cmdline_size));
    if (cmdline.size() + 1 > x86::kCmdlineMax)
        fail(name, "command line is " + std::to_string(cmdline.size()) + " bytes, longer than the VMM's limit " +
                       std::to_string(x86::kCmdlineMax - 1));

    // Initrd: as high as possible, 4 KiB aligned, ending at or below initrd_addr_max and RAM
    // (boot.rst "initrd_addr_max"), and clear of the kernel's init_size area.
    std::uint64_t initrd_addr = 0, initrd_size = 0;
    if (images.initrd) {
        const InitrdImage& rd = *images.initrd;
        if (rd.size == 0) throw Error("initrd " + rd.name + " is empty");
        const std::uint64_t limit = std::min<std::uint64_t>(std::uint64_t(info.initrd_addr_max) + 1, ram_end);
        if (rd.size > limit || align_down(limit - rd.size, 4096) < kernel_end)
            throw Error("initrd " + rd.name + " (" + std::to_string(rd.size) +
                        " bytes) is too big: it does not fit in guest RAM between the kernel's end " + hex(kernel_end) +
                        " and " + hex(limit) + " (the lower of initrd_addr_max + 1 and the end of RAM below 4 GiB)");
        initrd_addr = align_down(limit - rd.size, 4096);
        initrd_size = rd.size;
        rd.read_into(mem.span_or_throw(initrd_addr, initrd_size, "initrd " + rd.name));
    }

    // The payload (boot.rst "LOADING THE REST OF THE KERNEL").
    images.copy_kernel(info.kernel_offset, mem.span_or_throw(kernel_addr, info.kernel_size, "kernel " + name));

    std::string cmdline_z = cmdline;
    cmdline_z.push_back('\0');
    mem.write_or_throw(x86::kCmdlineAddr, cmdline_z.data(), cmdline_z.size(), "kernel command line");

    // The zero page: a clean buffer with the image's setup header copied in (boot.rst
    // "64-bit BOOT PROTOCOL": "the setup header ... copied from the kernel image").
    boot_params bp{};
    // boot_params is a packed C struct of plain integers: viewing it as bytes is well defined;
    // header_end <= 0x290 (checked by the parser) keeps the copy inside it.
    std::memcpy(reinterpret_cast<std::uint8_t*>(&bp) + kHdr, images.kernel.data() + kHdr, info.header_end - kHdr);
    bp.hdr.type_of_loader = 0xff;  // undefined/other loader
    bp.hdr.loadflags |= CAN_USE_HEAP;
    bp.hdr.heap_end_ptr = 0xfe00;  // end of the setup heap, relative to the setup code, minus 0x200
    bp.hdr.code32_start = static_cast<std::uint32_t>(kernel_addr);
    bp.hdr.cmd_line_ptr = static_cast<std::uint32_t>(x86::kCmdlineAddr);
    bp.ext_cmd_line_ptr = 0;
    bp.hdr.ramdisk_image = static_cast<std::uint32_t>(initrd_addr);
    bp.hdr.ramdisk_size = static_cast<std::uint32_t>(initrd_size);
    bp.ext_ramdisk_image = static_cast<std::uint32_t>(initrd_addr >> 32);
    bp.ext_ramdisk_size = static_cast<std::uint32_t>(initrd_size >> 32);
    bp.hdr.setup_data = 0;
    const auto e820 = x86::e820_map(ram);
    if (e820.size() > E820_MAX_ENTRIES_ZEROPAGE)
        fail(name, "the e820 map has " + std::to_string(e820.size()) + " entries, the zero page holds " +
                       std::to_string(E820_MAX_ENTRIES_ZEROPAGE));
    for (std::size_t i = 0; i < e820.size(); ++i) {
        bp.e820_table[i].addr = e820[i].addr;
        bp.e820_table[i].size = e820[i].size;
        bp.e820_table[i].type = static_cast<std::uint32_t>(e820[i].type);
    }
    bp.e820_entries = static_cast<std::uint8_t>(e820.size());
    mem.write_or_throw(x86::kBootParamsAddr, &bp, sizeof bp, "boot_params (zero page)");

    // 64-bit entry: startup_64 is 0x200 into the payload; %rsi = zero page; flat 4 GiB
    // identity map covering kernel, zero page and command line.
    x86::write_boot_gdt(mem);
    x86::write_identity_page_tables(mem);
    BootSetup setup;
    setup.cpu = x86::long64_state(kernel_addr + 0x200);
    setup.cpu.rsi = x86::kBootParamsAddr;
    setup.cpu.rsp = x86::kBootStackTop;
    setup.format = "bzImage";
    setup.kernel_addr = kernel_addr;
    setup.kernel_size = info.kernel_size;
    setup.initrd_addr = initrd_addr;
    setup.initrd_size = initrd_size;
    return setup;
}

}  // namespace vmm::boot
