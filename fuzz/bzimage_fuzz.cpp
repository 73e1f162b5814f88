// Fuzzes the kernel image parsers and loaders of boot/ with the image file as input: format
// detection (kernel_loader.h), the bzImage setup-header parser and the 64-bit boot protocol
// loader (bzimage.h), and the multiboot v1 header finder and ELF32 / a.out-kludge loader
// (multiboot.h), into a 4 MiB guest. A vmm::Error is the expected answer to a bad image; any
// other exception, or a crash, is a bug. Images with an odd length also get a small initrd.
#include "boot/bzimage.h"
#include "boot/kernel_loader.h"
#include "boot/multiboot.h"
#include "common/error.h"
#include "devicemodel/bus/guest_memory.h"
#include "x86/memory_layout.h"

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace {

constexpr std::uint64_t kRamBytes = 4 << 20;

struct Guest {
    Guest() : ram(vmm::x86::ram_layout(kRamBytes)), bytes(ram.low_size), memory({{0, ram.low_size, bytes.data()}}) {}
    vmm::x86::RamLayout ram;
    std::vector<std::uint8_t> bytes;
    vmm::GuestMemory memory;
};

vmm::boot::BootImages images_for(std::span<const std::uint8_t> kernel) {
    vmm::boot::BootImages images;
    images.kernel_name = "fuzz.img";
    images.kernel = kernel;
    images.cmdline = "console=ttyS0 panic=-1";
    if (kernel.size() % 2) images.initrd = vmm::boot::InitrdImage::from_bytes("initrd", std::vector<std::uint8_t>(4096, 0x17));
    return images;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    // One guest for the whole run: loaders only write it, so no state leaks between inputs.
    static Guest guest;
    const std::span<const std::uint8_t> image(data, size);

    const std::string format = vmm::boot::detect_format(image);
    try {
        const auto info = vmm::boot::parse_bzimage(image);
        (void)info.supports_64bit_entry();
        if (info.kernel_offset + info.kernel_size > size) __builtin_trap();  // the payload must be inside the file
    } catch (const vmm::Error&) {
    }
    (void)vmm::boot::find_multiboot_header(image);

    try {
        if (format == "bzImage") {
            (void)vmm::boot::load_bzimage(guest.memory, guest.ram, images_for(image));
        } else if (format == "multiboot") {
            (void)vmm::boot::load_multiboot(guest.memory, guest.ram, images_for(image));
        }
    } catch (const vmm::Error&) {
    }
    return 0;
}
