// PCI configuration mechanism #1, bus 0 scan, BAR sizing/assignment and capability walk for
// the test guests (see lib/pci.h). BSP only.
#include "lib/pci.h"

#include "lib/io.h"

enum { kConfigAddress = 0xcf8, kConfigData = 0xcfc, kConfigEnable = 1u << 31 };

// Bit 31 enable, bus 23:16, device 15:11, function 10:8, dword-aligned register 7:2.
static void cfg_select(uint8_t bus, uint8_t slot, uint8_t fn, uint8_t off) {
    outl(kConfigAddress, kConfigEnable | (uint32_t)bus << 16 | (uint32_t)(slot & 31) << 11 |
                             (uint32_t)(fn & 7) << 8 | (off & 0xfc));
}

uint32_t pci_cfg_read32(uint8_t bus, uint8_t slot, uint8_t fn, uint8_t off) {
    cfg_select(bus, slot, fn, off);
    return inl(kConfigData);
}
uint16_t pci_cfg_read16(uint8_t bus, uint8_t slot, uint8_t fn, uint8_t off) {
    cfg_select(bus, slot, fn, off);
    return inw(kConfigData + (off & 2));
}
uint8_t pci_cfg_read8(uint8_t bus, uint8_t slot, uint8_t fn, uint8_t off) {
    cfg_select(bus, slot, fn, off);
    return inb(kConfigData + (off & 3));
}
void pci_cfg_write32(uint8_t bus, uint8_t slot, uint8_t fn, uint8_t off, uint32_t v) {
    cfg_select(bus, slot, fn, off);
    outl(kConfigData, v);
}
void pci_cfg_write16(uint8_t bus, uint8_t slot, uint8_t fn, uint8_t off, uint16_t v) {
    cfg_select(bus, slot, fn, off);
    outw(kConfigData + (off & 2), v);
}
void pci_cfg_write8(uint8_t bus, uint8_t slot, uint8_t fn, uint8_t off, uint8_t v) {
    cfg_select(bus, slot, fn, off);
    outb(kConfigData + (off & 3), v);
}

uint32_t pci_read32(const struct pci_dev* d, uint8_t off) { return pci_cfg_read32(d->bus, d->slot, d->fn, off); }
uint16_t pci_read16(const struct pci_dev* d, uint8_t off) { return pci_cfg_read16(d->bus, d->slot, d->fn, off); }
uint8_t pci_read8(const struct pci_dev* d, uint8_t off) { return pci_cfg_read8(d->bus, d->slot, d->fn, off); }
void pci_write32(const struct pci_dev* d, uint8_t off, uint32_t v) { pci_cfg_write32(d->bus, d->slot, d->fn, off, v); }
void pci_write16(const struct pci_dev* d, uint8_t off, uint16_t v) { pci_cfg_write16(d->bus, d->slot, d->fn, off, v); }
void pci_write8(const struct pci_dev* d, uint8_t off, uint8_t v) { pci_cfg_write8(d->bus, d->slot, d->fn, off, v); }

// Fills *d when bus:slot.fn answers (vendor != 0xffff).
static bool probe_function(uint8_t bus, uint8_t slot, uint8_t fn, struct pci_dev* d) {
    uint32_t id = pci_cfg_read32(bus, slot, fn, kPciVendorId);
    if ((id & 0xffff) == 0xffff || (id & 0xffff) == 0) return false;
    d->bus = bus;
    d->slot = slot;
    d->fn = fn;
    d->vendor = (uint16_t)id;
    d->device = (uint16_t)(id >> 16);
    uint32_t class_rev = pci_cfg_read32(bus, slot, fn, kPciClassRevision);
    d->class_code = class_rev >> 8;
    d->revision = (uint8_t)class_rev;
    d->header_type = pci_cfg_read8(bus, slot, fn, kPciHeaderType);
    return true;
}

