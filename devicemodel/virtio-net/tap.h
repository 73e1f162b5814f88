// Tap: a host tap interface as a NetBackend (linux/if_tun.h, Documentation/networking/tuntap.rst).
//
// Opened as IFF_TAP | IFF_NO_PI | IFF_VNET_HDR with TUNSETVNETHDRSZ 12, so each read/write is
// one Ethernet frame preceded by struct virtio_net_hdr_v1 (virtio 1.2 §5.1.6), byte for byte
// what the guest's virtio-net driver puts in front of its frames. The fd is non-blocking.
// The checksum/TSO offloads the kernel accepts are probed once (TUNSETOFFLOAD) and reported by
// supported_offloads(); the device turns on those the guest negotiated with set_offloads().
// A tap that did not exist is created and lives as long as this object (not persistent).
//
// Threads: constructed on the anchor's setup thread; read/write/set_offloads from the device's
// event loop thread only.
#pragma once

#include "common/fd.h"
#include "devicemodel/virtio-net/net_backend.h"

#include <string>

namespace vmm::virtio_net {

class Tap final : public NetBackend {
public:
    // Attaches to (or creates) tap `name` (at most 15 characters; "" lets the kernel pick
    // tapN). Throws vmm::Error / std::system_error naming the tap and the cause: /dev/net/tun
    // missing, no permission (CAP_NET_ADMIN or the tap's owner needed), busy (another process
    // holds it), or not a tap.
    explicit Tap(const std::string& name);

    const std::string& name() const noexcept { return name_; }
    std::string description() const override { return "tap " + name_; }
    int fd() const override { return fd_.get(); }
    ssize_t read(std::span<const iovec> iov) override;
    ssize_t write(std::span<const iovec> iov) override;
    unsigned supported_offloads() const override { return supported_; }
    bool set_offloads(unsigned tun_flags) override;

private:
    Fd fd_;
    std::string name_;
    unsigned supported_ = 0;
};

}  // namespace vmm::virtio_net
