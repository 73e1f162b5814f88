#include "lib/mptable.h"

#include "lib/string.h"

// MP spec 1.4 Table 4-1: the MP floating pointer structure.
struct mp_floating_pointer {
    char signature[4];  // "_MP_"
    uint32_t config_table;
    uint8_t length;  // in 16-byte units
    uint8_t spec_rev;
    uint8_t checksum;
    uint8_t feature[5];
} __attribute__((packed));

// Table 4-2: the configuration table header; the entries follow it.
struct mp_config_header {
    char signature[4];  // "PCMP"
    uint16_t base_length;
    uint8_t spec_rev;
    uint8_t checksum;
    char oem_id[8];
    char product_id[12];
    uint32_t oem_table;
    uint16_t oem_table_size;
    uint16_t entry_count;
    uint32_t lapic_addr;
    uint16_t ext_length;
    uint8_t ext_checksum;
    uint8_t reserved;
} __attribute__((packed));

// Table 4-3: entry types and their lengths.
enum { kEntryProcessor = 0, kEntryBus = 1, kEntryIoApic = 2, kEntryIoInterrupt = 3, kEntryLocalInterrupt = 4 };

struct mp_processor_entry {  // Table 4-4
    uint8_t type;
    uint8_t apic_id;
    uint8_t apic_version;
    uint8_t flags;  // bit 0 EN (usable), bit 1 BP (bootstrap processor)
    uint32_t signature;
    uint32_t features;
    uint32_t reserved[2];
} __attribute__((packed));

struct mp_ioapic_entry {  // Table 4-7
    uint8_t type;
    uint8_t id;
    uint8_t version;
    uint8_t flags;  // bit 0 EN
    uint32_t addr;
} __attribute__((packed));

enum { kCpuEnabled = 1 << 0, kCpuBootstrap = 1 << 1, kIoApicEnabled = 1 << 0 };

static uint8_t checksum(const void* p, uint32_t len) {
    const uint8_t* b = p;
    uint8_t sum = 0;
    while (len--) sum += *b++;
    return sum;
}

// §4: the pointer is on a 16-byte boundary in one of the searched ranges. The signature is
// compared as one word: the BIOS range has 4096 candidates, and each costs instructions.
static uint32_t scan(uint32_t start, uint32_t end) {
    const uint32_t signature = 0x5f504d5fu;  // "_MP_" little-endian
    for (uint32_t a = start; a + sizeof(struct mp_floating_pointer) <= end; a += 16) {
        const struct mp_floating_pointer* fp = (const void*)a;
        if (*(const uint32_t*)a == signature && fp->length == 1 && checksum(fp, 16) == 0) return a;
    }
    return 0;
}

static uint32_t find_floating_pointer(void) {
    // §4: the first KiB of the EBDA (segment in the BDA at 0x40e), else the last KiB of base
    // memory, else the BIOS ROM 0xf0000..0xfffff. A VMM without a BIOS may leave the BDA zero.
    uint32_t ebda = (uint32_t)(*(const volatile uint16_t*)0x40e) << 4;
    uint32_t found = 0;
    if (ebda >= 0x80000 && ebda < 0xa0000) found = scan(ebda, ebda + 1024);
    if (!found && ebda != 0x9fc00) found = scan(0x9fc00, 0xa0000);
    if (!found) found = scan(0xf0000, 0x100000);
    return found;
}

enum mp_status mptable_read(struct mp_config* out) {
    memset(out, 0, sizeof(*out));
    uint32_t fp_addr = find_floating_pointer();
    if (!fp_addr) return kMpNoFloatingPointer;
    const struct mp_floating_pointer* fp = (const void*)fp_addr;
    out->floating_pointer = fp_addr;
    if (fp->feature[0] != 0 || fp->config_table == 0) return kMpDefaultConfig;

    const struct mp_config_header* h = (const void*)fp->config_table;
    if (memcmp(h->signature, "PCMP", 4) != 0 || h->base_length < sizeof(*h) ||
        checksum(h, h->base_length) != 0)
        return kMpBadConfigTable;
    out->lapic_addr = h->lapic_addr;

    const uint8_t* p = (const uint8_t*)(h + 1);
    const uint8_t* end = (const uint8_t*)h + h->base_length;
    for (uint32_t i = 0; i < h->entry_count; ++i) {
        uint32_t len = *p == kEntryProcessor ? sizeof(struct mp_processor_entry) : 8;
        if (*p > kEntryLocalInterrupt || p + len > end) return kMpBadConfigTable;
        if (*p == kEntryProcessor) {
            const struct mp_processor_entry* e = (const void*)p;
            if ((e->flags & kCpuEnabled) && out->cpu_count < kMpMaxCpus) {
                out->cpu_apic_ids[out->cpu_count] = e->apic_id;
                out->cpu_is_bsp[out->cpu_count] = (e->flags & kCpuBootstrap) != 0;
                ++out->cpu_count;
            }
        } else if (*p == kEntryIoApic) {
            const struct mp_ioapic_entry* e = (const void*)p;
            if ((e->flags & kIoApicEnabled) && out->ioapic_count < kMpMaxIoApics) {
                out->ioapics[out->ioapic_count].id = e->id;
                out->ioapics[out->ioapic_count].addr = e->addr;
                ++out->ioapic_count;
            }
        }
        p += len;
    }
    return kMpOk;
}
