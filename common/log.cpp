#include "common/log.h"

#include "common/error.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace vmm {

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
    if (auto l = spdlog::get(name)) return l;
    try {
        auto l = spdlog::stderr_color_mt(name);
        l->set_level(spdlog::get_level());
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
