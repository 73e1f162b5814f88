// The polled modern virtio-pci driver of the test guests (see lib/virtio_pci.h): transport
// registers, feature negotiation, split virtqueues. BSP only.
#include "lib/virtio_pci.h"

#include "lib/deadline.h"
#include "lib/io.h"
#include "lib/serial.h"

// §4.1.4.3 struct virtio_pci_common_cfg.
enum {
    kCommonDeviceFeatureSelect = 0x00,
    kCommonDeviceFeature = 0x04,
    kCommonDriverFeatureSelect = 0x08,
    kCommonDriverFeature = 0x0c,
    kCommonMsixConfig = 0x10,
    kCommonNumQueues = 0x12,
    kCommonDeviceStatus = 0x14,
    kCommonConfigGeneration = 0x15,
    kCommonQueueSelect = 0x16,
    kCommonQueueSize = 0x18,
    kCommonQueueMsixVector = 0x1a,
    kCommonQueueEnable = 0x1c,
    kCommonQueueNotifyOff = 0x1e,
    kCommonQueueDesc = 0x20,
    kCommonQueueDriver = 0x28,
    kCommonQueueDevice = 0x30,
    kCommonLength = 0x38,

    // §4.1.4 struct virtio_pci_cap field offsets inside the capability.
    kCapCfgType = 3,
    kCapBar = 4,
    kCapOffset = 8,
    kCapLength = 12,
    kCapNotifyMultiplier = 16,  // struct virtio_pci_notify_cap

    kNoVector = 0xffff,
    kResetPolls = 100000,
    kGenerationRetries = 16,
};

static const uint32_t kTransferTimeoutNs = 3000u * 1000 * 1000;
static const uint32_t kTransferMaxPolls = 20u * 1000 * 1000;

static uint8_t region_read8(const struct virtio_region* r, uint32_t off) {
    return r->io ? inb((uint16_t)(r->addr + off)) : mmio_read8(r->addr + off);
}
static uint16_t region_read16(const struct virtio_region* r, uint32_t off) {
    return r->io ? inw((uint16_t)(r->addr + off)) : mmio_read16(r->addr + off);
}
static uint32_t region_read32(const struct virtio_region* r, uint32_t off) {
    return r->io ? inl((uint16_t)(r->addr + off)) : mmio_read32(r->addr + off);
}
static void region_write8(const struct virtio_region* r, uint32_t off, uint8_t v) {
    if (r->io) outb((uint16_t)(r->addr + off), v);
    else mmio_write8(r->addr + off, v);
}
static void region_write16(const struct virtio_region* r, uint32_t off, uint16_t v) {
    if (r->io) outw((uint16_t)(r->addr + off), v);
    else mmio_write16(r->addr + off, v);
}
static void region_write32(const struct virtio_region* r, uint32_t off, uint32_t v) {
    if (r->io) outl((uint16_t)(r->addr + off), v);
    else mmio_write32(r->addr + off, v);
}
// §4.1.3.1: 64-bit fields may be written as two 32-bit halves, low first.
static void region_write64(const struct virtio_region* r, uint32_t off, uint64_t v) {
    region_write32(r, off, (uint32_t)v);
    region_write32(r, off + 4, (uint32_t)(v >> 32));
}

static inline void compiler_barrier(void) { __asm__ volatile("" ::: "memory"); }

// Resolves a virtio_pci_cap to a region inside its BAR; false if the BAR is unusable or too
// small for the structure.
static bool cap_region(const struct virtio_dev* d, uint8_t cap, uint32_t min_len, struct virtio_region* r) {
    uint8_t bar = pci_read8(&d->pci, (uint8_t)(cap + kCapBar));
    if (bar >= kPciMaxBars) return false;
    const struct pci_bar* b = &d->bars[bar];
    uint32_t offset = pci_read32(&d->pci, (uint8_t)(cap + kCapOffset));
    uint32_t length = pci_read32(&d->pci, (uint8_t)(cap + kCapLength));
    if (b->size == 0 || length < min_len || offset > b->size || length > b->size - offset) return false;
    r->addr = b->addr + offset;
    r->len = length;
    r->io = b->io;
    return true;
}

volatile struct virtio_pci_options virtio_pci_options __attribute__((used)) = {"VMM-PCI-CLEARBAR", 0};

