// smp.bin / smp.elf: brings up every processor the MP table lists (Intel MP spec 1.4 §B.4) and
// reports which ones came up.
//
// Output when all N come up, then debug-exit value N:
//   smp: N cpus up
//   cpu <apic id> online        (one line per CPU, in APIC ID order, BSP included)
// When only K of N come up within kApWaitNs: "smp: only K of N cpus", exit 0x7f.
// Without a usable MP table: "smp: no MP table (<status>)", exit 0x7a.
#include "lib/debug_exit.h"
#include "lib/guest.h"
#include "lib/lapic.h"
#include "lib/mptable.h"
#include "lib/serial.h"
#include "lib/string.h"

enum {
    kTrampolineBase = 0x7000,  // below 1 MiB and page aligned: the SIPI vector is base >> 12
    kTrampolineVector = kTrampolineBase >> 12,
    kApStackBytes = 2048,
    kExitNotAllUp = 0x7f,
    kExitNoMpTable = 0x7a,
};

// The waits are in LAPIC-timer nanoseconds (lapic_stopwatch_*), each also capped in polls so a
// timer that does not tick cannot hang the guest. §B.4 asks for 10 ms after INIT and 200 us
// after each STARTUP; KVM would not need them, QEMU TCG drops a STARTUP that arrives before
// the AP has processed its INIT.
static const uint32_t kInitDelayNs = 10u * 1000 * 1000;
static const uint32_t kSipiDelayNs = 200u * 1000;
static const uint32_t kApWaitNs = 1000u * 1000 * 1000;
static const uint32_t kMaxPolls = 100000;
static const uint32_t kMaxApPolls = 300000;

extern const char smp_trampoline_start[];
extern const char smp_trampoline_end[];

// Read by smp_trampoline.asm: each AP claims kApStackBytes of the pool with lock xadd.
uint8_t ap_stack_pool[(kMpMaxCpus - 1) * kApStackBytes] __attribute__((aligned(16), section(".stack.ap")));
const uint32_t ap_stack_bytes = kApStackBytes;
const uint32_t ap_stack_pool_bytes = sizeof(ap_stack_pool);
uint32_t ap_stack_used;

static uint32_t lapic_base;
static uint32_t ap_slots_claimed;
static uint8_t ap_ids[kMpMaxCpus];
static uint32_t aps_online;  // incremented after the AP's id is stored (release)

void ap_main(void);
void ap_main(void) {
    uint8_t id = lapic_id(__atomic_load_n(&lapic_base, __ATOMIC_RELAXED));
    uint32_t slot = __atomic_fetch_add(&ap_slots_claimed, 1, __ATOMIC_RELAXED);
    if (slot < kMpMaxCpus) ap_ids[slot] = id;
    __atomic_fetch_add(&aps_online, 1, __ATOMIC_RELEASE);
    cpu_park();
}

static void delay_ns(uint32_t ns) {
    lapic_stopwatch_start(lapic_base);
    for (uint32_t i = 0; i < kMaxPolls && lapic_stopwatch_ticks(lapic_base) < ns; ++i) cpu_relax();
}

// The counter is plain memory, the timer an MMIO read (a VM exit): look at the clock only every
// 64th poll.
static uint32_t wait_for_aps(uint32_t expected) {
    lapic_stopwatch_start(lapic_base);
    uint32_t online = 0;
    for (uint32_t i = 0; i < kMaxApPolls; ++i) {
        online = __atomic_load_n(&aps_online, __ATOMIC_ACQUIRE);
        if (online >= expected) break;
        if (i % 64 == 0 && lapic_stopwatch_ticks(lapic_base) >= kApWaitNs) break;
        cpu_relax();
    }
    return online;
}

static void sort_ids(uint8_t* ids, uint32_t n) {
    for (uint32_t i = 1; i < n; ++i)
        for (uint32_t j = i; j > 0 && ids[j - 1] > ids[j]; --j) {
            uint8_t t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
}

void guest_main(uint32_t magic, const struct multiboot_info* mbi) {
    (void)magic;
    (void)mbi;
    static struct mp_config mp;
    enum mp_status status = mptable_read(&mp);
    if (status != kMpOk || mp.cpu_count == 0) {
        serial_puts("smp: no MP table (");
        serial_put_dec(status);
        serial_puts(")\n");
        debug_exit(kExitNoMpTable);
    }
    __atomic_store_n(&lapic_base, mp.lapic_addr ? mp.lapic_addr : kLapicDefaultBase, __ATOMIC_RELAXED);
    lapic_write(lapic_base, kLapicSvr, kLapicSvrEnable | 0xff);  // software-enable, spurious 0xff
    uint8_t bsp_id = lapic_id(lapic_base);

    memcpy((void*)kTrampolineBase, smp_trampoline_start, (size_t)(smp_trampoline_end - smp_trampoline_start));

    // INIT to every AP, one wait, then two STARTUPs to every AP (§B.4.1): the APs start in
    // parallel, so the waits do not grow with N.
    uint32_t n = mp.cpu_count;
    uint32_t aps = 0;
    for (uint32_t i = 0; i < n; ++i) {
        if (mp.cpu_apic_ids[i] == bsp_id) continue;
        lapic_send_ipi(lapic_base, mp.cpu_apic_ids[i], kIcrInit | kIcrLevelAssert | kIcrTriggerLevel);
        ++aps;
    }
    if (aps) {
        delay_ns(kInitDelayNs);
        for (int round = 0; round < 2; ++round) {
            for (uint32_t i = 0; i < n; ++i)
                if (mp.cpu_apic_ids[i] != bsp_id)
                    lapic_send_ipi(lapic_base, mp.cpu_apic_ids[i], kIcrStartup | kTrampolineVector);
            delay_ns(kSipiDelayNs);
        }
    }

    uint32_t up = 1 + wait_for_aps(aps);
    if (up != 1 + aps || up != n) {
        serial_puts("smp: only ");
        serial_put_dec(up);
        serial_puts(" of ");
        serial_put_dec(n);
        serial_puts(" cpus\n");
        debug_exit(kExitNotAllUp);
    }

    uint8_t ids[kMpMaxCpus];
    ids[0] = bsp_id;
    for (uint32_t i = 0; i < aps; ++i) ids[1 + i] = ap_ids[i];
    sort_ids(ids, n);
    serial_puts("smp: ");
    serial_put_dec(n);
    serial_puts(" cpus up\n");
    for (uint32_t i = 0; i < n; ++i) {
        serial_puts("cpu ");
        serial_put_dec(ids[i]);
        serial_puts(" online\n");
    }
    debug_exit(n);
}
