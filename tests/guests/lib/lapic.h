// Local APIC access for the test guests (Intel SDM Vol. 3 ch. 10; xAPIC MMIO mode, paging off).
// lapic_* functions act on the calling CPU's own LAPIC; any CPU may call them.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "lib/io.h"

enum {
    kLapicDefaultBase = 0xfee00000u,
    kLapicId = 0x020,
    kLapicSvr = 0x0f0,
    kLapicIcrLow = 0x300,
    kLapicIcrHigh = 0x310,
    kLapicLvtTimer = 0x320,
    kLapicTimerInitial = 0x380,
    kLapicTimerCurrent = 0x390,
    kLapicTimerDivide = 0x3e0,

    kLapicSvrEnable = 1 << 8,
    kLapicLvtMasked = 1 << 16,
    kLapicTimerDivideBy1 = 0xb,

    kIcrDeliveryPending = 1 << 12,
    kIcrLevelAssert = 1 << 14,
    kIcrTriggerLevel = 1 << 15,
    kIcrInit = 5 << 8,
    kIcrStartup = 6 << 8
};

static inline uint32_t lapic_read(uint32_t base, uint32_t reg) { return mmio_read32(base + reg); }
static inline void lapic_write(uint32_t base, uint32_t reg, uint32_t v) { mmio_write32(base + reg, v); }
static inline uint8_t lapic_id(uint32_t base) { return (uint8_t)(lapic_read(base, kLapicId) >> 24); }

// Sends an IPI and waits (bounded) until the LAPIC has accepted it. Returns false if the
// delivery status never cleared.
static inline bool lapic_send_ipi(uint32_t base, uint8_t dest_apic_id, uint32_t icr_low) {
    lapic_write(base, kLapicIcrHigh, (uint32_t)dest_apic_id << 24);
    lapic_write(base, kLapicIcrLow, icr_low);  // the low write sends (SDM §10.6.1)
    for (uint32_t i = 0; i < 10000; ++i)
        if (!(lapic_read(base, kLapicIcrLow) & kIcrDeliveryPending)) return true;
    return false;
}

// A stopwatch on the LAPIC timer: masked one-shot, divide by 1, counting down from 2^32-1.
// KVM and QEMU both tick it at 1 GHz (1 tick = 1 ns) in guest time; real hardware varies, which
// only stretches or shrinks the waits built on it.
static inline void lapic_stopwatch_start(uint32_t base) {
    lapic_write(base, kLapicLvtTimer, kLapicLvtMasked);
    lapic_write(base, kLapicTimerDivide, kLapicTimerDivideBy1);
    lapic_write(base, kLapicTimerInitial, 0xffffffffu);
}
static inline uint32_t lapic_stopwatch_ticks(uint32_t base) {
    return 0xffffffffu - lapic_read(base, kLapicTimerCurrent);
}
