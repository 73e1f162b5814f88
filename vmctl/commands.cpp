#include "vmctl/commands.h"

#include "common/error.h"
#include "vmctl/api_client.h"
#include "vmctl/console.h"
#include "vmctl/dump.h"
#include "vmctl/format.h"

#include <CLI/CLI.hpp>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <ostream>

#if __has_include("vfio/pci_cli.h")
#include "vfio/pci_cli.h"
#define VMCTL_HAS_PCI 1
#endif

namespace vmm::vmctl {

using nlohmann::json;

namespace {

constexpr int kExitFailed = 1, kExitUsage = 64, kExitUnavailable = 69;

std::string default_socket() {
    const char* env = std::getenv("VMMD_SOCKET");
    return env && *env ? env : "/run/hypervisor/vmmd.sock";
}

// Prints a failed reply: vmmd's message names the field or domain at fault.
int failed(const json& reply, std::ostream& err) {
    err << "vmctl: " << reply.value("error", std::string("request failed")) << "\n";
    return kExitFailed;
}

}  // namespace

int run_vmctl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
    CLI::App app{"vmctl: control the domains of vmmd"};
    app.require_subcommand(1);
    std::string socket = default_socket();
    app.add_option("--socket", socket, "vmmd's API socket ($VMMD_SOCKET, default /run/hypervisor/vmmd.sock)");

    std::string manifest, name, restart;
    bool force = false, as_json = false;
    double timeout = -1;
    auto* start = app.add_subcommand("start", "start a domain from its manifest; returns once it runs");
    start->add_option("manifest", manifest, "MANIFEST.json")->required();
    start->add_option("--restart", restart, "restart policy: never, on-crash, always")
        ->check(CLI::IsMember({"never", "on-crash", "always"}));
    auto* stop = app.add_subcommand("stop", "stop a domain: power-down, then quit, then kill");
    stop->add_option("name", name, "NAME")->required();
    stop->add_flag("--force", force, "do not wait for the guest to power down");
    stop->add_option("--timeout", timeout, "seconds the guest gets to power down");
    auto* list = app.add_subcommand("list", "list the domains");
    list->add_flag("--json", as_json, "print vmmd's JSON");
    auto* info = app.add_subcommand("info", "show one domain");
    info->add_option("name", name, "NAME")->required();
    info->add_flag("--json", as_json, "print vmmd's JSON");
    auto* console = app.add_subcommand("console", "attach to a domain's console (Ctrl-] detaches)");
    console->add_option("name", name, "NAME")->required();
    auto* pause = app.add_subcommand("pause", "pause a domain's vCPUs");
    pause->add_option("name", name, "NAME")->required();
    auto* resume = app.add_subcommand("resume", "resume a paused domain");
    resume->add_option("name", name, "NAME")->required();
    auto* del = app.add_subcommand("delete", "forget a stopped or crashed domain");
    del->add_option("name", name, "NAME")->required();
    DumpRequest dump_request;
    long dump_timeout = 600;
    auto* dump = app.add_subcommand("dump", "write a kvm domain's guest memory to FILE as an ELF core (QMP "
                                            "dump-guest-memory; vmctl opens FILE, the anchor writes it)");
    dump->add_option("name", name, "NAME")->required();
    dump->add_option("file", dump_request.file, "FILE (made with mode 0600; a FIFO is written to)")->required();
    dump->add_flag("--force", dump_request.overwrite, "overwrite an existing FILE");
    dump->add_option("--timeout", dump_timeout, "seconds the dump may take")->capture_default_str()->check(
        CLI::PositiveNumber);
    auto* host = app.add_subcommand("host", "the host's hypervisors, CPUs and memory");
    host->add_flag("--json", as_json, "print vmmd's JSON");
    std::vector<std::string> pci_args;
    auto* pci = app.add_subcommand("pci", "host PCI devices (list, bind, ...)");
    pci->add_option("args", pci_args, "arguments of the pci command");
    pci->allow_extras();
    pci->prefix_command();

    std::vector<std::string> reversed(args.rbegin(), args.rend());
    try {
        app.parse(reversed);
    } catch (const CLI::CallForHelp&) {
        out << app.help();
        return 0;
    } catch (const CLI::ParseError& e) {
        err << "vmctl: " << e.what() << "\n";
        for (auto* sub : app.get_subcommands()) err << sub->help();
        if (app.get_subcommands().empty()) err << app.help();
        return kExitUsage;
    }

    if (pci->parsed()) {
        std::vector<std::string> rest = pci_args;
        for (const auto& r : pci->remaining()) rest.push_back(r);
#ifdef VMCTL_HAS_PCI
        return vmm::vfio::run_pci_command(rest, out, err);
#else
        err << "vmctl: pci commands are not built in this vmctl (vfio/pci_cli.h is missing)\n";
        return kExitUsage;
#endif
    }

