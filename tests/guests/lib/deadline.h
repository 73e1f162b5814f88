// A bounded wait for the test guests: a poll budget and a time limit on the LAPIC stopwatch
// (lib/lapic.h), whichever ends first. The clock is an MMIO read (a VM exit), so it is looked at
// only every kDeadlineClockEvery polls, and never before kDeadlineMinPolls: a LAPIC whose timer
// reads garbage cannot cut a wait short, and one that never ticks cannot make it endless.
// Uses the calling CPU's LAPIC timer (one-shot, masked); BSP only in these guests.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "lib/lapic.h"

enum { kDeadlineClockEvery = 256, kDeadlineMinPolls = 4096 };

struct deadline {
    uint32_t polls;
    uint32_t max_polls;
    uint32_t timeout_ns;  // at most ~4.29 s: the stopwatch is 32-bit at 1 GHz
};

static inline void deadline_start(struct deadline* d, uint32_t timeout_ns, uint32_t max_polls) {
    d->polls = 0;
    d->max_polls = max_polls;
    d->timeout_ns = timeout_ns;
    // Software-enable the LAPIC (spurious vector 0xff) as smp.c does: some LAPIC models only
    // run the timer when enabled. Interrupts stay off and the timer LVT is masked.
    lapic_write(kLapicDefaultBase, kLapicSvr, kLapicSvrEnable | 0xff);
    lapic_stopwatch_start(kLapicDefaultBase);
}

// Counts one poll; true once the budget or the time is spent.
static inline bool deadline_expired(struct deadline* d) {
    ++d->polls;
    if (d->polls >= d->max_polls) return true;
    if (d->polls < kDeadlineMinPolls || d->polls % kDeadlineClockEvery) return false;
    return lapic_stopwatch_ticks(kLapicDefaultBase) >= d->timeout_ns;
}
