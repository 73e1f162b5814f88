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

// The inputs every format loader takes.
struct BootImages {
    std::string kernel_name;  // path, for error messages
    std::span<const std::uint8_t> kernel;
    std::optional<InitrdImage> initrd;
    std::string cmdline;
};

// Reads a whole file (kernel images); throws std::system_error naming `what` and the path if
// it cannot be read, vmm::Error if it is larger than max_size.
std::vector<std::uint8_t> read_whole_file(const std::string& path, const std::string& what, std::uint64_t max_size);

}  // namespace vmm::boot
