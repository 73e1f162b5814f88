// Logging: one named spdlog logger per component ("anchor", "blk0", "serial").
// Logs go to stderr so a console on stdio stays clean.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace vmm {

// Returns the logger `name`, creating it (stderr sink, global level) on first use.
std::shared_ptr<spdlog::logger> logger(const std::string& name);
// Parses "trace|debug|info|warn|error|critical|off"; throws vmm::Error on anything else.
void set_log_level(const std::string& level);

}  // namespace vmm
