// Tap: see tap.h.
#include "devicemodel/virtio-net/tap.h"

#include "common/error.h"
#include "common/log.h"
#include "common/plain_syscall.h"
#include "common/small_file.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

namespace vmm::virtio_net {

namespace {

[[noreturn]] void throw_tap_error(const std::string& name, const char* step, int err) {
    std::string why;
    switch (err) {
        case ENOENT:
        case ENODEV:
        case ENXIO:
            why = "/dev/net/tun is missing (is the tun module loaded?)";
            break;
        case EPERM:
        case EACCES:
            why = "permission denied (needs CAP_NET_ADMIN, or a tap owned by this user)";
            break;
        case EBUSY:
            why = "busy: another process has it open";
            break;
        case EINVAL:
            why = "exists but is not a tap, or the name is invalid";
            break;
        default:
            why = step;
            break;
    }
    throw_errno("tap '" + name + "': " + why, err);
}

}  // namespace

const char* const kCheapSystemCalls = "no PTI or IBRS here: a write() per frame costs less than an io_uring batch";

bool tap_batches_pay_off(std::string_view meltdown, std::string_view spectre_v2) {
    // "Mitigation: PTI"; legacy IBRS is "Mitigation: IBRS" (enhanced IBRS, cheap, reads
    // "Mitigation: Enhanced IBRS" or "Mitigation: Enhanced / Automatic IBRS").
    return meltdown.starts_with("Mitigation: PTI") || spectre_v2.find("Mitigation: IBRS") != std::string_view::npos;
}

bool tap_batches_pay_off_here() {
    const std::string reports = "/sys/devices/system/cpu/vulnerabilities/";
    return tap_batches_pay_off(read_small_file(reports + "meltdown", 256).value_or(""),
                               read_small_file(reports + "spectre_v2", 256).value_or(""));
}

Tap::Tap(const std::string& name) : name_(name) {
    if (name.size() >= IFNAMSIZ) throw Error("tap '" + name + "': name longer than " + std::to_string(IFNAMSIZ - 1) + " characters");
    int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) throw_tap_error(name, "open /dev/net/tun", errno);
    fd_ = Fd(fd);

    ifreq ifr{};
    std::memcpy(ifr.ifr_name, name.data(), name.size());
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    // TUNSETIFF reads and writes a struct ifreq, which ifr is.
    if (::ioctl(fd_.get(), TUNSETIFF, &ifr) < 0) throw_tap_error(name, "TUNSETIFF", errno);
    name_.assign(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));

    // virtio 1.x header (with num_buffers) in front of every frame. TUNSETVNETHDRSZ reads an int.
    int hdr = static_cast<int>(kVnetHeaderSize);
    if (::ioctl(fd_.get(), TUNSETVNETHDRSZ, &hdr) < 0) throw_errno("tap '" + name_ + "': TUNSETVNETHDRSZ 12");

    // Probe the offloads the kernel accepts, widest first, then start with none: the guest has
    // not negotiated any yet. TUNSETOFFLOAD takes the flags by value.
    for (unsigned want : {unsigned{TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN}, unsigned{TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6},
                          unsigned{TUN_F_CSUM}}) {
        if (::ioctl(fd_.get(), TUNSETOFFLOAD, static_cast<unsigned long>(want)) == 0) {
            supported_ = want;
            break;
        }
    }
    if (::ioctl(fd_.get(), TUNSETOFFLOAD, 0ul) < 0) throw_errno("tap '" + name_ + "': TUNSETOFFLOAD 0");
    if (tap_batches_pay_off_here()) {
        // A tap's write waits (or, non-blocking, answers EAGAIN) only for its send buffer, which
        // is unlimited (INT_MAX) unless someone set it (TUNSETSNDBUF): then nothing can be full
        // for now, and a batch's frames keep their order without links. TUNGETSNDBUF writes an int.
        int sndbuf = 0;
        const bool never_full = ::ioctl(fd_.get(), TUNGETSNDBUF, &sndbuf) == 0 && sndbuf == INT_MAX;
        write_batches_with_io_uring(fd_.get(), false, never_full);
    } else {
        write_frame_by_frame(kCheapSystemCalls);
    }
    logger("tap")->info("{}: opened (offloads {:#x}; {})", name_, supported_,
                        !writes_in_batches() ? "one write per frame"
                        : batches_linked()   ? "transmit in linked io_uring batches (system calls are dear here)"
                                             : "transmit in io_uring batches (system calls are dear here)");
}

ssize_t Tap::read(std::span<const iovec> iov) {
    // A tap read returns exactly one frame; the kernel reports its full length even when the
    // iov was too short (the rest is dropped), which the device treats as a truncated frame.
    // One buffer (the device's receive path reads each frame into one): read(), without the
    // iovec's copy-in and checks.
    // Plain system calls (common/plain_syscall.h): no cancellation bookkeeping per frame.
    const ssize_t n = iov.size() == 1 ? sys::read(fd_.get(), iov[0].iov_base, iov[0].iov_len)
                                      : sys::readv(fd_.get(), iov.data(), static_cast<int>(std::min<std::size_t>(iov.size(), IOV_MAX)));
    if (n < 0) return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return n;
}

ssize_t Tap::write(std::span<const iovec> iov) {
    // One buffer (a frame in one descriptor, Linux's usual): write(), no iovec to import.
    const ssize_t n = iov.size() == 1 ? sys::write(fd_.get(), iov[0].iov_base, iov[0].iov_len)
                                      : sys::writev(fd_.get(), iov.data(), static_cast<int>(std::min<std::size_t>(iov.size(), IOV_MAX)));
    if (n < 0) return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    return n;
}

bool Tap::set_offloads(unsigned tun_flags) {
    tun_flags &= supported_;
    // TSO without checksum offload is refused by the kernel (and by the virtio feature rules).
    if (!(tun_flags & TUN_F_CSUM)) tun_flags = 0;
    if (::ioctl(fd_.get(), TUNSETOFFLOAD, static_cast<unsigned long>(tun_flags)) < 0) {
        logger("tap")->warn("{}: TUNSETOFFLOAD {:#x}: {}", name_, tun_flags, std::strerror(errno));
        return false;
    }
    return true;
}

}  // namespace vmm::virtio_net
