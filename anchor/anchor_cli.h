// vmm-anchor's command line.
//
// Parsed by hand rather than with CLI11 (which vmmd and vmctl use): building CLI11's option
// objects was a quarter of the instructions the anchor ran from exec to its first KVM call
// (callgrind, ~150k of ~600k), and every domain start pays for it (issue #8). The grammar is
// the usual one: `--name VALUE` or `--name=VALUE`, `--jail` alone, `--allow-dir` repeatable,
// `-h`/`--help`. Anything else is a usage error that names the argument.
#pragma once

#include "anchor/machine.h"

#include <optional>
#include <string>
#include <vector>

namespace vmm::anchor {

struct AnchorCli {
    std::string manifest_path;  // --manifest, required
    MachineOptions options;     // --run-dir, --console, --seccomp
    std::string dump_acpi;      // --dump-acpi DIR (an existing directory)
    std::vector<std::string> allow_dirs;
    bool jail = false;
    bool jail_pid_ns = false;  // --jail-pid-ns: a pid namespace of its own (jail/pid_namespace.h)
    std::optional<unsigned> jail_uid, jail_gid;
    std::string log_level = "warn";
    // --ready-fd N: an inherited descriptor (a pipe's write end) that gets one byte once the QMP
    // socket listens and is closed then; vmmd waits on it instead of polling the state dir.
    std::optional<int> ready_fd;
};

// `args` without the --ready-fd option (for the restart's execve: its descriptor is gone then).
std::vector<std::string> without_ready_fd(const std::vector<std::string>& args);

struct AnchorCliResult {
    std::optional<AnchorCli> cli;  // empty: exit with `exit_status` after printing `message`
    int exit_status = 0;           // 0 for --help, kExitUsage for errors
    std::string message;           // the help text (stdout) or "vmm-anchor: <error>" (stderr)
};

AnchorCliResult parse_anchor_cli(const std::vector<std::string>& args);  // args without argv[0]
std::string anchor_usage(const std::string& program);

}  // namespace vmm::anchor
