// The stack size of the threads a process makes from now on (std::thread and pthread_create
// without attributes), instead of glibc's default of RLIMIT_STACK (8 MiB here).
#pragma once

#include "common/error.h"

#include <pthread.h>

#include <cstddef>

namespace vmm {

// The anchor's threads: ample for its deepest path (a vCPU thread in a device's exit handler,
// a few KiB) and the sanitizer build, and too small for a transparent huge page (2 MiB).
inline constexpr std::size_t kThreadStackBytes = std::size_t{1} << 20;

// Throws std::system_error when glibc refuses the size.
inline void set_default_thread_stack(std::size_t bytes) {
    pthread_attr_t attr;
    if (int err = ::pthread_attr_init(&attr); err != 0) throw_errno("pthread_attr_init", err);
    int err = ::pthread_attr_setstacksize(&attr, bytes);
    if (err == 0) err = ::pthread_setattr_default_np(&attr);
    ::pthread_attr_destroy(&attr);
    if (err != 0) throw_errno("setting the default thread stack size", err);
}

}  // namespace vmm