// Makes the function look as vmm-anchor presents it (no firmware ran): every BAR reads 0.
static void clear_bars(const struct pci_dev* d) {
    uint16_t cmd = pci_read16(d, kPciCommand);
    pci_write16(d, kPciCommand, cmd & ~(kPciCommandIo | kPciCommandMemory));
    for (uint8_t i = 0; i < kPciMaxBars; ++i) pci_write32(d, (uint8_t)(kPciBar0 + 4 * i), 0);
}

enum virtio_error virtio_pci_probe(struct virtio_dev* d, uint16_t pci_device_id) {
    *d = (struct virtio_dev){0};
    if (!pci_find_device(kVirtioVendor, pci_device_id, &d->pci)) return kVirtioErrNoDevice;
    if (d->pci.header_type != 0) return kVirtioErrNoDevice;
    if (virtio_pci_options.clear_bars) clear_bars(&d->pci);
    if (pci_setup_bars(&d->pci, d->bars) != kPciOk) return kVirtioErrBars;

    // §4.1.4: the first capability of each type the driver can use wins.
    uint8_t caps[kPciMaxCaps];
    uint32_t n = pci_caps(&d->pci, caps);
    bool have_common = false, have_notify = false, have_isr = false, have_device = false;
    for (uint32_t i = 0; i < n; ++i) {
        uint8_t at = caps[i];
        if (pci_read8(&d->pci, at) != kPciCapVendorSpecific) continue;
        uint8_t type = pci_read8(&d->pci, (uint8_t)(at + kCapCfgType));
        if (type == kVirtioPciCapCommon && !have_common) {
            have_common = cap_region(d, at, kCommonLength, &d->common);
        } else if (type == kVirtioPciCapNotify && !have_notify) {
            // cap_len must cover notify_off_multiplier.
            if (pci_read8(&d->pci, (uint8_t)(at + 2)) < kCapNotifyMultiplier + 4) continue;
            have_notify = cap_region(d, at, 2, &d->notify);
            d->notify_off_multiplier = pci_read32(&d->pci, (uint8_t)(at + kCapNotifyMultiplier));
        } else if (type == kVirtioPciCapIsr && !have_isr) {
            have_isr = cap_region(d, at, 1, &d->isr);
        } else if (type == kVirtioPciCapDevice && !have_device) {
            have_device = cap_region(d, at, 1, &d->device);
        }
    }
    // §4.1.4.7: a device may have no device-specific configuration (d->device.len stays 0;
    // a guest that needs it checks virtio_pci_has_config).
    if (!have_common || !have_notify || !have_isr) return kVirtioErrCaps;
    return kVirtioOk;
}

uint8_t virtio_pci_status(const struct virtio_dev* d) { return region_read8(&d->common, kCommonDeviceStatus); }

static void add_status(struct virtio_dev* d, uint8_t bits) {
    region_write8(&d->common, kCommonDeviceStatus, virtio_pci_status(d) | bits);
}

enum virtio_error virtio_pci_negotiate(struct virtio_dev* d, uint64_t wanted) {
    // §4.1.4.3.2: writing 0 resets; the driver waits for device_status to read 0.
    region_write8(&d->common, kCommonDeviceStatus, 0);
    uint32_t polls = 0;
    while (virtio_pci_status(d) != 0) {
        if (++polls >= kResetPolls) return kVirtioErrReset;
        cpu_relax();
    }
    add_status(d, kVirtioStatusAcknowledge);
    add_status(d, kVirtioStatusDriver);

    region_write32(&d->common, kCommonDeviceFeatureSelect, 0);
    uint32_t lo = region_read32(&d->common, kCommonDeviceFeature);
    region_write32(&d->common, kCommonDeviceFeatureSelect, 1);
    uint32_t hi = region_read32(&d->common, kCommonDeviceFeature);
    d->device_features = (uint64_t)hi << 32 | lo;
    d->num_queues = region_read16(&d->common, kCommonNumQueues);
    if (!(d->device_features & VIRTIO_F_VERSION_1)) {
        add_status(d, kVirtioStatusFailed);
        return kVirtioErrNoVersion1;
    }