uint32_t pci_scan_bus0(pci_visit_fn visit, void* ctx) {
    uint32_t count = 0;
    for (uint8_t slot = 0; slot < 32; ++slot) {
        struct pci_dev d;
        if (!probe_function(0, slot, 0, &d)) continue;
        uint8_t functions = (d.header_type & 0x80) ? 8 : 1;
        d.header_type &= 0x7f;
        ++count;
        if (!visit(&d, ctx)) return count;
        for (uint8_t fn = 1; fn < functions; ++fn) {
            if (!probe_function(0, slot, fn, &d)) continue;
            d.header_type &= 0x7f;
            ++count;
            if (!visit(&d, ctx)) return count;
        }
    }
    return count;
}

struct find_ctx {
    uint16_t vendor, device;
    struct pci_dev* out;
    bool found;
};

static bool find_visit(const struct pci_dev* d, void* ctx) {
    struct find_ctx* f = ctx;
    if (d->vendor != f->vendor || d->device != f->device) return true;
    *f->out = *d;
    f->found = true;
    return false;
}

bool pci_find_device(uint16_t vendor, uint16_t device, struct pci_dev* out) {
    struct find_ctx f = {vendor, device, out, false};
    pci_scan_bus0(find_visit, &f);
    return f.found;
}

// Reads and sizes BAR i (decoding must be off). *hi gets the upper half of a 64-bit BAR's
// address. Returns the number of BAR slots the BAR uses (1, or 2 for a 64-bit one).
static uint32_t probe_bar(const struct pci_dev* d, uint32_t i, struct pci_bar* b, uint32_t* hi,
                          bool* too_large) {
    uint8_t off = (uint8_t)(kPciBar0 + 4 * i);
    uint32_t v = pci_read32(d, off);
    pci_write32(d, off, 0xffffffffu);
    uint32_t mask = pci_read32(d, off);
    pci_write32(d, off, v);
    *b = (struct pci_bar){0};
    *hi = 0;
    *too_large = false;
    if (mask == 0 || mask == 0xffffffffu) return 1;  // not implemented (or nothing answers)

    if (v & kPciBarIo) {
        mask &= ~3u;
        if (!(mask & 0xffff0000u)) mask |= 0xffff0000u;  // 16-bit decoders read 0 up there
        b->io = true;
        b->addr = v & ~3u;
        b->size = ~mask + 1;
        return 1;
    }

    b->prefetchable = (v & kPciBarPrefetchable) != 0;
    uint32_t slots = 1;
    if ((v & 6) == kPciBarMemType64) {
        if (i + 1 >= kPciMaxBars) return 1;  // malformed: no upper half
        slots = 2;
        b->is64 = true;
        uint8_t hoff = (uint8_t)(off + 4);
        *hi = pci_read32(d, hoff);
        pci_write32(d, hoff, 0xffffffffu);
        uint32_t hmask = pci_read32(d, hoff);
        pci_write32(d, hoff, *hi);
        if (hmask != 0xffffffffu) *too_large = true;  // 4 GiB or more
    }
    mask &= ~0xfu;
    b->addr = v & ~0xfu;
    b->size = ~mask + 1;
    if (mask == 0 || b->size >= 0x80000000u) *too_large = true;
    return slots;
}

static uint32_t next_mmio;
static uint32_t next_io;
static bool allocator_ready;

static uint32_t align_up(uint32_t v, uint32_t a) { return (v + a - 1) & ~(a - 1); }

