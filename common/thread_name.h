#pragma once

#include <pthread.h>

#include <string>

namespace vmm {

// Names the calling thread (shown by top -H, /proc/PID/task/TID/comm); at most 15 chars.
inline void set_thread_name(const std::string& name) {
    ::pthread_setname_np(::pthread_self(), name.substr(0, 15).c_str());
}

}  // namespace vmm
