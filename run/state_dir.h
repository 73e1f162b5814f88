// StateDir: a running domain's directory <run-dir>/<hypervisor>/<name>/ (mode 0700), the one
// place that knows its layout:
//   pid   the anchor's pid, written atomically (temp file + rename)
//   cons  symlink to the guest serial console's pty
//   qmp   the QMP socket (later)
// The anchor holds an exclusive flock on the directory for its whole life, so a second anchor
// for the same name refuses to start; a directory whose lock is free is stale (its anchor
// died) and its known files are removed before reuse. On destruction the anchor removes the
// files it created, and the directory if it created it.
// Used on the anchor's main thread only.
#pragma once

#include "common/fd.h"

#include <string>
#include <vector>

namespace vmm::run {

class StateDir {
public:
    // Throws vmm::Error if the domain is already running (names the pid) or on I/O errors.
    StateDir(const std::string& run_dir, const std::string& hypervisor, const std::string& name);
    StateDir(const StateDir&) = delete;
    StateDir& operator=(const StateDir&) = delete;
    ~StateDir();

    const std::string& path() const noexcept { return path_; }
    std::string file(const std::string& leaf) const { return path_ + "/" + leaf; }

    void write_pid(int pid);
    void link_console(const std::string& pty_path);
    // Records that `leaf` (created by the caller, e.g. a socket) is ours to remove on exit.
    void adopt(const std::string& leaf);

    // The files an anchor may leave behind; cleaned from stale directories.
    static const std::vector<std::string>& known_files();

private:
    std::string path_;
    bool created_dir_ = false;
    Fd dir_fd_;  // holds the flock
    std::vector<std::string> created_;
};

// The pid recorded in <dir>/pid, or -1.
int read_pid_file(const std::string& dir);

}  // namespace vmm::run
