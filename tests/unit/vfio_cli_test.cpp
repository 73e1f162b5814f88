// `vmctl pci list|check` through run_pci_command on a fake sysfs: JSON field by field, the
// human table, exit statuses and usage errors.
#include "tests/support/fake_sysfs.h"
#include "vfio/pci_cli.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sstream>

namespace vmm::vfio {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

class VfioCliTest : public ::testing::Test {
protected:
    void SetUp() override { test::populate_example_host(fake_); }
    int run(std::vector<std::string> args) {
        out_.str("");
        err_.str("");
        args.insert(args.end(), {"--sysfs-root", fake_.sys().string(), "--proc-root", fake_.proc().string()});
        return run_pci_command(args, out_, err_);
    }
    test::FakeSysfs fake_;
    std::ostringstream out_, err_;
};

TEST_F(VfioCliTest, CheckJsonOfADeviceBehindAPortWithRedirectOff) {
    ASSERT_EQ(run({"check", "0000:06:00.0", "--json"}), 1) << err_.str();
    const auto j = nlohmann::json::parse(out_.str());
    EXPECT_EQ(j.at("bdf"), "0000:06:00.0");
    EXPECT_EQ(j.at("vendor"), "1d0f");
    EXPECT_EQ(j.at("device"), "0065");
    EXPECT_EQ(j.at("driver"), "vfio-pci");
    EXPECT_EQ(j.at("bridge"), false);
    EXPECT_EQ(j.at("iommu_group"), 4);
    ASSERT_EQ(j.at("group_devices").size(), 2u);
    EXPECT_EQ(j.at("group_devices")[0].at("bdf"), "0000:05:01.0");
    EXPECT_EQ(j.at("group_devices")[0].at("driver"), "pcieport");
    EXPECT_EQ(j.at("group_devices")[0].at("bridge"), true);
    EXPECT_EQ(j.at("group_devices")[0].at("viable"), true);
    EXPECT_EQ(j.at("group_devices")[1].at("bdf"), "0000:06:00.0");
    EXPECT_EQ(j.at("group_devices")[1].at("driver"), "vfio-pci");
    EXPECT_EQ(j.at("group_devices")[1].at("bridge"), false);
    EXPECT_EQ(j.at("acs_isolated"), false);
    EXPECT_EQ(j.at("viable"), true);
    EXPECT_EQ(j.at("host_use"), nlohmann::json::array());
    ASSERT_EQ(j.at("reasons").size(), 1u);
    EXPECT_THAT(j.at("reasons")[0].get<std::string>(),
                AllOf(HasSubstr("0000:05:01.0"), HasSubstr("P2P Request Redirect")));
    EXPECT_EQ(j.at("ok"), false);
}

TEST_F(VfioCliTest, CheckJsonOfAnAssignableDeviceExitsZero) {
    ASSERT_EQ(run({"check", "09:00.0", "--json"}), 0) << out_.str() << err_.str();
    const auto j = nlohmann::json::parse(out_.str());
    EXPECT_EQ(j.at("bdf"), "0000:09:00.0");
    EXPECT_EQ(j.at("iommu_group"), 9);
    ASSERT_EQ(j.at("group_devices").size(), 1u);
    EXPECT_EQ(j.at("acs_isolated"), true);
    EXPECT_EQ(j.at("viable"), true);
    EXPECT_EQ(j.at("reasons"), nlohmann::json::array());
    EXPECT_EQ(j.at("ok"), true);
}

TEST_F(VfioCliTest, CheckJsonShowsHostDriverInGroupAndHostUse) {
    ASSERT_EQ(run({"check", "0000:08:00.0", "--json"}), 1);
    auto j = nlohmann::json::parse(out_.str());
    EXPECT_EQ(j.at("viable"), false);
    EXPECT_EQ(j.at("group_devices")[1].at("driver"), "snd_hda_intel");
    EXPECT_EQ(j.at("group_devices")[1].at("viable"), false);

    ASSERT_EQ(run({"check", "0000:00:02.0", "--json"}), 1);
    j = nlohmann::json::parse(out_.str());
    ASSERT_EQ(j.at("host_use").size(), 1u);
    EXPECT_THAT(j.at("host_use")[0].get<std::string>(), HasSubstr("boot VGA"));

    ASSERT_EQ(run({"check", "0000:00:1c.0", "--json"}), 1);
    j = nlohmann::json::parse(out_.str());
    EXPECT_EQ(j.at("bridge"), true);
    EXPECT_EQ(j.at("ok"), false);

    ASSERT_EQ(run({"check", "0000:00:1f.0", "--json"}), 1);
    j = nlohmann::json::parse(out_.str());
    EXPECT_TRUE(j.at("iommu_group").is_null());
    EXPECT_TRUE(j.at("driver").is_null());
}

TEST_F(VfioCliTest, ListJsonHasEveryDevice) {
    ASSERT_EQ(run({"list", "--json"}), 0) << err_.str();
    const auto j = nlohmann::json::parse(out_.str());
    ASSERT_TRUE(j.is_array());
    ASSERT_EQ(j.size(), 19u);
    EXPECT_EQ(j[0].at("bdf"), "0000:00:00.0");
    for (const auto& e : j) {
        for (const char* key : {"bdf", "iommu_group", "group_devices", "acs_isolated", "viable", "reasons"}) {
            EXPECT_TRUE(e.contains(key)) << e.at("bdf") << " lacks " << key;
        }
    }
}

TEST_F(VfioCliTest, HumanOutput) {
    ASSERT_EQ(run({"list"}), 0);
    std::string line;
    std::istringstream in(out_.str());
    std::getline(in, line);
    EXPECT_THAT(line, AllOf(HasSubstr("BDF"), HasSubstr("DRIVER"), HasSubstr("GROUP"), HasSubstr("VIABLE")));
    bool found = false;
    while (std::getline(in, line)) {
        if (line.rfind("0000:08:00.1", 0) == 0) {
            found = true;
            EXPECT_THAT(line, AllOf(HasSubstr("10de:10f0"), HasSubstr("snd_hda_intel"), HasSubstr(" 7 ")));
        }
    }
    EXPECT_TRUE(found) << out_.str();

    ASSERT_EQ(run({"check", "0000:02:00.0"}), 1);
    EXPECT_THAT(out_.str(), AllOf(HasSubstr("IOMMU group:   11"), HasSubstr("ACS isolated:  no"),
                                  HasSubstr("0000:00:1c.0 (root port) has no ACS capability"),
                                  HasSubstr("cannot be assigned")));
}

TEST_F(VfioCliTest, UsageAndLookupErrors) {
    EXPECT_EQ(run({}), 64);
    EXPECT_THAT(err_.str(), HasSubstr("usage"));
    EXPECT_EQ(run({"frobnicate"}), 64);
    EXPECT_EQ(run({"check"}), 64);
    EXPECT_EQ(run({"list", "--bogus"}), 64);
    EXPECT_EQ(run_pci_command({"list", "--sysfs-root"}, out_, err_), 64);
    EXPECT_EQ(run({"check", "0000:42:00.0"}), 1);
    EXPECT_THAT(err_.str(), HasSubstr("no PCI device 0000:42:00.0"));
    std::ostringstream out, err;
    EXPECT_EQ(run_pci_command({"list", "--sysfs-root", "/nonexistent-vmm-sysfs"}, out, err), 70);
    EXPECT_THAT(err.str(), HasSubstr("/nonexistent-vmm-sysfs"));
}

}  // namespace
}  // namespace vmm::vfio
