// NetBackend: where a virtio-net device's frames go and come from. Tap (tap.h) is the real
// one; SocketBackend (socket_backend.h) carries the same bytes over a SOCK_SEQPACKET/DGRAM
// socket for tests and benchmarks.
//
// Every frame crossing this interface starts with the 12-byte struct virtio_net_hdr_v1 (virtio
// 1.2 §5.1.6, num_buffers included), the layout a tap uses with TUNSETVNETHDRSZ 12. The backend
// never interprets num_buffers: the device writes it on receive.
//
// Threads: read/write/set_offloads are called with the device's lock held, from its event loop
// thread ("<name>-io") or, for set_offloads, from the vCPU thread activating the device; never
// concurrently. supported_offloads() is called once, from the device's constructor.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <memory>
#include <span>
#include <string>

namespace vmm::uring {
class FrameWriter;
}

namespace vmm::virtio_net {

inline constexpr std::size_t kVnetHeaderSize = 12;  // sizeof(struct virtio_net_hdr_v1)

class NetBackend {
public:
    NetBackend();
    virtual ~NetBackend();
    NetBackend(const NetBackend&) = delete;
    NetBackend& operator=(const NetBackend&) = delete;

    // A short name for logs ("tap vmtap0").
    virtual std::string description() const = 0;
    // The fd the device's epoll waits on: readable when a frame can be read, writable when a
    // frame can be written. Non-blocking.
    virtual int fd() const = 0;
    // Reads one frame (header + Ethernet frame) into `iov`. Returns the frame's full length,
    // which is larger than the iov's total when the frame did not fit (it is then consumed and
    // truncated); -EAGAIN when there is no frame; 0 when the backend has gone away (peer
    // closed); another -errno on error (the frame, if any, is gone).
    virtual ssize_t read(std::span<const iovec> iov) = 0;
    // Writes one frame (header + Ethernet frame) gathered from `iov`. Returns the bytes written,
    // -EAGAIN when the backend cannot take it now (retry on writability), another -errno when the
    // frame was refused (e.g. a header the kernel rejects: the frame is dropped).
    virtual ssize_t write(std::span<const iovec> iov) = 0;
    // Writes frames in order, as write() would one by one: results[i] (results is as long as
    // frames) gets frame i's write() result. Returns how many frames have a result: all, or
    // fewer when frame n (the return value) got -EAGAIN: it and the frames behind it were not
    // written. (A result of -EAGAIN: a backend said never to be full was, for that frame only,
    // and took the next; that frame is dropped rather than sent out of order.) A backend that
    // set up a FrameWriter (Tap, SocketBackend) writes a run of two or more with one
    // io_uring_enter; otherwise (a lone frame, or where io_uring is refused) this calls write()
    // per frame.
    std::size_t write_batch(std::span<const std::span<const iovec>> frames, std::span<ssize_t> results);
    // Whether write_batch goes through io_uring, and if not, why (for tests and logs).
    bool writes_in_batches() const noexcept { return batch_off_ == nullptr; }
    // Whether a batch's submissions are linked (needed where the fd may be full for now).
    bool batches_linked() const noexcept;
    const char* why_not_in_batches() const noexcept { return batch_off_; }

    // TUN_F_* offloads (linux/if_tun.h) the backend can deliver to the device on read:
    // TUN_F_CSUM (frames may carry VIRTIO_NET_HDR_F_NEEDS_CSUM), TUN_F_TSO4/6/ECN (GSO frames).
    // A backend that offers any of them also accepts frames with those headers on write.
    virtual unsigned supported_offloads() const { return 0; }
    // Selects which of supported_offloads() the reader (the guest) accepts; false if refused.
    virtual bool set_offloads(unsigned tun_flags) { return tun_flags == 0; }

protected:
    // For a backend's constructor: write_batch through an io_uring restricted to this fd
    // (socket: SENDMSG; otherwise WRITEV). Silently frame by frame where io_uring is refused.
    // `never_full`: the fd never answers EAGAIN (a tap whose send buffer is unlimited), so the
    // batch's submissions need no links to keep the frames in order.
    void write_batches_with_io_uring(int fd, bool socket, bool never_full = false);
    // For a backend's constructor instead: frame by frame by choice, `why` (a static string)
    // what why_not_in_batches() says.
    void write_frame_by_frame(const char* why) noexcept { batch_off_ = why; }

private:
    // Kept until the backend goes even when it stopped being used: its teardown is a register
    // call the device's thread may not make under its seccomp filter.
    std::unique_ptr<uring::FrameWriter> writer_;
    const char* batch_off_ = "not set up";
};

}  // namespace vmm::virtio_net
