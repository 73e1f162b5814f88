#include "boot/kernel_loader.h"

#include "common/error.h"

#include <cstring>

namespace vmm::boot {

std::string detect_format(std::span<const std::uint8_t> image) {
    // boot.rst, "THE REAL-MODE KERNEL HEADER": boot_flag at 0x1fe, header magic at 0x202.
    if (image.size() >= 0x206 && image[0x1fe] == 0x55 && image[0x1ff] == 0xaa &&
        std::memcmp(image.data() + 0x202, "HdrS", 4) == 0)
        return "bzImage";
    if (find_multiboot_header(image)) return "multiboot";
    return "";
}

BootSetup load_kernel(const GuestMemory& mem, const x86::RamLayout& ram, const KernelSpec& spec) {
    if (spec.kernel_path.empty()) throw Error("no kernel given");
    // The headers are read now; the payload goes from the file straight into guest RAM.
    const KernelFile kernel = KernelFile::open(spec.kernel_path, ram.total());
    BootImages images = kernel.images(spec.kernel_path);
    images.cmdline = spec.cmdline;
    if (!spec.initrd_path.empty()) images.initrd = InitrdImage::from_file(spec.initrd_path);

    // An explicit "flat" is the user describing the image (as QEMU's -device loader): it wins
    // over any header the bytes happen to carry (test guests carry a multiboot header too, so
    // QEMU can boot the very same file).
    if (spec.flat) return load_flat(mem, ram, images, *spec.flat);
    const std::string format = detect_format(images.kernel);
    if (format == "bzImage") return load_bzimage(mem, ram, images);
    if (format == "multiboot") return load_multiboot(mem, ram, images);
    throw Error("kernel " + spec.kernel_path +
                " is not a bzImage or multiboot image; for a raw binary give \"flat\" with its load address, "
                "entry point and entry mode");
}

}  // namespace vmm::boot