    // §6.1: a driver should accept ACCESS_PLATFORM when offered. These guests' DMA addresses are
    // guest-physical, which is what a device behind a platform IOMMU sees when the VMM maps
    // guest RAM at IOVA = GPA (a passed-through virtio function, tests/unit/anchor_vfio_kvm_test).
    d->features = (d->device_features & (wanted | VIRTIO_F_ACCESS_PLATFORM)) | VIRTIO_F_VERSION_1;
    region_write32(&d->common, kCommonDriverFeatureSelect, 0);
    region_write32(&d->common, kCommonDriverFeature, (uint32_t)d->features);
    region_write32(&d->common, kCommonDriverFeatureSelect, 1);
    region_write32(&d->common, kCommonDriverFeature, (uint32_t)(d->features >> 32));

    add_status(d, kVirtioStatusFeaturesOk);
    if (!(virtio_pci_status(d) & kVirtioStatusFeaturesOk)) {
        add_status(d, kVirtioStatusFailed);
        return kVirtioErrFeaturesOk;
    }
    region_write16(&d->common, kCommonMsixConfig, kNoVector);
    return kVirtioOk;
}

enum virtio_error virtio_pci_setup_queue(struct virtio_dev* d, struct virtq* q, uint16_t index) {
    if (index >= d->num_queues) return kVirtioErrQueue;
    region_write16(&d->common, kCommonQueueSelect, index);
    uint16_t max = region_read16(&d->common, kCommonQueueSize);
    if (max == 0) return kVirtioErrQueue;
    uint16_t size = kVirtqMaxSize;
    while (size > max) size >>= 1;  // a power of two no larger than the device's maximum

    // The ring memory is the guest's static storage: zero only the parts the device reads
    // before writing (avail flags/idx) and the used idx the driver polls.
    q->index = index;
    q->size = size;
    q->avail.flags = kVirtqAvailNoInterrupt;
    q->avail.idx = 0;
    q->used.flags = 0;
    q->used.idx = 0;
    q->avail_idx = 0;
    q->last_used = 0;
    for (uint16_t i = 0; i < size; ++i) {
        q->desc[i].flags = 0;
        q->desc[i].next = (uint16_t)(i + 1);
    }
    q->free_head = 0;
    q->num_free = size;

    region_write16(&d->common, kCommonQueueSize, size);
    region_write16(&d->common, kCommonQueueMsixVector, kNoVector);
    region_write64(&d->common, kCommonQueueDesc, (uint32_t)q->desc);
    region_write64(&d->common, kCommonQueueDriver, (uint32_t)&q->avail);
    region_write64(&d->common, kCommonQueueDevice, (uint32_t)&q->used);

    uint16_t notify_off = region_read16(&d->common, kCommonQueueNotifyOff);
    uint32_t offset = (uint32_t)notify_off * d->notify_off_multiplier;
    if (offset > d->notify.len || d->notify.len - offset < 2) return kVirtioErrQueue;
    q->notify.addr = d->notify.addr + offset;
    q->notify.len = 2;
    q->notify.io = d->notify.io;

    compiler_barrier();  // the ring is initialized before the device may look at it
    region_write16(&d->common, kCommonQueueEnable, 1);
    if (region_read16(&d->common, kCommonQueueEnable) != 1) return kVirtioErrQueue;
    return kVirtioOk;
}

enum virtio_error virtio_pci_driver_ok(struct virtio_dev* d) {
    add_status(d, kVirtioStatusDriverOk);
    uint8_t s = virtio_pci_status(d);
    if (s & (kVirtioStatusNeedsReset | kVirtioStatusFailed) || !(s & kVirtioStatusDriverOk))
        return kVirtioErrDeviceStatus;
    return kVirtioOk;
}

uint8_t virtio_pci_read_isr(const struct virtio_dev* d) { return region_read8(&d->isr, 0); }

uint8_t virtio_cfg_read8(const struct virtio_dev* d, uint32_t off) { return region_read8(&d->device, off); }
uint16_t virtio_cfg_read16(const struct virtio_dev* d, uint32_t off) { return region_read16(&d->device, off); }
uint32_t virtio_cfg_read32(const struct virtio_dev* d, uint32_t off) { return region_read32(&d->device, off); }

uint64_t virtio_cfg_read64(const struct virtio_dev* d, uint32_t off) {
    uint32_t lo = 0, hi = 0;
    for (uint32_t i = 0; i < kGenerationRetries; ++i) {
        uint8_t before = region_read8(&d->common, kCommonConfigGeneration);
        lo = region_read32(&d->device, off);
        hi = region_read32(&d->device, off + 4);
        if (region_read8(&d->common, kCommonConfigGeneration) == before) break;
    }
    return (uint64_t)hi << 32 | lo;
}

