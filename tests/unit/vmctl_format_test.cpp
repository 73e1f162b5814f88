// vmctl's output formats: the list table's columns and the durations and sizes in it.
#include "vmctl/format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

namespace vmm::vmctl {
namespace {

using nlohmann::json;

TEST(VmctlFormat, Uptime) {
    EXPECT_EQ(format_uptime(json(nullptr)), "-");
    EXPECT_EQ(format_uptime(json(0)), "0s");
    EXPECT_EQ(format_uptime(json(59)), "59s");
    EXPECT_EQ(format_uptime(json(187)), "3m07s");
    EXPECT_EQ(format_uptime(json(2 * 3600 + 5 * 60 + 9)), "2h05m");
    EXPECT_EQ(format_uptime(json(3 * 86400 + 4 * 3600)), "3d04h");
}

TEST(VmctlFormat, Memory) {
    EXPECT_EQ(format_memory_mb(16), "16M");
    EXPECT_EQ(format_memory_mb(2048), "2G");
    EXPECT_EQ(format_memory_mb(1536), "1536M");
}

TEST(VmctlFormat, TableAlignsColumnsAndMarksMissingValues) {
    const json domains = json::array(
        {{{"name", "web"}, {"hypervisor", "kvm"}, {"state", "running"}, {"vcpus", 2}, {"memory_mb", 512},
          {"pid", 4242}, {"uptime_s", 75}},
         {{"name", "database-1"}, {"hypervisor", "null"}, {"state", "crashed"}, {"vcpus", 16}, {"memory_mb", 4096},
          {"pid", nullptr}, {"uptime_s", nullptr}, {"restart_pending", true}}});
    std::istringstream table(format_domain_table(domains));
    std::string header, row1, row2, extra;
    std::getline(table, header);
    std::getline(table, row1);
    std::getline(table, row2);
    EXPECT_FALSE(std::getline(table, extra));
    EXPECT_EQ(header, "NAME        HYPERVISOR  STATE                 VCPUS  MEMORY  PID   UPTIME");
    EXPECT_EQ(row1,   "web         kvm         running               2      512M    4242  1m15s");
    EXPECT_EQ(row2,   "database-1  null        crashed (restarting)  16     4G      -     -");
}

TEST(VmctlFormat, InfoShowsExitAndUsage) {
    const json d = {{"name", "web"}, {"state", "crashed"}, {"exit", {{"status", 6}, {"detail", "KVM internal error"}}},
                    {"usage", {{"cpu_total_ns", 1500000000}, {"used_memory_mb", 20}, {"max_used_memory_mb", 24}}}};
    const std::string text = format_domain_info(d);
    EXPECT_THAT(text, ::testing::HasSubstr("last exit: KVM internal error (status 6)\n"));
    EXPECT_THAT(text, ::testing::HasSubstr("cpu time: 1.50s\n"));
    EXPECT_THAT(text, ::testing::HasSubstr("memory used: 20M (max 24M)\n"));
}

}  // namespace
}  // namespace vmm::vmctl
