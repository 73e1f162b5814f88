// The virtio-net guest ABI (virtio 1.2 §5.1): feature bits, config space, packet header.
// linux/virtio_net.h holds these but does not compile as C++ (a struct member named `class`),
// so the values are restated here with the kernel's names and checked by static_asserts.
// Pure definitions, any thread.
#pragma once

#include <cstddef>
#include <cstdint>

namespace vmm::virtio_net {

// §5.1.3 feature bits.
inline constexpr unsigned kNetFCsum = 0;        // VIRTIO_NET_F_CSUM: device takes partial checksums
inline constexpr unsigned kNetFGuestCsum = 1;   // VIRTIO_NET_F_GUEST_CSUM
inline constexpr unsigned kNetFMtu = 3;         // VIRTIO_NET_F_MTU
inline constexpr unsigned kNetFMac = 5;         // VIRTIO_NET_F_MAC
inline constexpr unsigned kNetFGuestTso4 = 7;   // VIRTIO_NET_F_GUEST_TSO4
inline constexpr unsigned kNetFGuestTso6 = 8;   // VIRTIO_NET_F_GUEST_TSO6
inline constexpr unsigned kNetFGuestEcn = 9;    // VIRTIO_NET_F_GUEST_ECN
inline constexpr unsigned kNetFGuestUfo = 10;   // VIRTIO_NET_F_GUEST_UFO
inline constexpr unsigned kNetFHostTso4 = 11;   // VIRTIO_NET_F_HOST_TSO4
inline constexpr unsigned kNetFHostTso6 = 12;   // VIRTIO_NET_F_HOST_TSO6
inline constexpr unsigned kNetFHostEcn = 13;    // VIRTIO_NET_F_HOST_ECN
inline constexpr unsigned kNetFMrgRxbuf = 15;   // VIRTIO_NET_F_MRG_RXBUF
inline constexpr unsigned kNetFStatus = 16;     // VIRTIO_NET_F_STATUS
inline constexpr unsigned kNetFCtrlVq = 17;     // VIRTIO_NET_F_CTRL_VQ

// §5.1.4 status field.
inline constexpr std::uint16_t kNetSLinkUp = 1;  // VIRTIO_NET_S_LINK_UP

// §5.1.6 header flags and GSO types.
inline constexpr std::uint8_t kNetHdrFNeedsCsum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
inline constexpr std::uint8_t kNetHdrGsoNone = 0;     // VIRTIO_NET_HDR_GSO_NONE

// §5.1.4 struct virtio_net_config, as far as this device fills it (little-endian, x86 host).
struct VirtioNetConfig {
    std::uint8_t mac[6];
    std::uint16_t status;
    std::uint16_t max_virtqueue_pairs;
    std::uint16_t mtu;
};
static_assert(sizeof(VirtioNetConfig) == 12);
static_assert(offsetof(VirtioNetConfig, status) == 6 && offsetof(VirtioNetConfig, max_virtqueue_pairs) == 8);

// §5.1.6 struct virtio_net_hdr_v1 (with num_buffers: always present with VERSION_1).
struct VirtioNetHdr {
    std::uint8_t flags;
    std::uint8_t gso_type;
    std::uint16_t hdr_len;
    std::uint16_t gso_size;
    std::uint16_t csum_start;
    std::uint16_t csum_offset;
    std::uint16_t num_buffers;
};
static_assert(sizeof(VirtioNetHdr) == 12);
static_assert(offsetof(VirtioNetHdr, num_buffers) == 10);

}  // namespace vmm::virtio_net
