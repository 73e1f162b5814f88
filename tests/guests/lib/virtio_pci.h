// A polled virtio 1.x driver over the modern PCI transport (virtio 1.2 §4.1; no legacy
// interface), for the test guests: finds the device's capabilities, runs the initialization
// sequence of §3.1.1, sets up split virtqueues (§2.7) in static guest memory, submits buffer
// chains, notifies, and polls the used ring with a bounded wait. No interrupts: the driver asks
// the device for none (VIRTQ_AVAIL_F_NO_INTERRUPT) and leaves the MSI-X vectors unset.
// BSP only, one request in flight per call; paging is off, so a pointer is a guest-physical
// address.
//
// Exit codes: every function returns 0 or a virtio_error, which the guests pass to debug_exit()
// unchanged, so a failing init step is named by the exit status: (code << 1) | 1.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "lib/pci.h"

enum {
    kVirtioVendor = 0x1af4,
    kVirtioPciDeviceNet = 0x1041,  // 0x1040 + device type (§4.1.2.1)
    kVirtioPciDeviceBlock = 0x1042,
    kVirtioPciDeviceConsole = 0x1043,

    // §2.1 device status.
    kVirtioStatusAcknowledge = 1,
    kVirtioStatusDriver = 2,
    kVirtioStatusDriverOk = 4,
    kVirtioStatusFeaturesOk = 8,
    kVirtioStatusNeedsReset = 64,
    kVirtioStatusFailed = 128,

    // §4.1.4 virtio_pci_cap.cfg_type.
    kVirtioPciCapCommon = 1,
    kVirtioPciCapNotify = 2,
    kVirtioPciCapIsr = 3,
    kVirtioPciCapDevice = 4,

    // §2.7.5 descriptor flags, §2.7.6 avail flags.
    kVirtqDescNext = 1,
    kVirtqDescWrite = 2,
    kVirtqAvailNoInterrupt = 1,

    // The ring size this driver uses: min(device maximum, kVirtqMaxSize), a power of two.
    kVirtqMaxSize = 8,
};
#define VIRTIO_F_VERSION_1 (1ull << 32)
#define VIRTIO_F_ACCESS_PLATFORM (1ull << 33)

enum virtio_error {
    kVirtioOk = 0,
    kVirtioErrNoDevice = 0x10,    // no vendor 1af4 function with that device id on bus 0
    kVirtioErrBars = 0x11,        // a BAR could not be sized or assigned
    kVirtioErrCaps = 0x12,        // common/notify/ISR (or a needed device cfg) cap missing or unusable
    kVirtioErrReset = 0x13,       // device_status did not read 0 after the reset write
    kVirtioErrNoVersion1 = 0x14,  // VIRTIO_F_VERSION_1 not offered (legacy-only device)
    kVirtioErrFeaturesOk = 0x15,  // FEATURES_OK did not stick: the device refused the features
    kVirtioErrQueue = 0x16,       // queue index >= num_queues, size 0, or queue_enable not set
    kVirtioErrTimeout = 0x17,     // the used ring did not advance within the bound
    kVirtioErrDeviceStatus = 0x18,// NEEDS_RESET or FAILED after DRIVER_OK
    kVirtioErrRing = 0x19,        // no free descriptors, or the device returned an unknown id
};

// Where a structure lives: a memory address or an I/O port (a capability may point at either
// kind of BAR).
struct virtio_region {
    uint32_t addr;
    uint32_t len;
    bool io;
};

// §2.7 split virtqueue, with the ring storage inline (statically allocated by the guest):
// descriptor table 16-byte aligned, available ring 2, used ring 4 (§2.7.1 for VERSION_1).
struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};
struct virtq_avail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[kVirtqMaxSize];
    uint16_t used_event;
};
struct virtq_used_elem {
    uint32_t id;
    uint32_t len;
};
struct virtq_used {
    uint16_t flags;
    uint16_t idx;
    struct virtq_used_elem ring[kVirtqMaxSize];
    uint16_t avail_event;
};
struct virtq {
    struct virtq_desc desc[kVirtqMaxSize] __attribute__((aligned(16)));
    struct virtq_avail avail __attribute__((aligned(16)));
    struct virtq_used used __attribute__((aligned(16)));
    uint16_t index;      // queue number
    uint16_t size;       // negotiated size
    uint16_t free_head;  // free descriptors, linked through desc[].next
    uint16_t num_free;
    uint16_t avail_idx;  // the driver's copy of avail.idx
    uint16_t last_used;  // used.idx already consumed
    struct virtio_region notify;  // where virtq_kick writes the queue index
};

