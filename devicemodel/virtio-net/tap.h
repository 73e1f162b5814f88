// Tap: a host tap interface as a NetBackend (linux/if_tun.h, Documentation/networking/tuntap.rst).
//
// Opened as IFF_TAP | IFF_NO_PI | IFF_VNET_HDR with TUNSETVNETHDRSZ 12, so each read/write is
// one Ethernet frame preceded by struct virtio_net_hdr_v1 (virtio 1.2 §5.1.6), byte for byte
// what the guest's virtio-net driver puts in front of its frames. The fd is non-blocking.
// The checksum/TSO offloads the kernel accepts are probed once (TUNSETOFFLOAD) and reported by
// supported_offloads(); the device turns on those the guest negotiated with set_offloads().
// A tap that did not exist is created and lives as long as this object (not persistent).
// Transmit: a write() per frame, or io_uring batches where the host's system calls are dear
// (tap_batches_pay_off).
//
// Threads: constructed on the anchor's setup thread; read/write/set_offloads from the device's
// event loop thread only.
#pragma once

#include "common/fd.h"
#include "devicemodel/virtio-net/net_backend.h"

#include <string>
#include <string_view>

namespace vmm::virtio_net {

// Whether a tap on this host transmits a guest's burst in io_uring batches (one io_uring_enter
// for up to 64 frames) rather than one write() per frame, from what the kernel reports of its
// mitigations (the text of /sys/devices/system/cpu/vulnerabilities/meltdown and spectre_v2).
// Measured on a host without page-table isolation (bench/RESULTS.md, issue #3): an io_uring WRITE
// to a tap costs the kernel more than the system call it saves, so a write() per frame is faster
// there (raw 5-9 %, through the device ~4 %), as QEMU, Firecracker and cloud-hypervisor write.
// Where each system call switches page tables (PTI) or sets IBRS on entry, a system call costs
// several times as much and a batch saves it 63 times in 64: batches there (not measured on
// such a host yet). Unknown (unreadable) text: a write() per frame.
bool tap_batches_pay_off(std::string_view meltdown, std::string_view spectre_v2);
// The same for this host, from those files (what a Tap decides at its opening).
bool tap_batches_pay_off_here();
// What a tap that writes frame by frame for that reason says in why_not_in_batches().
extern const char* const kCheapSystemCalls;

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
