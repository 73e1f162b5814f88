// QmpDispatcher: one QMP request in, one reply out (docs/interop/qmp-spec, "Commands"), with
// QEMU 7.2's checks, order and messages: the input must be an object whose members are only
// "execute" (a string), "arguments" (an object) and "id" (any value, echoed unchanged); before
// capabilities negotiation every command but qmp_capabilities is CommandNotFound; arguments
// are checked against the command's parameters (missing, wrong type, unexpected).
// No I/O: QmpServer owns the connections. Called on the server's io_context thread.
#pragma once

#include "common/fd.h"
#include "qmp/json_stream.h"
#include "qmp/qmp_domain.h"

#include <functional>
#include <map>
#include <string>
#include <vector>

namespace vmm::qmp {

struct QmpServerOptions;

class QmpDispatcher {
public:
    // Per-connection protocol state.
    struct Session {
        bool negotiated = false;
        // File descriptors the client sent (SCM_RIGHTS) with its latest message that carried
        // any, not yet taken by getfd; the server replaces them at the next such message.
        std::vector<Fd> passed;
        // getfd's names (per connection, as QEMU's per-monitor list): closefd closes one,
        // dump-guest-memory "fd:NAME" uses one up; the rest close with the connection.
        std::map<std::string, Fd> named;
    };
    // How many named descriptors one connection may hold (getfd beyond it is refused).
    static constexpr std::size_t kMaxNamedFds = 64;

    QmpDispatcher(QmpDomain& domain, const QmpServerOptions& options);

    Json greeting() const;
    // The reply to one parsed input (or to a parse error).
    Json handle(const JsonStream::Item& input, Session& session);
    // The commands after negotiation, in query-commands order.
    std::vector<std::string> command_names() const;

private:
    enum class ParamType { string, integer, boolean, array };
    struct Param {
        std::string name;
        ParamType type;
        bool required;
    };
    struct Command {
        std::vector<Param> params;
        std::function<Json(const Json& args, Session& session)> run;
    };

    void add(const std::string& name, std::vector<Param> params,
             std::function<Json(const Json&, Session&)> run);
    Json version() const;
    Json human_monitor_command(const std::string& line) const;
    Json qmp_capabilities(const Json& args, Session& session) const;
    Json getfd(const std::string& name, Session& session) const;
    Json dump_guest_memory(const Json& args, Session& session);

    QmpDomain& domain_;
    const QmpServerOptions& options_;
    std::map<std::string, Command> commands_;
    std::vector<std::string> order_;
};

}  // namespace vmm::qmp
