// write_guest_core: streams a guest's ELF core (guest_core_layout.h) to a file descriptor.
//
// Only sequential write(2) calls, never lseek/pwrite, so the target may be a pipe or FIFO (pillar
// dumps into a FIFO it reads). Short writes and EINTR are resumed; a non-blocking fd that is full
// is waited for with poll(2), together with the stop token, so a dump into a FIFO nobody reads
// can still be cancelled. Guest RAM is read through GuestMemory spans, kDumpChunkSize bytes per
// write. SIGPIPE is blocked on the calling thread while it runs: a reader that goes away is the
// error EPIPE, not the death of the process.
//
// Called on the dump thread (GuestDumpJob) or a test's thread. The guest's memory must stay
// mapped for the whole call; pause the vCPUs first for a consistent image.
#pragma once

#include "common/error.h"
#include "devicemodel/bus/guest_memory.h"
#include "dump/vcpu_dump_state.h"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <stop_token>

namespace vmm::dump {

inline constexpr std::size_t kDumpChunkSize = std::size_t{1} << 20;

// Progress in guest-RAM bytes, as QEMU's query-dump counts it (written_size / total_size: the
// headers and notes are not counted). Called once with (0, total) before the first byte, then
// after every chunk; the last call has completed == total.
using DumpProgress = std::function<void(std::uint64_t completed, std::uint64_t total)>;

// Thrown when `stop` was requested before the dump finished.
class DumpCancelled : public Error {
public:
    DumpCancelled() : Error("dump cancelled") {}
};

// Writes the core and returns the number of bytes written (the layout's file_size). Throws
// std::system_error on a write error (EPIPE, ENOSPC, ...), DumpCancelled on a stop request,
// vmm::Error if the layout cannot be built. `fd` is borrowed.
std::uint64_t write_guest_core(int fd, const GuestMemory& memory, std::span<const VcpuDumpState> vcpus,
                               const DumpProgress& progress = {}, std::stop_token stop = {});

}  // namespace vmm::dump
