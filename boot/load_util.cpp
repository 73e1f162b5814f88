#include "boot/load_util.h"

#include "boot/boot_setup.h"
#include "common/error.h"

#include "common/fd.h"

#include <algorithm>
#include <cstdio>
#include <fcntl.h>
#include <memory>
#include <sys/stat.h>
#include <unistd.h>

namespace vmm::boot {

namespace detail {

std::string hex(std::uint64_t v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
    return buf;
}

void fail(const std::string& name, const std::string& msg) { throw Error("kernel " + name + ": " + msg); }

void check_load_range(const std::string& name, const std::string& what, std::uint64_t addr, std::uint64_t len,
                      const x86::RamLayout& ram) {
    const std::uint64_t end = addr + len;
    const std::string range = what + " [" + hex(addr) + ", " + hex(end) + ")";
    if (end < addr) fail(name, range + " wraps around the address space");
    const std::uint64_t high_end = ram.low_size < x86::kPciHoleStart ? ram.low_size : x86::kPciHoleStart;
    if (addr >= x86::kHighMemStart && end <= high_end) return;
    if (addr >= kLowLoadStart && end <= x86::kEbdaStart) return;
    if (addr < kLowLoadStart)
        fail(name, range + " overlaps the low memory the loader uses (GDT, zero page, stack, page tables, " +
                       "multiboot info and command line below " + hex(kLowLoadStart) + ")");
    if (addr < x86::kHighMemStart)
        fail(name, range + " overlaps the EBDA/VGA/BIOS area [" + hex(x86::kEbdaStart) + ", 0x100000)");
    fail(name, range + " is outside guest RAM (RAM below 4 GiB ends at " + hex(high_end) + ")");
}

}  // namespace detail

namespace {

// Opens `path` read-only and returns the fd and its size; throws naming `what` and the path.
std::pair<Fd, std::uint64_t> open_sized(const std::string& path, const std::string& what) {
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw_errno("cannot open " + what + " " + path);
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw_errno("cannot stat " + what + " " + path);
    if (!S_ISREG(st.st_mode)) throw Error(what + " " + path + " is not a regular file");
    return {std::move(fd), static_cast<std::uint64_t>(st.st_size)};
}

// pread(2) from `offset` until dst is full; a short file is an error (it changed under us).
void pread_at(int fd, std::uint64_t offset, std::span<std::uint8_t> dst, const std::string& what, const std::string& path) {
    std::size_t done = 0;
    while (done < dst.size()) {
        const ssize_t n = ::pread(fd, dst.data() + done, dst.size() - done, static_cast<off_t>(offset + done));
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("cannot read " + what + " " + path);
        }
        if (n == 0) throw Error(what + " " + path + " shrank while being read");
        done += static_cast<std::size_t>(n);
    }
}

void pread_all(int fd, std::span<std::uint8_t> dst, const std::string& what, const std::string& path) {
    pread_at(fd, 0, dst, what, path);
}

void check_fits(const std::string& path, const std::string& what, std::uint64_t size, std::uint64_t max_size) {
    if (size > max_size)
        throw Error(what + " " + path + " is " + std::to_string(size) + " bytes, larger than guest RAM (" +
                    std::to_string(max_size) + " bytes)");
}

}  // namespace

std::vector<std::uint8_t> read_whole_file(const std::string& path, const std::string& what, std::uint64_t max_size) {
    auto [fd, size] = open_sized(path, what);
    check_fits(path, what, size, max_size);
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
    pread_all(fd.get(), bytes, what, path);
    return bytes;
}

KernelFile KernelFile::open(const std::string& path, std::uint64_t max_size) {
    auto [fd, size] = open_sized(path, "kernel");
    check_fits(path, "kernel", size, max_size);
    KernelFile k;
    k.size = size;
    k.head.resize(static_cast<std::size_t>(std::min<std::uint64_t>(size, kKernelHeadBytes)));
    pread_all(fd.get(), k.head, "kernel", path);
    auto shared = std::make_shared<Fd>(std::move(fd));
    k.read = [shared, path](std::uint64_t offset, std::span<std::uint8_t> dst) {
        pread_at(shared->get(), offset, dst, "kernel", path);
    };
    return k;
}

BootImages KernelFile::images(const std::string& name) const {
    BootImages im;
    im.kernel_name = name;
    im.kernel = head;
    im.kernel_size = size;
    if (size > head.size()) im.read_kernel = read;  // else the head is the whole image
    return im;
}

void BootImages::copy_kernel(std::uint64_t offset, std::span<std::uint8_t> dst) const {
    const std::uint64_t total = kernel_bytes();
    if (offset > total || dst.size() > total - offset)
        throw Error("kernel " + kernel_name + ": bytes [" + detail::hex(offset) + ", " + detail::hex(offset + dst.size()) +
                    ") are past the end of the " + std::to_string(total) + "-byte image");
    if (read_kernel) return read_kernel(offset, dst);
    std::copy_n(kernel.begin() + static_cast<std::ptrdiff_t>(offset), dst.size(), dst.begin());
}

InitrdImage InitrdImage::from_file(const std::string& path) {
    auto [fd, size] = open_sized(path, "initrd");
    auto shared = std::make_shared<Fd>(std::move(fd));
    InitrdImage img;
    img.name = path;
    img.size = size;
    img.read_into = [shared, path](std::span<std::uint8_t> dst) { pread_all(shared->get(), dst, "initrd", path); };
    return img;
}

InitrdImage InitrdImage::from_bytes(std::string name, std::vector<std::uint8_t> bytes) {
    auto shared = std::make_shared<std::vector<std::uint8_t>>(std::move(bytes));
    InitrdImage img;
    img.name = std::move(name);
    img.size = shared->size();
    img.read_into = [shared](std::span<std::uint8_t> dst) {
        std::copy_n(shared->begin(), std::min(dst.size(), shared->size()), dst.begin());
    };
    return img;
}

}  // namespace vmm::boot
