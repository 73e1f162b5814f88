#include "boot/multiboot.h"

#include "boot/load_util.h"
#include "common/error.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace vmm::boot {

using detail::align_up;
using detail::fail;
using detail::hex;

namespace {

std::uint32_t rd32(std::span<const std::uint8_t> b, std::size_t off) {
    std::uint32_t v;
    std::memcpy(&v, b.data() + off, sizeof v);
    return v;
}

// A piece of the image to place in guest RAM: filesz file bytes from file_offset, then zeros
// up to memsz.
struct Segment {
    std::uint64_t addr;
    std::uint64_t file_offset, filesz;
    std::uint64_t memsz;
};

struct Layout {
    std::vector<Segment> segments;
    std::uint64_t entry = 0;
};

// Spec 3.1.3, "The address fields of Multiboot header" (header flag 16).
Layout aout_kludge_layout(const std::string& name, std::uint64_t file_size, const MultibootHeader& h) {
    if (!h.fields_present)
        fail(name, "multiboot header at offset " + hex(h.offset) +
                       " sets flag 16 (a.out kludge) but its address fields run past the end of the file");
    if (h.load_addr > h.header_addr)
        fail(name, "a.out kludge load_addr " + hex(h.load_addr) + " is above header_addr " + hex(h.header_addr));
    const std::uint64_t delta = h.header_addr - h.load_addr;
    if (delta > h.offset)
        fail(name, "a.out kludge addresses are outside the file: load_addr " + hex(h.load_addr) + " is " + hex(delta) +
                       " bytes before the header, which is at file offset " + hex(h.offset));
    const std::uint64_t file_off = h.offset - delta;
    const std::uint64_t load_end = h.load_end_addr == 0 ? h.load_addr + (file_size - file_off) : h.load_end_addr;
    if (load_end <= h.header_addr)
        fail(name, "a.out kludge load_end_addr " + hex(load_end) + " is not above header_addr " + hex(h.header_addr));
    const std::uint64_t filesz = load_end - h.load_addr;
    if (file_off + filesz > file_size)
        fail(name, "a.out kludge addresses are outside the file: [load_addr, load_end_addr) needs " +
                       std::to_string(filesz) + " bytes from offset " + hex(file_off) + ", the file has " +
                       std::to_string(file_size));
    const std::uint64_t bss_end = h.bss_end_addr == 0 ? load_end : h.bss_end_addr;
    if (bss_end < load_end)
        fail(name, "a.out kludge bss_end_addr " + hex(bss_end) + " is below load_end_addr " + hex(load_end));
    Layout l;
    l.segments.push_back({h.load_addr, file_off, filesz, bss_end - h.load_addr});
    l.entry = h.entry_addr;
    return l;
}

// Spec 3.1.2 (no flag 16): an ELF executable loaded by its program headers at p_paddr. `image`
// is the file's head (its headers must lie in it), file_size the whole file's.
Layout elf32_layout(const std::string& name, std::span<const std::uint8_t> image, std::uint64_t file_size) {
    Elf32_Ehdr eh;
    if (image.size() < EI_NIDENT || std::memcmp(image.data(), ELFMAG, SELFMAG) != 0)
        fail(name, "multiboot header has no a.out kludge (flag 16) and the image is not ELF");
    if (image[EI_CLASS] != ELFCLASS32)
        fail(name, "ELF class " + std::to_string(image[EI_CLASS]) +
                       " is not ELF32: multiboot v1 loads only ELF32 i386 images (ELF64 is not supported)");
    if (image.size() < sizeof eh) fail(name, "truncated ELF header");
    std::memcpy(&eh, image.data(), sizeof eh);
    if (eh.e_ident[EI_DATA] != ELFDATA2LSB) fail(name, "ELF image is not little-endian");
    if (eh.e_machine != EM_386) fail(name, "ELF machine " + std::to_string(eh.e_machine) + " is not i386 (EM_386)");
    if (eh.e_type != ET_EXEC) fail(name, "ELF type " + std::to_string(eh.e_type) + " is not an executable (ET_EXEC)");
    if (eh.e_phentsize != sizeof(Elf32_Phdr))
        fail(name, "ELF program header size " + std::to_string(eh.e_phentsize) + " is not " +
                       std::to_string(sizeof(Elf32_Phdr)));
    const std::uint64_t ph_end = std::uint64_t(eh.e_phoff) + std::uint64_t(eh.e_phnum) * sizeof(Elf32_Phdr);
    if (ph_end > file_size) fail(name, "truncated: ELF program headers run past the end of the file");
    if (ph_end > image.size())
        fail(name, "ELF program headers end at " + hex(ph_end) + ", beyond the first " + std::to_string(image.size()) +
                       " bytes the loader reads for headers");

    Layout l;
    bool entry_found = false;
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
        Elf32_Phdr ph;
        std::memcpy(&ph, image.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
        if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
        const std::string seg = "ELF segment " + std::to_string(i);
        if (ph.p_filesz > ph.p_memsz) fail(name, seg + " has p_filesz > p_memsz");
        if (std::uint64_t(ph.p_offset) + ph.p_filesz > file_size)
            fail(name, seg + ": file bytes [" + hex(ph.p_offset) + ", " + hex(std::uint64_t(ph.p_offset) + ph.p_filesz) +
                           ") run past the end of the file");
        l.segments.push_back({ph.p_paddr, ph.p_offset, ph.p_filesz, ph.p_memsz});
        // The entry is virtual; translate it as GRUB does, through the segment that holds it.
        if (!entry_found && eh.e_entry >= ph.p_vaddr && eh.e_entry - ph.p_vaddr < ph.p_memsz) {
            l.entry = std::uint64_t(eh.e_entry) - ph.p_vaddr + ph.p_paddr;
            entry_found = true;
        }
    }
    if (l.segments.empty()) fail(name, "ELF image has no PT_LOAD segment");
    if (!entry_found) fail(name, "ELF entry point " + hex(eh.e_entry) + " is in no PT_LOAD segment");
    return l;
}

}  // namespace