static bool reserve_visit(const struct pci_dev* d, void* ctx) {
    (void)ctx;
    if (d->header_type != 0) return true;
    uint16_t cmd = pci_read16(d, kPciCommand);
    pci_write16(d, kPciCommand, cmd & ~(kPciCommandIo | kPciCommandMemory));
    for (uint32_t i = 0; i < kPciMaxBars;) {
        // Only assigned BARs matter: skip the sizing writes for the others.
        uint32_t raw = pci_read32(d, (uint8_t)(kPciBar0 + 4 * i));
        if ((raw & ~0xfu) == 0 || ((raw & kPciBarIo) && (raw & ~3u) == 0)) {
            i += (!(raw & kPciBarIo) && (raw & 6) == kPciBarMemType64) ? 2 : 1;
            continue;
        }
        struct pci_bar b;
        uint32_t hi;
        bool too_large;
        i += probe_bar(d, i, &b, &hi, &too_large);
        if (too_large || b.size == 0) continue;
        uint32_t end = b.addr + b.size;
        if (b.io) {
            if (b.addr >= kPciGuestIoStart && b.addr < kPciGuestIoEnd && end > next_io) next_io = end;
        } else if (hi == 0 && b.addr >= kPciGuestMmioStart && b.addr < kPciGuestMmioEnd && end > next_mmio) {
            next_mmio = end;
        }
    }
    pci_write16(d, kPciCommand, cmd);
    return true;
}

// The first assignment looks at what the firmware already placed in the windows and starts
// above it; under vmm-anchor (no firmware) nothing is there and no other BAR is touched.
static void allocator_init(void) {
    if (allocator_ready) return;
    allocator_ready = true;
    next_mmio = kPciGuestMmioStart;
    next_io = kPciGuestIoStart;
    pci_scan_bus0(reserve_visit, 0);
}

static bool allocate(bool io, uint32_t size, uint32_t* addr) {
    allocator_init();
    if (io) {
        uint32_t a = align_up(next_io, size < 4 ? 4 : size);
        if (a < next_io || a + size > kPciGuestIoEnd) return false;
        next_io = a + size;
        *addr = a;
        return true;
    }
    uint32_t a = align_up(next_mmio, size < 16 ? 16 : size);
    if (a < next_mmio || a + size < a || a + size > kPciGuestMmioEnd) return false;
    next_mmio = a + size;
    *addr = a;
    return true;
}

enum pci_status pci_setup_bars(const struct pci_dev* d, struct pci_bar bars[kPciMaxBars]) {
    uint16_t cmd = pci_read16(d, kPciCommand);
    pci_write16(d, kPciCommand, cmd & ~(kPciCommandIo | kPciCommandMemory | kPciCommandBusMaster));
    enum pci_status status = kPciOk;
    uint16_t enable = kPciCommandBusMaster;
    for (uint32_t i = 0; i < kPciMaxBars; ++i) bars[i] = (struct pci_bar){0};
    for (uint32_t i = 0; i < kPciMaxBars;) {
        struct pci_bar* b = &bars[i];
        uint32_t hi;
        bool too_large;
        uint32_t slots = probe_bar(d, i, b, &hi, &too_large);
        uint8_t off = (uint8_t)(kPciBar0 + 4 * i);
        if (too_large) {
            status = kPciBarTooLarge;
            *b = (struct pci_bar){0};
        } else if (b->size != 0) {
            if (b->addr == 0 || hi != 0) {
                uint32_t addr;
                if (!allocate(b->io, b->size, &addr)) {
                    status = kPciNoSpace;
                    *b = (struct pci_bar){0};
                    i += slots;
                    continue;
                }
                pci_write32(d, off, addr);
                if (b->is64) pci_write32(d, (uint8_t)(off + 4), 0);
                b->addr = addr;
                b->assigned = true;
            }
            enable |= b->io ? kPciCommandIo : kPciCommandMemory;
        }
        i += slots;
    }
    pci_write16(d, kPciCommand, cmd | enable);
    return status;
}

uint32_t pci_caps(const struct pci_dev* d, uint8_t offsets[kPciMaxCaps]) {
    if (!(pci_read16(d, kPciStatus) & kPciStatusCapabilityList)) return 0;
    uint32_t n = 0;
    uint8_t at = pci_read8(d, kPciCapabilityPointer) & 0xfc;
    // Capabilities live after the 64-byte header.
    while (at >= 0x40 && n < kPciMaxCaps) {
        offsets[n++] = at;
        at = pci_read8(d, (uint8_t)(at + 1)) & 0xfc;
    }
    return n;
}
