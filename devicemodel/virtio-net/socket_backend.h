// SocketBackend: a NetBackend over a connected SOCK_SEQPACKET or SOCK_DGRAM socket (e.g. one
// end of socketpair(AF_UNIX)), one message per frame, the 12-byte virtio_net_hdr_v1 carried
// in-band in front of each frame exactly as on a tap. Used by the unit tests and the benchmark
// in place of a tap; also usable to connect a guest to a user-space switch.
//
// Threads: read/write from the device's event loop thread only.
#pragma once

#include "common/fd.h"
#include "devicemodel/virtio-net/net_backend.h"

#include <string>

namespace vmm::virtio_net {

class SocketBackend final : public NetBackend {
public:
    // Takes `socket` (made non-blocking here). `offloads` is what supported_offloads() reports:
    // a peer that understands NEEDS_CSUM/GSO headers may claim TUN_F_* flags.
    explicit SocketBackend(Fd socket, unsigned offloads = 0, std::string name = "socket");

    std::string description() const override { return name_; }
    int fd() const override { return fd_.get(); }
    ssize_t read(std::span<const iovec> iov) override;
    ssize_t write(std::span<const iovec> iov) override;
    unsigned supported_offloads() const override { return offloads_; }
    bool set_offloads(unsigned tun_flags) override;
    // What the device last selected with set_offloads (for tests).
    unsigned offloads() const noexcept { return selected_; }

private:
    Fd fd_;
    unsigned offloads_, selected_ = 0;
    std::string name_;
};

}  // namespace vmm::virtio_net
