// Reading an anchor's state directory <run-dir>/kvm/<name>/ from the outside, by the rules of
// run/state_dir.h: a live anchor holds an exclusive flock on the directory for its whole life
// and has written its pid (the pid file is written after the lock is taken); a directory whose
// lock is free is stale, and only the files an anchor creates (StateDir::known_files()) are
// removed from it. run/ has no such reader, so it lives here for vmmd's adoption and cleanup.
// Called on vmmd's io_context thread; no state.
#pragma once

#include <string>

namespace vmm::hv::kvm {

struct StateDirProbe {
    bool exists = false;  // the directory exists
    bool live = false;    // its flock is held by someone (a running anchor)
    int pid = -1;         // the pid file's content, -1 if none
};

// Tests the lock with a non-blocking flock that is released at once when it succeeds.
StateDirProbe probe_state_dir(const std::string& path);

// If the directory is stale (lock free), removes the anchor's known files from it and the
// directory itself when nothing foreign is left. Returns false (touching nothing) when an
// anchor holds it. The lock is held while cleaning, so a starting anchor waits out nothing: it
// either sees a clean directory or a missing one.
bool clean_stale_state_dir(const std::string& path);

}  // namespace vmm::hv::kvm
