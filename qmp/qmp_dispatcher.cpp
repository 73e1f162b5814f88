// QmpDispatcher (see qmp_dispatcher.h). Server io_context thread only.
#include "qmp/qmp_dispatcher.h"

#include "common/log.h"
#include "qmp/command_error.h"
#include "qmp/qmp_server.h"

#include <fcntl.h>

#include <cerrno>
#include <cstring>

namespace vmm::qmp {

namespace {

Json error_reply(const Json* id, const std::string& error_class, const std::string& desc) {
    // Member order as QEMU sends it: id first, then error.
    Json reply = Json::object();
    if (id) reply["id"] = *id;
    // Never an empty desc: go-qemu takes an error without one for success.
    reply["error"] = {{"class", error_class}, {"desc", desc.empty() ? error_class : desc}};
    return reply;
}

const char* type_name(int type) {
    static const char* const names[] = {"string", "integer", "boolean", "array"};
    return names[type];
}

std::string trim(const std::string& s) {
    const auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return {};
    const auto e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

}  // namespace

QmpDispatcher::QmpDispatcher(QmpDomain& domain, const QmpServerOptions& options)
    : domain_(domain), options_(options) {
    const auto done = [](auto fn) {
        return [fn](const Json&, Session&) {
            fn();
            return Json::object();
        };
    };
    add("qmp_capabilities", {{"enable", ParamType::array, false}},
        [this](const Json& args, Session& s) { return qmp_capabilities(args, s); });
    add("query-commands", {}, [this](const Json&, Session&) {
        Json list = Json::array();
        for (const auto& name : order_) list.push_back({{"name", name}});
        return list;
    });
    add("query-version", {}, [this](const Json&, Session&) { return version(); });
    add("query-name", {}, [this](const Json&, Session&) {
        Json r = Json::object();
        if (auto n = domain_.name(); !n.empty()) r["name"] = n;
        return r;
    });
    add("query-status", {}, [this](const Json&, Session&) {
        // Exactly these three members: EVE's pillar (go-qemu) decodes them strictly.
        const std::string state = domain_.run_state();
        return Json{{"status", state}, {"singlestep", false}, {"running", state == "running"}};
    });
    add("stop", {}, done([this] { domain_.stop(); }));
    add("cont", {}, done([this] { domain_.cont(); }));
    add("system_reset", {}, done([this] { domain_.system_reset(); }));
    add("system_powerdown", {}, done([this] { domain_.system_powerdown(); }));
    add("quit", {}, done([this] { domain_.quit(); }));
    add("query-cpus-fast", {}, [this](const Json&, Session&) { return domain_.query_cpus_fast(); });
    add("query-block", {}, [this](const Json&, Session&) { return domain_.query_block(); });
    add("query-chardev", {}, [this](const Json&, Session&) { return domain_.query_chardev(); });
    add("dump-guest-memory",
        {{"paging", ParamType::boolean, true},
         {"protocol", ParamType::string, true},
         {"detach", ParamType::boolean, false},
         {"begin", ParamType::integer, false},
         {"length", ParamType::integer, false},
         {"format", ParamType::string, false}},
        [this](const Json& args, Session& s) { return dump_guest_memory(args, s); });
    add("query-dump", {}, [this](const Json&, Session&) { return domain_.query_dump(); });
    add("getfd", {{"fdname", ParamType::string, true}},
        [this](const Json& args, Session& s) { return getfd(args["fdname"].get<std::string>(), s); });
    add("closefd", {{"fdname", ParamType::string, true}}, [](const Json& args, Session& s) {
        const std::string name = args["fdname"].get<std::string>();
        if (s.named.erase(name) == 0) throw CommandError(kGenericError, "File descriptor named '" + name + "' not found");
        return Json::object();
    });
    add("human-monitor-command",
        {{"command-line", ParamType::string, true}, {"cpu-index", ParamType::integer, false}},
        [this](const Json& args, Session&) {
            return human_monitor_command(args["command-line"].get<std::string>());
        });
}

// QEMU's getfd (qapi/misc.json): the first descriptor of the latest message that carried any
// gets the name (the others close), replacing a descriptor of that name.
Json QmpDispatcher::getfd(const std::string& name, Session& s) const {
    if (s.passed.empty()) throw CommandError(kGenericError, "No file descriptor supplied via SCM_RIGHTS");
    Fd fd = std::move(s.passed.front());
    s.passed.clear();
    if (!name.empty() && name[0] >= '0' && name[0] <= '9')
        throw CommandError(kGenericError, "Parameter 'fdname' expects a name not starting with a digit");
    if (!s.named.count(name) && s.named.size() >= kMaxNamedFds)
        throw CommandError(kGenericError, "this connection holds " + std::to_string(kMaxNamedFds) +
                                              " named file descriptors already; closefd one first");
    s.named[name] = std::move(fd);
    return Json::object();
}

// "fd:NAME" is looked up here, where the connection's descriptors are; the domain gets a
// duplicate, and the name is used up only when the domain took the dump (QEMU uses it up even
// when the dump is then refused; here a refused dump leaves it for another try).
Json QmpDispatcher::dump_guest_memory(const Json& args, Session& s) {
    const std::string protocol = args["protocol"].get<std::string>();
    if (!protocol.starts_with("fd:")) {
        domain_.dump_guest_memory(args, Fd());
        return Json::object();
    }
    const std::string name = protocol.substr(3);
    const auto it = s.named.find(name);
    if (it == s.named.end())
        throw CommandError(kGenericError, "File descriptor named '" + name + "' has not been found");
    const int dup = ::fcntl(it->second.get(), F_DUPFD_CLOEXEC, 0);
    if (dup < 0) throw CommandError(kGenericError, std::string("duplicating fd '") + name + "': " + std::strerror(errno));
    domain_.dump_guest_memory(args, Fd(dup));
    s.named.erase(name);
    return Json::object();
}

void QmpDispatcher::add(const std::string& name, std::vector<Param> params,
                        std::function<Json(const Json&, Session&)> run) {
    commands_[name] = Command{std::move(params), std::move(run)};
    order_.push_back(name);
}

std::vector<std::string> QmpDispatcher::command_names() const { return order_; }

Json QmpDispatcher::version() const {
    return Json{{"qemu",
                 {{"micro", options_.qemu_micro},
                  {"minor", options_.qemu_minor},
                  {"major", options_.qemu_major}}},
                {"package", options_.package}};
}

Json QmpDispatcher::greeting() const {
    // No capabilities offered: "oob" needs out-of-band execution, which we do not have.
    return Json{{"QMP", {{"version", version()}, {"capabilities", Json::array()}}}};
}

Json QmpDispatcher::handle(const JsonStream::Item& input, Session& session) {
    if (!input.ok()) return error_reply(nullptr, kGenericError, input.error);
    const Json& request = *input.value;
    if (!request.is_object()) {
        return error_reply(nullptr, kGenericError, "QMP input must be a JSON object");
    }
    const auto id_it = request.find("id");
    const Json* id = id_it != request.end() ? &*id_it : nullptr;

    // qmp-spec "Issuing Commands": execute, arguments and id, nothing else.
    const Json* execute = nullptr;
    for (const auto& [key, value] : request.items()) {
        if (key == "execute") {
            if (!value.is_string()) {
                return error_reply(id, kGenericError, "QMP input member 'execute' must be a string");
            }
            execute = &value;
        } else if (key == "arguments") {
            if (!value.is_object()) {
                return error_reply(id, kGenericError,
                                   "QMP input member 'arguments' must be an object");
            }
        } else if (key != "id") {
            return error_reply(id, kGenericError, "QMP input member '" + key + "' is unexpected");
        }
    }
    if (!execute) return error_reply(id, kGenericError, "QMP input lacks member 'execute'");

    const std::string& name = execute->get_ref<const std::string&>();
    const auto cmd = commands_.find(name);
    if (!session.negotiated && name != "qmp_capabilities") {
        return error_reply(id, kCommandNotFound,
                           "Expecting capabilities negotiation with 'qmp_capabilities'");
    }
    if (cmd == commands_.end()) {
        return error_reply(id, kCommandNotFound, "The command " + name + " has not been found");
    }

    const auto args_it = request.find("arguments");
    const Json args = args_it != request.end() ? *args_it : Json::object();
    for (const Param& p : cmd->second.params) {
        const auto a = args.find(p.name);
        if (a == args.end()) {
            if (p.required) {
                return error_reply(id, kGenericError, "Parameter '" + p.name + "' is missing");
            }
            continue;
        }
        const bool ok = (p.type == ParamType::string && a->is_string()) ||
                        (p.type == ParamType::integer && a->is_number_integer()) ||
                        (p.type == ParamType::boolean && a->is_boolean()) ||
                        (p.type == ParamType::array && a->is_array());
        if (!ok) {
            return error_reply(id, kGenericError,
                               "Invalid parameter type for '" + p.name +
                                   "', expected: " + type_name(static_cast<int>(p.type)));
        }
    }
    for (const auto& [key, value] : args.items()) {
        bool known = false;
        for (const Param& p : cmd->second.params) known = known || p.name == key;
        if (!known) return error_reply(id, kGenericError, "Parameter '" + key + "' is unexpected");
    }

    Json result;
    try {
        result = cmd->second.run(args, session);
    } catch (const CommandError& e) {
        return error_reply(id, e.error_class(), e.desc());
    } catch (const std::exception& e) {
        logger("qmp")->warn("{} failed: {}", name, e.what());
        return error_reply(id, kGenericError, e.what());
    }
    Json reply = {{"return", std::move(result)}};
    if (id) reply["id"] = *id;
    return reply;
}

Json QmpDispatcher::qmp_capabilities(const Json& args, Session& session) const {
    // Argument errors first (QEMU's marshaller runs before the command).
    const auto enable = args.find("enable");
    std::string unavailable;
    if (enable != args.end()) {
        for (std::size_t i = 0; i < enable->size(); ++i) {
            const Json& cap = (*enable)[i];
            const std::string where = "enable[" + std::to_string(i) + "]";
            if (!cap.is_string()) {
                throw CommandError(kGenericError,
                                   "Invalid parameter type for '" + where + "', expected: string");
            }
            if (cap != "oob") {
                throw CommandError(kGenericError, "Parameter '" + where +
                                                      "' does not accept value '" +
                                                      cap.get<std::string>() + "'");
            }
            unavailable = "oob";
        }
    }
    if (session.negotiated) {
        throw CommandError(kCommandNotFound,
                           "Capabilities negotiation is already complete, command ignored");
    }
    if (!unavailable.empty()) {
        throw CommandError(kGenericError, "Capability " + unavailable + " not available");
    }
    session.negotiated = true;
    return Json::object();
}

Json QmpDispatcher::human_monitor_command(const std::string& line) const {
    // HMP output as QEMU prints it ("\r\n" line ends from the monitor).
    const std::string cmd = trim(line);
    if (cmd.empty()) return "";
    if (cmd == "info status") {
        const std::string state = domain_.run_state();
        std::string out = "VM status: ";
        if (state == "running") {
            out += "running";
        } else {
            out += "paused";
            if (state != "paused") out += " (" + state + ")";
        }
        return out + "\r\n";
    }
    if (cmd == "info name") {
        const std::string n = domain_.name();
        return n.empty() ? std::string() : n + "\r\n";
    }
    return "unknown command: '" + cmd + "'\r\n";
}

}  // namespace vmm::qmp
