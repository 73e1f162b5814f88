// FrameWriter: writes a run of frames (each one gathered from an iovec array) to one
// non-blocking fd, a tap or a datagram socket, with one io_uring_enter for the run instead of
// one writev/sendmsg per frame.
//
// Why: a system call's entry and exit is what a small frame costs on a virtualised host
// (bench/RESULTS.md: a 76-byte tap write costs 1.6 µs as writev, 0.3 µs in a batch of 32
// through io_uring). The frames keep their order: the batch's submissions are linked, each
// asks not to wait (RWF_NOWAIT on a tap's WRITEV, MSG_DONTWAIT on a socket's SENDMSG), so the
// first frame the fd cannot take now completes with -EAGAIN and the kernel cancels the ones
// behind it; write() reports how far it got and the caller keeps the rest for later (as it
// would after a writev's EAGAIN). A frame the kernel refuses (-EINVAL: a bad virtio-net
// header) is that frame's result; the frames behind it are written by a second submission.
//
// An fd that never answers EAGAIN (a tap with its default, unlimited send buffer) needs no
// links: io_uring issues a batch's submissions in order, each completes inside the enter, so
// the frames go out in order unlinked, which costs ~10 % less per frame here (bench/RESULTS.md).
// Should such an fd refuse a frame for now after all while taking a later one, the refused
// frame's result is -EAGAIN (it is lost, never sent after the frames behind it) and the writer
// links its submissions from then on.
//
// The ring is restricted (restricted_ring.h) to that one opcode on that one fd.
//
// Threads: one thread at a time (the device's event loop).
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <span>

namespace vmm::uring {

class FrameWriter {
public:
    enum class Kind {
        Writev,   // a character device (tap): WRITEV with RWF_NOWAIT
        // A socket: SENDMSG (SEND for a one-buffer frame) with MSG_DONTWAIT | MSG_NOSIGNAL (a
        // closed peer is -EPIPE, no signal).
        Sendmsg,
    };
    enum class Backpressure {
        Possible,  // the fd may be full for now (a socket, a tap with a bounded send buffer): link
        None,      // the fd never answers EAGAIN: no links
    };
    // nullptr when io_uring is not available (no liburing at build time, a kernel or seccomp
    // policy that refuses io_uring_setup, a kernel too old to restrict a ring): the caller
    // writes frame by frame. `fd` must stay open as long as the writer.
    static std::unique_ptr<FrameWriter> create(int fd, Kind kind, Backpressure backpressure = Backpressure::Possible,
                                               unsigned depth = 64);
    virtual ~FrameWriter() = default;

    // Writes frames[0..) in order; results[i] (same size as frames) gets frame i's bytes
    // written or -errno. Returns how many frames have a result: all of them, or fewer when
    // frame n (the return value) would have blocked: it and those behind it were not written.
    // nullopt when the fd cannot be driven this way (RWF_NOWAIT unsupported by an older
    // kernel's tap or socket, Linux 6.1): nothing was written; the writer is then of no further
    // use (keep it until the fd's owner goes: its teardown is an io_uring_register call).
    virtual std::optional<std::size_t> write(std::span<const std::span<const iovec>> frames, std::span<ssize_t> results) = 0;
    // After write() said nullopt: why ("the fd refuses RWF_NOWAIT", "the ring failed").
    virtual const char* why_spent() const noexcept = 0;
    // Whether a batch's submissions are linked (Backpressure::Possible, or None proven wrong).
    virtual bool linked() const noexcept = 0;
};

}  // namespace vmm::uring
