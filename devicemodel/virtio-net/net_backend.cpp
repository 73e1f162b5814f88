// NetBackend: see net_backend.h.
#include "devicemodel/virtio-net/net_backend.h"

#include "devicemodel/uring/frame_writer.h"

#include <cerrno>

namespace vmm::virtio_net {

NetBackend::NetBackend() = default;
NetBackend::~NetBackend() = default;

void NetBackend::write_batches_with_io_uring(int fd, bool socket) {
    writer_ = uring::FrameWriter::create(fd, socket ? uring::FrameWriter::Kind::Sendmsg : uring::FrameWriter::Kind::Writev);
}

std::size_t NetBackend::write_batch(std::span<const std::span<const iovec>> frames, std::span<ssize_t> results) {
    if (writer_) {
        if (auto n = writer_->write(frames, results)) return *n;
        writer_.reset();  // this fd cannot be driven that way (nothing was written): frame by frame
    }
    for (std::size_t i = 0; i < frames.size(); ++i) {
        const ssize_t n = write(frames[i]);
        if (n == -EAGAIN) return i;
        results[i] = n;
    }
    return frames.size();
}

}  // namespace vmm::virtio_net
