// Logging: one named spdlog logger per component ("anchor", "blk0", "serial").
// Logs go to stderr so a console on stdio stays clean.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

// fmt's formatting engine is compiled once, in common/logging/fmt_impl.cpp. fmt 9 declares
// no explicit instantiation of it, so without this line every file that logs compiled a private
// copy of it (the float formatters, ~20 KiB of text per file, ~0.3 MiB in vmm-anchor; #8).
// Every spdlog/fmt user includes this header rather than spdlog's.
FMT_BEGIN_NAMESPACE
namespace detail {
extern template void vformat_to(buffer<char>&, string_view, basic_format_args<FMT_BUFFER_CONTEXT(char)>, locale_ref);
}  // namespace detail
FMT_END_NAMESPACE

namespace vmm {

// Returns the logger `name`, creating it (the one shared stderr sink, the global level) on
// first use. Creating one makes no system call once the sink exists (the first call makes it).
std::shared_ptr<spdlog::logger> logger(const std::string& name);
// Parses "trace|debug|info|warn|error|critical|off"; throws vmm::Error on anything else.
void set_log_level(const std::string& level);

}  // namespace vmm
