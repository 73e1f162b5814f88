#include "anchor/anchor_cli.h"

#include "anchor/stop_reason.h"
#include "jail/jail_options.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <charconv>
#include <initializer_list>

namespace vmm::anchor {

namespace {

struct Usage {
    std::string error;
};

bool one_of(const std::string& v, std::initializer_list<const char*> choices) {
    for (const char* c : choices)
        if (v == c) return true;
    return false;
}

unsigned parse_id(const std::string& option, const std::string& v) {
    unsigned out = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    if (v.empty() || ec != std::errc{} || end != v.data() + v.size())
        throw Usage{option + ": \"" + v + "\" is not a number (a uid or gid)"};
    return out;
}

}  // namespace

std::vector<std::string> without_ready_fd(const std::vector<std::string>& args) {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "--ready-fd") {
            ++i;  // and its value
            continue;
        }
        if (args[i].rfind("--ready-fd=", 0) == 0) continue;
        out.push_back(args[i]);
    }
    return out;
}

std::string anchor_usage(const std::string& program) {
    return "vmm-anchor: the per-domain KVM virtual machine process\n"
           "Usage: " + program + " --manifest FILE [OPTIONS]\n\n"
           "Options:\n"
           "  -h, --help            print this help and exit\n"
           "  --manifest FILE       domain manifest (JSON); required\n"
           "  --run-dir DIR         state directory root (<run-dir>/kvm/<name>/); default /run/hypervisor\n"
           "  --console stdio|pty   serial console: stdio or pty (linked as <state-dir>/cons); default stdio\n"
           "  --dump-acpi DIR       write the ACPI tables this domain would get to DIR/<SIG>.dat (for iasl -d) and exit\n"
           "  --seccomp on|log|off  syscall filter after setup: on (unlisted syscalls end the anchor with status 12),\n"
           "                        log (the kernel logs them), off; default on\n"
           "  --allow-dir DIR       a directory the manifest may take kernels, initrds, disks and sockets from\n"
           "                        (repeatable; default: anywhere)\n"
           "  --jail                run in a file-system jail holding only its domain's files (new mount/IPC/UTS\n"
           "                        namespaces, and network without taps; docs/SECURITY.md)\n"
           "  --jail-uid UID        with --jail: the uid to run as (the domain's files must be open to it)\n"
           "  --jail-gid GID        with --jail: the gid to run as (default: --jail-uid)\n"
           "  --jail-pid-ns         with --jail: also a pid namespace of its own, kept by a small process outside\n"
           "                        it that stays the pid the host knows (docs/SECURITY.md)\n"
           "  --log-level LEVEL     trace, debug, info, warn, error, critical, off; default warn\n"
           "  --ready-fd N          an inherited descriptor (a pipe) that gets one byte once the QMP socket listens\n"
           "                        (how vmmd learns the domain is up)\n";
}

AnchorCliResult parse_anchor_cli(const std::vector<std::string>& args) {
    AnchorCli cli;
    bool have_manifest = false;
    try {
        for (std::size_t i = 0; i < args.size(); ++i) {
            const std::string& arg = args[i];
            if (arg == "-h" || arg == "--help") return {std::nullopt, 0, ""};
            if (arg.rfind("--", 0) != 0) throw Usage{"unexpected argument \"" + arg + "\""};
            std::string name = arg;
            std::optional<std::string> inline_value;
            if (const auto eq = arg.find('='); eq != std::string::npos) {
                name = arg.substr(0, eq);
                inline_value = arg.substr(eq + 1);
            }
            if (name == "--jail" || name == "--jail-pid-ns") {
                if (inline_value) throw Usage{name + " takes no value"};
                (name == "--jail" ? cli.jail : cli.jail_pid_ns) = true;
                continue;
            }
            auto value = [&]() -> std::string {
                if (inline_value) return *inline_value;
                if (i + 1 >= args.size()) throw Usage{name + " needs a value"};
                return args[++i];
            };
            if (name == "--manifest") {
                cli.manifest_path = value();
                have_manifest = true;
            } else if (name == "--run-dir") {
                cli.options.run_dir = value();
            } else if (name == "--console") {
                const std::string v = value();
                if (!one_of(v, {"stdio", "pty"})) throw Usage{"--console: \"" + v + "\" is not one of stdio, pty"};
                cli.options.console = v == "pty" ? ConsoleMode::Pty : ConsoleMode::Stdio;
            } else if (name == "--dump-acpi") {
                cli.dump_acpi = value();
                struct stat st {};
                if (::stat(cli.dump_acpi.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
                    throw Usage{"--dump-acpi: \"" + cli.dump_acpi + "\" is not an existing directory"};
            } else if (name == "--seccomp") {
                const std::string v = value();
                if (!one_of(v, {"on", "log", "off"})) throw Usage{"--seccomp: \"" + v + "\" is not one of on, log, off"};
                cli.options.seccomp = v;
            } else if (name == "--allow-dir") {
                cli.allow_dirs.push_back(value());
            } else if (name == "--jail-uid") {
                cli.jail_uid = parse_id(name, value());
            } else if (name == "--jail-gid") {
                cli.jail_gid = parse_id(name, value());
            } else if (name == "--log-level") {
                cli.log_level = value();
            } else if (name == "--ready-fd") {
                const std::string v = value();
                int fd = -1;
                const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), fd);
                // 0-2 are stdio; an open descriptor, or the option is a mistake.
                if (v.empty() || ec != std::errc{} || end != v.data() + v.size() || fd < 3 ||
                    ::fcntl(fd, F_GETFD) < 0)
                    throw Usage{"--ready-fd: " + v + " is not an open descriptor above 2"};
                cli.ready_fd = fd;
            } else {
                throw Usage{"unknown option \"" + name + "\""};
            }
        }
        if (!have_manifest) throw Usage{"--manifest is required"};
        if (const std::string problem =
                jail::jail_option_problem(cli.jail, cli.jail_uid.has_value(), cli.jail_gid.has_value(), false, false,
                                          cli.jail_pid_ns);
            !problem.empty())
            throw Usage{problem};
    } catch (const Usage& u) {
        return {std::nullopt, kExitUsage, "vmm-anchor: " + u.error + " (--help lists the options)"};
    }
    return {std::move(cli), 0, ""};
}

}  // namespace vmm::anchor
