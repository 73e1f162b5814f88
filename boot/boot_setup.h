// Types shared by the kernel loaders (bzImage, multiboot, flat) and their caller.
//
// Called by the anchor's wiring on its main thread before any vCPU runs; every loader is a
// plain function of (guest memory, RAM layout, images) that writes guest RAM and returns the
// boot vCPU's register state. Malformed images are setup errors: vmm::Error naming the file.
#pragma once

#include "x86/cpu_state.h"

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace vmm::boot {

enum class EntryMode { Real16, Protected32, Long64 };

// A raw binary: where to copy it and where (and in which mode) the boot vCPU starts.
struct FlatSpec {
    std::uint64_t load_address;
    std::uint64_t entry;
    EntryMode mode;
};

// What a loader produced: the boot vCPU's state and where things went (for logs and tests).
struct BootSetup {
    x86::BootCpuState cpu;
    std::string format;  // "bzImage" | "multiboot" | "flat"
    std::uint64_t kernel_addr = 0, kernel_size = 0, initrd_addr = 0, initrd_size = 0;
};

// The initial ramdisk (multiboot: the one module). A file is copied straight into guest RAM
// by read_into, so a large initrd never gets a second copy on the host heap.
struct InitrdImage {
    std::string name;  // path, for error messages and the multiboot module string
    std::uint64_t size = 0;
    // Fills dst (dst.size() == size) with the whole image; throws naming the file.
    std::function<void(std::span<std::uint8_t> dst)> read_into;

    // Opens the file now (throws std::system_error naming the path if it cannot).
    static InitrdImage from_file(const std::string& path);
    static InitrdImage from_bytes(std::string name, std::vector<std::uint8_t> bytes);
};

// How much of a kernel file is read up front for its headers: a bzImage's setup header ends
// before 0x290, a multiboot header lies within the first 8 KiB (spec 3.1.1), an ELF image's
// program headers follow its file header. The rest goes straight into guest RAM.
inline constexpr std::size_t kKernelHeadBytes = 8 * 1024;

// The inputs every format loader takes.
struct BootImages {
    std::string kernel_name;  // path, for error messages
    // The image's leading bytes, where the loaders parse its headers: the whole image when it
    // is built from bytes (tests) or no larger than kKernelHeadBytes, else the first
    // kKernelHeadBytes of the file.
    std::span<const std::uint8_t> kernel;
    // The whole image's size in bytes; 0: kernel.size() (the whole image is in `kernel`).
    std::uint64_t kernel_size = 0;
    // Reads image bytes [offset, offset + dst.size()) from the file straight into dst (guest
    // RAM): the payload is never read into a host buffer first. Unset: copied from `kernel`.
    std::function<void(std::uint64_t offset, std::span<std::uint8_t> dst)> read_kernel;
    std::optional<InitrdImage> initrd;
    std::string cmdline;

    std::uint64_t kernel_bytes() const { return kernel_size != 0 ? kernel_size : kernel.size(); }
    // Image bytes [offset, offset + dst.size()) into dst; throws if that runs past the image.
    void copy_kernel(std::uint64_t offset, std::span<std::uint8_t> dst) const;
};

// Reads a whole file; throws std::system_error naming `what` and the path if it cannot be
// read, vmm::Error if it is larger than max_size.
std::vector<std::uint8_t> read_whole_file(const std::string& path, const std::string& what, std::uint64_t max_size);

// A kernel image file opened for the loaders: its first kKernelHeadBytes read (all of it if
// smaller), its size, and a reader for any range of it (pread). Throws like read_whole_file.
struct KernelFile {
    std::vector<std::uint8_t> head;
    std::uint64_t size = 0;
    std::function<void(std::uint64_t offset, std::span<std::uint8_t> dst)> read;

    static KernelFile open(const std::string& path, std::uint64_t max_size);
    // The images for this file (kernel, kernel_size, read_kernel; the rest left to the caller).
    BootImages images(const std::string& name) const;
};

}  // namespace vmm::boot
