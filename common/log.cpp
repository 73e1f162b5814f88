#include "common/log.h"

#include "common/error.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace vmm {

namespace {

// One stderr sink for every logger, made by the first logger() call (the process's start, before
// any jail): a color sink asks isatty() (a TCGETS ioctl) when it is made, which a device
// thread's seccomp filter refuses, so a logger first named on such a thread must not make one.
// One sink also keeps lines of different components whole (one mutex).
const std::shared_ptr<spdlog::sinks::sink>& stderr_sink() {
    static const std::shared_ptr<spdlog::sinks::sink> sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    return sink;
}

}  // namespace

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
    if (auto l = spdlog::get(name)) return l;
    try {
        auto l = std::make_shared<spdlog::logger>(name, stderr_sink());
        l->set_level(spdlog::get_level());
        spdlog::register_logger(l);
        return l;
    } catch (const spdlog::spdlog_ex&) {
        // Another thread registered it first.
        return spdlog::get(name);
    }
}

void set_log_level(const std::string& level) {
    auto lvl = spdlog::level::from_str(level);
    if (lvl == spdlog::level::off && level != "off")
        throw Error("unknown log level '" + level + "' (trace, debug, info, warn, error, critical, off)");
    spdlog::set_level(lvl);
    spdlog::apply_all([lvl](const std::shared_ptr<spdlog::logger>& l) { l->set_level(lvl); });
}

}  // namespace vmm
