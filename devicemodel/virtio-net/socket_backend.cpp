// SocketBackend: see socket_backend.h.
#include "devicemodel/virtio-net/socket_backend.h"

#include "common/error.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <climits>

namespace vmm::virtio_net {

SocketBackend::SocketBackend(Fd socket, unsigned offloads, std::string name)
    : fd_(std::move(socket)), offloads_(offloads), name_(std::move(name)) {
    const int fl = ::fcntl(fd_.get(), F_GETFL);
    if (fl < 0 || ::fcntl(fd_.get(), F_SETFL, fl | O_NONBLOCK) < 0) throw_errno(name_ + ": O_NONBLOCK");
    write_batches_with_io_uring(fd_.get(), true);
}

ssize_t SocketBackend::read(std::span<const iovec> iov) {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov.data());  // recvmsg does not write the iovec array itself
    msg.msg_iovlen = std::min<std::size_t>(iov.size(), IOV_MAX);
    // MSG_TRUNC: the full length of a datagram that did not fit, as a tap reports it.
    const ssize_t n = ::recvmsg(fd_.get(), &msg, MSG_TRUNC | MSG_DONTWAIT);
    if (n < 0) return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return n;
}

ssize_t SocketBackend::write(std::span<const iovec> iov) {
    msghdr msg{};
    msg.msg_iov = const_cast<iovec*>(iov.data());  // sendmsg only reads it
    msg.msg_iovlen = std::min<std::size_t>(iov.size(), IOV_MAX);
    const ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return n;
}

bool SocketBackend::set_offloads(unsigned tun_flags) {
    if (tun_flags & ~offloads_) return false;
    selected_ = tun_flags;
    return true;
}

}  // namespace vmm::virtio_net