    try {
        ApiClient client(socket);
        if (start->parsed()) {
            std::error_code ec;
            const auto abs = std::filesystem::absolute(manifest, ec);
            json req = {{"cmd", "start"}, {"manifest_path", ec ? manifest : abs.lexically_normal().string()}};
            if (!restart.empty()) req["restart"] = restart;
            const json r = client.call(req);
            if (!r.value("ok", false)) return failed(r, err);
            const json& d = r["domain"];
            out << d.value("name", "") << ": " << d.value("state", "") << " on " << d.value("hypervisor", "")
                << (d["pid"].is_number() ? ", pid " + d["pid"].dump() : std::string()) << "\n";
            out << d.value("state_dir", "") << "\n";
            return 0;
        }
        if (stop->parsed()) {
            json req = {{"cmd", "stop"}, {"name", name}, {"force", force}};
            if (timeout >= 0) req["timeout_s"] = timeout;
            const json r = client.call(req);
            if (!r.value("ok", false)) return failed(r, err);
            const json& d = r["domain"];
            out << name << ": " << d.value("state", "");
            if (d["exit"].is_object()) out << " (" << d["exit"].value("detail", "") << ")";
            out << "\n";
            return 0;
        }
        if (list->parsed()) {
            const json r = client.call({{"cmd", "list"}});
            if (!r.value("ok", false)) return failed(r, err);
            out << (as_json ? r["domains"].dump(2) + "\n" : format_domain_table(r["domains"]));
            return 0;
        }
        if (info->parsed()) {
            const json r = client.call({{"cmd", "info"}, {"name", name}});
            if (!r.value("ok", false)) return failed(r, err);
            out << (as_json ? r["domain"].dump(2) + "\n" : format_domain_info(r["domain"]));
            return 0;
        }
        if (pause->parsed() || resume->parsed()) {
            const json r = client.call({{"cmd", pause->parsed() ? "pause" : "resume"}, {"name", name}});
            if (!r.value("ok", false)) return failed(r, err);
            out << name << ": " << r["domain"].value("state", "") << "\n";
            return 0;
        }
        if (del->parsed()) {
            const json r = client.call({{"cmd", "delete"}, {"name", name}});
            if (!r.value("ok", false)) return failed(r, err);
            return 0;
        }
        if (host->parsed()) {
            const json r = client.call({{"cmd", "host"}});
            if (!r.value("ok", false)) return failed(r, err);
            if (as_json) {
                out << r.dump(2) << "\n";
            } else {
                const json& h = r["host"];
                out << "cpus: " << h.value("cpus", 0) << "\nmemory: " << h.value("total_memory_mb", 0) << "M ("
                    << h.value("free_memory_mb", 0) << "M available)\nkvm: " << (h.value("kvm", false) ? "yes" : "no")
                    << "\nxen: " << (h.value("xen", false) ? "yes" : "no") << "\nhypervisors:";
                for (const auto& hv : r["hypervisors"]) out << " " << hv.value("name", "");
                out << "\n";
            }
            return 0;
        }
        if (dump->parsed()) {
            const json r = client.call({{"cmd", "info"}, {"name", name}});
            if (!r.value("ok", false)) return failed(r, err);
            dump_request.timeout = std::chrono::seconds(dump_timeout);
            return dump_domain(r["domain"], dump_request, out, err);
        }
        if (console->parsed()) {
            const json r = client.call({{"cmd", "info"}, {"name", name}});
            if (!r.value("ok", false)) return failed(r, err);
            const std::string pty = r["domain"].value("console", "");
            if (pty.empty()) {
                err << "vmctl: domain '" << name << "' has no console (state " << r["domain"].value("state", "")
                    << ", hypervisor " << r["domain"].value("hypervisor", "") << ")\n";
                return kExitFailed;
            }
            err << "Connected to " << name << "'s console (" << pty << "); Ctrl-] detaches.\r\n";
            const std::string why = attach_console(pty, STDIN_FILENO, STDOUT_FILENO);
            err << "\r\nvmctl: " << why << "\n";
            return 0;
        }
    } catch (const vmm::Error& e) {
        err << "vmctl: " << e.what() << "\n";
        return std::string(e.what()).find("cannot reach vmmd") != std::string::npos ? kExitUnavailable : kExitFailed;
    } catch (const std::exception& e) {
        err << "vmctl: " << e.what() << "\n";
        return kExitFailed;
    }
    return kExitUsage;
}

}  // namespace vmm::vmctl