struct virtio_dev {
    struct pci_dev pci;
    struct pci_bar bars[kPciMaxBars];
    struct virtio_region common, notify, isr, device;
    uint32_t notify_off_multiplier;
    uint16_t num_queues;
    uint64_t device_features;  // what the device offered
    uint64_t features;         // what was negotiated
};

// One buffer of a chain: device_writes = the device writes it (VIRTQ_DESC_F_WRITE). Per §2.7.4
// the device-readable buffers come first.
struct virtq_buf {
    void* addr;
    uint32_t len;
    bool device_writes;
};

// Patchable in the image (find the 16-byte tag; the u32 follows): with clear_bars non-zero,
// virtio_pci_probe() first writes 0 to every BAR of the device, so that under QEMU (where the
// firmware assigned them) the guest exercises the assignment path vmm-anchor needs.
struct virtio_pci_options {
    char tag[16];
    uint32_t clear_bars;
};
extern volatile struct virtio_pci_options virtio_pci_options;

// Finds vendor 1af4 device `pci_device_id` on bus 0, sets up its BARs (pci_setup_bars: decoding
// and bus mastering on) and locates its common, notify, ISR and device-config structures.
enum virtio_error virtio_pci_probe(struct virtio_dev* d, uint16_t pci_device_id);

// §3.1.1 steps 1-6: reset (waits, bounded, for device_status to read 0), ACKNOWLEDGE, DRIVER,
// reads the 64 device feature bits through device_feature_select, writes
// (offered & wanted) | VERSION_1 through driver_feature_select, sets FEATURES_OK and reads it
// back. VERSION_1 is required; the other wanted bits are taken only if offered (d->features
// says which). On failure the device is left with FAILED set.
enum virtio_error virtio_pci_negotiate(struct virtio_dev* d, uint64_t wanted);

// §4.1.5.1.3: selects queue `index`, sets its size to min(queue_size, kVirtqMaxSize), writes the
// three ring addresses, computes the notify address (notify cap offset + queue_notify_off *
// notify_off_multiplier), and sets queue_enable. Call between FEATURES_OK and DRIVER_OK.
enum virtio_error virtio_pci_setup_queue(struct virtio_dev* d, struct virtq* q, uint16_t index);

// §3.1.1 step 8: DRIVER_OK. Fails if the device then reports NEEDS_RESET or FAILED.
enum virtio_error virtio_pci_driver_ok(struct virtio_dev* d);

uint8_t virtio_pci_status(const struct virtio_dev* d);
// Reads (and so clears) the ISR status byte (§4.1.4.5).
uint8_t virtio_pci_read_isr(const struct virtio_dev* d);

// Device-specific configuration (§4.1.4.6). The capability is optional: without it
// virtio_pci_has_config() is false and the reads must not be used. read64 reads the two
// halves under the config_generation protocol (§2.5.1), retrying a bounded number of times.
uint8_t virtio_cfg_read8(const struct virtio_dev* d, uint32_t off);
uint16_t virtio_cfg_read16(const struct virtio_dev* d, uint32_t off);
uint32_t virtio_cfg_read32(const struct virtio_dev* d, uint32_t off);
uint64_t virtio_cfg_read64(const struct virtio_dev* d, uint32_t off);
static inline bool virtio_pci_has_config(const struct virtio_dev* d) { return d->device.len != 0; }

// Puts a chain of n buffers on the available ring (no notify yet). Returns the head
// descriptor index, or -1 when fewer than n descriptors are free.
int virtq_submit(struct virtq* q, const struct virtq_buf* bufs, uint32_t n);
// Notifies the device that queue q has new available buffers (§4.1.5.2).
void virtq_kick(struct virtq* q);
// Takes one used element if the device has returned one: its head id (and the bytes the device
// wrote into *len), freeing the chain's descriptors. -1 when none, -2 when the device returned
// an id that is not a descriptor index (the element is consumed).
int virtq_take_used(struct virtq* q, uint32_t* len);
// Polls virtq_take_used until it returns, for at most timeout_ns (see lib/deadline.h).
// Returns the head id, -1 on timeout, -2 for a bad id.
int virtq_wait_used(struct virtq* q, uint32_t timeout_ns, uint32_t* len);

// submit + kick + wait for that chain: kVirtioOk, kVirtioErrRing or kVirtioErrTimeout.
enum virtio_error virtq_transfer(struct virtq* q, const struct virtq_buf* bufs, uint32_t n,
                                 uint32_t* written);

// Prints "<name>: <bb:ss.f> <vendor>:<device>, common@<addr> notify@<addr>+<off>*<mult>
// isr@<addr> device@<addr>[, BARs assigned by the guest]\n" on COM1.
void virtio_pci_print(const struct virtio_dev* d, const char* name);