int virtq_submit(struct virtq* q, const struct virtq_buf* bufs, uint32_t n) {
    if (n == 0 || n > q->num_free) return -1;
    uint16_t head = q->free_head;
    uint16_t at = head;
    for (uint32_t i = 0; i < n; ++i) {
        struct virtq_desc* desc = &q->desc[at];
        desc->addr = (uint32_t)bufs[i].addr;
        desc->len = bufs[i].len;
        desc->flags = (uint16_t)((bufs[i].device_writes ? kVirtqDescWrite : 0) | (i + 1 < n ? kVirtqDescNext : 0));
        if (i + 1 < n) at = desc->next;  // the free list already links the next free one
    }
    q->free_head = q->desc[at].next;
    q->num_free = (uint16_t)(q->num_free - n);

    q->avail.ring[q->avail_idx & (q->size - 1)] = head;
    ++q->avail_idx;
    // §2.7.13: the ring entry and descriptors before the index (x86 keeps stores in order).
    __atomic_store_n(&q->avail.idx, q->avail_idx, __ATOMIC_RELEASE);
    return head;
}

void virtq_kick(struct virtq* q) {
    compiler_barrier();
    region_write16(&q->notify, 0, q->index);
}

int virtq_take_used(struct virtq* q, uint32_t* len) {
    uint16_t used_idx = __atomic_load_n(&q->used.idx, __ATOMIC_ACQUIRE);
    if (used_idx == q->last_used) return -1;
    const volatile struct virtq_used_elem* e = &q->used.ring[q->last_used & (q->size - 1)];
    uint32_t id = e->id;
    if (len) *len = e->len;
    ++q->last_used;
    if (id >= q->size) return -2;
    // Return the chain to the free list.
    uint16_t tail = (uint16_t)id;
    uint16_t count = 1;
    while ((q->desc[tail].flags & kVirtqDescNext) && count < q->size) {
        tail = q->desc[tail].next;
        ++count;
    }
    q->desc[tail].next = q->free_head;
    q->free_head = (uint16_t)id;
    q->num_free = (uint16_t)(q->num_free + count);
    return (int)id;
}

int virtq_wait_used(struct virtq* q, uint32_t timeout_ns, uint32_t* len) {
    struct deadline dl;
    deadline_start(&dl, timeout_ns, kTransferMaxPolls);
    for (;;) {
        int id = virtq_take_used(q, len);
        if (id != -1) return id;
        if (deadline_expired(&dl)) return -1;
        cpu_relax();
    }
}

enum virtio_error virtq_transfer(struct virtq* q, const struct virtq_buf* bufs, uint32_t n, uint32_t* written) {
    int head = virtq_submit(q, bufs, n);
    if (head < 0) return kVirtioErrRing;
    virtq_kick(q);
    int id = virtq_wait_used(q, kTransferTimeoutNs, written);
    if (id == -1) return kVirtioErrTimeout;
    if (id != head) return kVirtioErrRing;
    return kVirtioOk;
}

static void print_region(const char* label, const struct virtio_region* r) {
    serial_puts(label);
    serial_puts(r->io ? "@io:" : "@");
    serial_put_hex(r->addr);
}

static void print_hex2(uint32_t v) {
    serial_putc("0123456789abcdef"[(v >> 4) & 0xf]);
    serial_putc("0123456789abcdef"[v & 0xf]);
}

void virtio_pci_print(const struct virtio_dev* d, const char* name) {
    serial_puts(name);
    serial_puts(": ");
    print_hex2(d->pci.bus);
    serial_putc(':');
    print_hex2(d->pci.slot);
    serial_putc('.');
    serial_put_dec(d->pci.fn);
    serial_puts(" 1af4:");
    serial_put_hex(d->pci.device);
    serial_puts(",");
    print_region(" common", &d->common);
    print_region(" notify", &d->notify);
    serial_puts("*");
    serial_put_dec(d->notify_off_multiplier);
    print_region(" isr", &d->isr);
    if (virtio_pci_has_config(d)) print_region(" device", &d->device);
    else serial_puts(" no device config");
    bool assigned = false;
    for (uint32_t i = 0; i < kPciMaxBars; ++i) assigned = assigned || d->bars[i].assigned;
    if (assigned) serial_puts(", BARs assigned by the guest");
    serial_putc('\n');
}
