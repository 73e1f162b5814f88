// NetBackend: see net_backend.h.
#include "devicemodel/virtio-net/net_backend.h"

#include "common/log.h"
#include "devicemodel/uring/frame_writer.h"

#include <cerrno>

namespace vmm::virtio_net {

NetBackend::NetBackend() = default;
NetBackend::~NetBackend() = default;

void NetBackend::write_batches_with_io_uring(int fd, bool socket, bool never_full) {
    using uring::FrameWriter;
    writer_ = FrameWriter::create(fd, socket ? FrameWriter::Kind::Sendmsg : FrameWriter::Kind::Writev,
                                  never_full ? FrameWriter::Backpressure::None : FrameWriter::Backpressure::Possible);
    batch_off_ = writer_ ? nullptr : "io_uring is not available";
}

bool NetBackend::batches_linked() const noexcept { return writer_ && writer_->linked(); }

std::size_t NetBackend::write_batch(std::span<const std::span<const iovec>> frames, std::span<ssize_t> results) {
    // A lone frame (a guest that sends one at a time: a ping, a TCP ack) costs one system call
    // either way: write() it, without the ring's submission and completion entries.
    if (!batch_off_ && frames.size() > 1) {
        if (auto n = writer_->write(frames, results)) return *n;
        // This fd cannot be driven that way (nothing was written), e.g. a kernel whose tap
        // refuses RWF_NOWAIT (Linux 6.1): frame by frame from now on.
        batch_off_ = writer_->why_spent();
        logger("net")->info("{}: transmitting one frame per system call ({})", description(), batch_off_);
    }
    for (std::size_t i = 0; i < frames.size(); ++i) {
        const ssize_t n = write(frames[i]);
        if (n == -EAGAIN) return i;
        results[i] = n;
    }
    return frames.size();
}

}  // namespace vmm::virtio_net
