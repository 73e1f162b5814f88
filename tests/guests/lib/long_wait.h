// Waits longer than one LAPIC stopwatch can time (lib/deadline.h: ~4.29 s at 1 GHz): a chain of
// kLongWaitRoundNs rounds, each a lib/deadline.h wait with its own poll budget, so the total is
// bounded both by time and, should the timer not tick, by rounds * polls_per_round polls.
// BSP only (the calling CPU's LAPIC timer), like lib/deadline.h.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "lib/deadline.h"

#define kLongWaitRoundNs 2000000000u

struct long_wait {
    struct deadline round;
    uint32_t rounds_left;
    uint32_t polls_per_round;
};

// Up to `seconds` (rounded up to whole rounds) or seconds / 2 * polls_per_round polls.
static inline void long_wait_start(struct long_wait* w, uint32_t seconds, uint32_t polls_per_round) {
    w->rounds_left = (seconds + 1) / 2;
    if (!w->rounds_left) w->rounds_left = 1;
    w->polls_per_round = polls_per_round;
    deadline_start(&w->round, kLongWaitRoundNs, polls_per_round);
}

// Counts one poll; true once every round is spent.
static inline bool long_wait_expired(struct long_wait* w) {
    if (!deadline_expired(&w->round)) return false;
    if (--w->rounds_left == 0) return true;
    deadline_start(&w->round, kLongWaitRoundNs, w->polls_per_round);
    return false;
}