std::optional<MultibootHeader> find_multiboot_header(std::span<const std::uint8_t> image) {
    // Spec 3.1.1: within the first 8192 bytes, 32-bit aligned.
    const std::size_t limit = std::min(image.size(), kMultibootSearch);
    std::optional<MultibootHeader> first_bad;
    for (std::size_t off = 0; off + 12 <= limit; off += 4) {
        if (rd32(image, off) != kMultibootHeaderMagic) continue;
        MultibootHeader h;
        h.offset = static_cast<std::uint32_t>(off);
        h.flags = rd32(image, off + 4);
        h.checksum = rd32(image, off + 8);
        h.checksum_ok = static_cast<std::uint32_t>(kMultibootHeaderMagic + h.flags + h.checksum) == 0;
        if (off + 32 <= image.size()) {
            h.fields_present = true;
            h.header_addr = rd32(image, off + 12);
            h.load_addr = rd32(image, off + 16);
            h.load_end_addr = rd32(image, off + 20);
            h.bss_end_addr = rd32(image, off + 24);
            h.entry_addr = rd32(image, off + 28);
        }
        if (h.checksum_ok) return h;
        if (!first_bad) first_bad = h;
    }
    return first_bad;
}

BootSetup load_multiboot(const GuestMemory& mem, const x86::RamLayout& ram, const BootImages& images) {
    const std::string& name = images.kernel_name;
    const auto h = find_multiboot_header(images.kernel);
    if (!h) fail(name, "no multiboot header (magic 0x1BADB002) in the first 8192 bytes");
    if (!h->checksum_ok)
        fail(name, "multiboot header at offset " + hex(h->offset) + " has a bad checksum: magic + flags + checksum = " +
                       hex(static_cast<std::uint32_t>(kMultibootHeaderMagic + h->flags + h->checksum)) +
                       ", must be 0");
    // Spec 3.1.2: a loader that cannot meet a requirement bit (0-15) must refuse the image.
    const std::uint32_t unmet = h->flags & 0xffff & ~(kMultibootPageAlign | kMultibootMemoryInfo);
    if (unmet & kMultibootVideoMode)
        fail(name, "multiboot header requests video mode information (flag 2), which this VMM does not provide");
    if (unmet) fail(name, "multiboot header requires unsupported features (flags " + hex(unmet) + ")");

    const Layout layout = (h->flags & kMultibootAoutKludge) ? aout_kludge_layout(name, images.kernel_bytes(), *h)
                                                            : elf32_layout(name, images.kernel, images.kernel_bytes());
    std::uint64_t lo = ~0ull, hi = 0;
    for (std::size_t i = 0; i < layout.segments.size(); ++i) {
        const Segment& s = layout.segments[i];
        detail::check_load_range(name, "segment " + std::to_string(i), s.addr, s.memsz, ram);
        lo = std::min(lo, s.addr);
        hi = std::max(hi, s.addr + s.memsz);
    }
    if (layout.entry < lo || layout.entry >= hi)
        fail(name, "entry point " + hex(layout.entry) + " is outside the loaded image [" + hex(lo) + ", " + hex(hi) + ")");

    const std::string& cmdline = images.cmdline;
    if (cmdline.find('\0') != std::string::npos) fail(name, "command line contains a NUL byte");
    if (cmdline.size() + 1 > x86::kCmdlineMax)
        fail(name, "command line is " + std::to_string(cmdline.size()) + " bytes, longer than the limit " +
                       std::to_string(x86::kCmdlineMax - 1));

    // The initrd: the one module, page aligned (header flag 0) right after the kernel.
    const std::uint64_t ram_end = std::min(ram.low_size, x86::kPciHoleStart);
    std::uint64_t initrd_addr = 0, initrd_size = 0;
    if (images.initrd) {
        const InitrdImage& rd = *images.initrd;
        if (rd.size == 0) throw Error("initrd " + rd.name + " is empty");
        if (rd.name.size() + 1 > kMultibootModStringMax)
            throw Error("initrd path " + rd.name + " is too long for the multiboot module string");
        initrd_addr = std::max(align_up(hi, 4096), x86::kHighMemStart);
        if (initrd_addr > ram_end || rd.size > ram_end - initrd_addr)
            throw Error("initrd " + rd.name + " (" + std::to_string(rd.size) +
                        " bytes) is too big: it does not fit in guest RAM between the kernel's end " + hex(initrd_addr) +
                        " and " + hex(ram_end));
        initrd_size = rd.size;
    }
    const auto e820 = x86::e820_map(ram);
    if (e820.size() * sizeof(MultibootMmapEntry) > kMultibootMmapMax)
        fail(name, "the e820 map has too many entries for the multiboot memory map");

    // Everything is checked: now write guest memory.
    for (const Segment& s : layout.segments) {
        auto dst = mem.span_or_throw(s.addr, s.memsz, "kernel " + name);
        images.copy_kernel(s.file_offset, dst.first(s.filesz));
        std::fill(dst.begin() + static_cast<std::ptrdiff_t>(s.filesz), dst.end(), 0);  // bss
    }
    if (images.initrd) images.initrd->read_into(mem.span_or_throw(initrd_addr, initrd_size, "initrd " + images.initrd->name));

    std::string cmdline_z = cmdline + '\0';
    mem.write_or_throw(x86::kCmdlineAddr, cmdline_z.data(), cmdline_z.size(), "kernel command line");
    static constexpr char kLoaderName[] = "vmm";
    mem.write_or_throw(kMultibootNameAddr, kLoaderName, sizeof kLoaderName, "multiboot loader name");

    // Spec 3.3, the multiboot information structure.
    MultibootInfo mbi{};
    mbi.flags = kMbiMem | kMbiCmdline | kMbiMmap | kMbiLoaderName;
    mbi.mem_lower = static_cast<std::uint32_t>(x86::kEbdaStart / 1024);  // KiB from 0; the EBDA is reserved
    mbi.mem_upper = static_cast<std::uint32_t>((ram_end - x86::kHighMemStart) / 1024);  // KiB from 1 MiB
    mbi.cmdline = static_cast<std::uint32_t>(x86::kCmdlineAddr);
    mbi.boot_loader_name = static_cast<std::uint32_t>(kMultibootNameAddr);
    if (images.initrd) {
        const std::string& s = images.initrd->name;
        mem.write_or_throw(kMultibootModStringAddr, s.c_str(), s.size() + 1, "multiboot module string");
        const MultibootModule mod{static_cast<std::uint32_t>(initrd_addr),
                                  static_cast<std::uint32_t>(initrd_addr + initrd_size),
                                  static_cast<std::uint32_t>(kMultibootModStringAddr), 0};
        mem.write_or_throw(kMultibootModsAddr, &mod, sizeof mod, "multiboot module list");
        mbi.flags |= kMbiMods;
        mbi.mods_count = 1;
        mbi.mods_addr = static_cast<std::uint32_t>(kMultibootModsAddr);
    }
    std::vector<MultibootMmapEntry> mmap;
    for (const auto& e : e820) mmap.push_back({20, e.addr, e.size, static_cast<std::uint32_t>(e.type)});
    mem.write_or_throw(kMultibootMmapAddr, mmap.data(), mmap.size() * sizeof(MultibootMmapEntry), "multiboot mmap");
    mbi.mmap_addr = static_cast<std::uint32_t>(kMultibootMmapAddr);
    mbi.mmap_length = static_cast<std::uint32_t>(mmap.size() * sizeof(MultibootMmapEntry));
    mem.write_or_throw(kMultibootInfoAddr, &mbi, sizeof mbi, "multiboot information");

    // Spec 3.2, machine state: flat 32-bit segments, PE on, PG off, IF off.
    x86::write_boot_gdt(mem);
    BootSetup setup;
    setup.cpu = x86::protected32_state(static_cast<std::uint32_t>(layout.entry));
    setup.cpu.rax = kMultibootBootloaderMagic;
    setup.cpu.rbx = kMultibootInfoAddr;
    setup.cpu.rsp = x86::kBootStackTop;
    setup.format = "multiboot";
    setup.kernel_addr = lo;
    setup.kernel_size = hi - lo;
    setup.initrd_addr = initrd_addr;
    setup.initrd_size = initrd_size;
    return setup;
}

}  // namespace vmm::boot
