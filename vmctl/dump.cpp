#include "vmctl/dump.h"

#include "common/fd.h"
#include "qmp/qmp_client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

namespace vmm::vmctl {

namespace {

constexpr int kExitFailed = 1;
constexpr const char* kFdName = "vmctl-dump";

// The DUMP_COMPLETED event, or nullopt at the deadline.
std::optional<qmp::Json> wait_completed(qmp::QmpClient& c, std::chrono::seconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
        const auto e = c.next_event(std::max(left, std::chrono::milliseconds(1)));
        if (e && (*e)["event"] == "DUMP_COMPLETED") return e;
    }
    return std::nullopt;
}

}  // namespace

int dump_domain(const nlohmann::json& domain, const DumpRequest& request, std::ostream& out, std::ostream& err) {
    const std::string name = domain.value("name", "");
    const std::string hv = domain.value("hypervisor", "");
    const std::string state = domain.value("state", "");
    if (hv != "kvm") {
        err << "vmctl: dump needs a kvm domain; '" << name << "' runs on " << hv << "\n";
        return kExitFailed;
    }
    if (state != "running" && state != "paused") {
        err << "vmctl: domain '" << name << "' is " << state << ": only a running or paused domain has memory to dump\n";
        return kExitFailed;
    }
    const std::string& file = request.file;
    struct stat st {};
    const bool exists = ::stat(file.c_str(), &st) == 0;
    int flags = O_WRONLY | O_CLOEXEC;
    if (!exists) {
        flags |= O_CREAT | O_EXCL;
    } else if (S_ISREG(st.st_mode)) {
        if (!request.overwrite) {
            err << "vmctl: " << file << " exists (--force overwrites it)\n";
            return kExitFailed;
        }
        flags |= O_TRUNC;
    } else if (S_ISDIR(st.st_mode)) {
        err << "vmctl: " << file << " is a directory\n";
        return kExitFailed;
    }
    const int raw = ::open(file.c_str(), flags, 0600);  // a FIFO waits here for its reader
    if (raw < 0) {
        err << "vmctl: cannot open " << file << ": " << std::strerror(errno) << "\n";
        return kExitFailed;
    }
    Fd fd(raw);
    auto fail = [&](const std::string& why) {
        if (!exists) ::unlink(file.c_str());  // ours, and incomplete
        err << "vmctl: dump of '" << name << "' failed: " << why << "\n";
        return kExitFailed;
    };
    try {
        qmp::QmpClient c(domain.value("state_dir", "") + "/qmp", std::chrono::seconds(5));
        c.execute_passing_fds("getfd", {{"fdname", kFdName}}, {fd.get()});
        fd.reset();  // the anchor has its own copy now
        c.execute("dump-guest-memory", {{"paging", false}, {"protocol", std::string("fd:") + kFdName}, {"detach", true}});
        const auto done = wait_completed(c, request.timeout);
        if (!done) return fail("no DUMP_COMPLETED within " + std::to_string(request.timeout.count()) + " s");
        const qmp::Json& result = (*done)["data"]["result"];
        if (result.value("status", "") != "completed")
            return fail((*done)["data"].value("error", "status " + result.value("status", std::string("?"))));
        out << name << ": " << result.value("completed", 0ull) << " bytes of guest memory written to " << file << "\n";
        return 0;
    } catch (const std::exception& e) {
        return fail(e.what());
    }
}

}  // namespace vmm::vmctl
