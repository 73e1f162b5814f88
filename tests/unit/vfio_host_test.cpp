// Host-side VFIO analysis on a fake sysfs: config-space parsing, topology, ACS isolation,
// group viability, host-used devices and device selectors.
#include "common/error.h"
#include "tests/support/fake_sysfs.h"
#include "vfio/acs_isolation.h"
#include "vfio/assignability.h"
#include "vfio/host_usage.h"
#include "vfio/pci_address.h"
#include "vfio/pci_config.h"
#include "vfio/pci_selector.h"
#include "vfio/pci_topology.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>

// FakePciDevice is filled with designated initializers; the rest keep their defaults.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace vmm::vfio {
namespace {

using test::FakeSysfs;
using test::PciConfigBuilder;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// --- addresses and config space ---------------------------------------------------------

TEST(VfioPciAddress, ParsesAndNormalizes) {
    EXPECT_EQ(normalize_bdf("0000:03:00.0"), "0000:03:00.0");
    EXPECT_EQ(normalize_bdf("03:1F.7"), "0000:03:1f.7");
    EXPECT_EQ(normalize_bdf("10000:e1:00.1"), "10000:e1:00.1");
    for (const char* bad : {"", "03:00", "0000:03:20.0", "0000:03:00.8", "000:03:00.0", "0000:3:00.0", "x0:00.0",
                            "0000:03:00.0 "}) {
        EXPECT_FALSE(PciAddress::parse(bad)) << bad;
    }
    EXPECT_THROW(normalize_bdf("nope"), Error);
}

TEST(VfioPciConfig, FindsPcieTypeAndAcsBehindOtherExtendedCapabilities) {
    const auto bytes = PciConfigBuilder(0x8086, 0x1901, PCI_HEADER_TYPE_BRIDGE)
                           .cap(PCI_CAP_ID_PM, 0x40)
                           .pcie(PCI_EXP_TYPE_ROOT_PORT, 0x80)
                           .aer(0x100)
                           .ext_cap(PCI_EXT_CAP_ID_VC, 0x140)
                           .acs(0x220, 0x005f, 0x001d)
                           .bytes();
    const PciConfigInfo info = parse_pci_config(bytes);
    EXPECT_TRUE(info.extended_readable);
    EXPECT_EQ(info.vendor, 0x8086);
    EXPECT_EQ(info.header_type, PCI_HEADER_TYPE_BRIDGE);
    EXPECT_FALSE(info.multifunction);
    ASSERT_TRUE(info.pcie_type);
    EXPECT_EQ(*info.pcie_type, PCI_EXP_TYPE_ROOT_PORT);
    EXPECT_EQ(info.pcie_cap, 0x80);
    ASSERT_TRUE(info.acs);
    EXPECT_EQ(info.acs->offset, 0x220);
    EXPECT_EQ(info.acs->capability, 0x005f);
    EXPECT_EQ(info.acs->control, 0x001d);
}

TEST(VfioPciConfig, UnprivilegedReadOf64BytesHasNoCapabilities) {
    auto full = PciConfigBuilder(0x8086, 0x1901, PCI_HEADER_TYPE_BRIDGE, true).pcie(PCI_EXP_TYPE_ROOT_PORT)
                    .aer().acs(0x140, 0x1f, 0x1f).bytes();
    full.resize(64);
    const PciConfigInfo info = parse_pci_config(full);
    EXPECT_TRUE(info.header_readable);
    EXPECT_TRUE(info.multifunction);
    EXPECT_FALSE(info.caps_readable);
    EXPECT_FALSE(info.pcie_type);
    EXPECT_FALSE(info.acs);
}

TEST(VfioPciConfig, LoopingCapabilityListsTerminate) {
    PciConfigBuilder b(0x8086, 0x1234);
    b.pcie(PCI_EXP_TYPE_ENDPOINT, 0x40).cap(PCI_CAP_ID_MSI, 0x50);
    auto& raw = b.raw();
    raw[0x50 + PCI_CAP_LIST_NEXT] = 0x40;  // 0x40 → 0x50 → 0x40 ...
    // Extended list: 0x100 points at itself.
    raw[0x100] = PCI_EXT_CAP_ID_ERR;
    raw[0x101] = 0;
    raw[0x102] = 0x01;
    raw[0x103] = 0x10;  // next = 0x100
    EXPECT_FALSE(find_capability(raw, PCI_CAP_ID_MSIX));
    EXPECT_FALSE(find_ext_capability(raw, PCI_EXT_CAP_ID_ACS));
    EXPECT_EQ(find_capability(raw, PCI_CAP_ID_MSI), 0x50);
}

TEST(VfioPciConfig, ExtendedPointerPastTheEndIsNotFollowed) {
    PciConfigBuilder b(0x8086, 0x1234, PCI_HEADER_TYPE_NORMAL, false, 0x200);
    b.pcie(PCI_EXP_TYPE_ENDPOINT).aer();
    auto& raw = b.raw();
    raw[0x103] = 0xff;  // next = 0xff0, beyond a 0x200-byte file
    EXPECT_FALSE(find_ext_capability(raw, PCI_EXT_CAP_ID_ACS));
    EXPECT_EQ(find_ext_capability(raw, PCI_EXT_CAP_ID_ERR), 0x100);
}

// --- topology, isolation, viability -----------------------------------------------------

class VfioHostTest : public ::testing::Test {
protected:
    void SetUp() override { test::populate_example_host(fake_); }
    PciTopology scan() { return PciTopology::scan(fake_.sys()); }
    const PciDeviceInfo& dev(const PciTopology& t, const std::string& bdf) {
        const PciDeviceInfo* d = t.find(bdf);
        if (!d) throw std::runtime_error("no " + bdf);
        return *d;
    }
    FakeSysfs fake_;
};

TEST_F(VfioHostTest, ScanReadsDevicesDriversGroupsAndUpstreamPath) {
    const PciTopology t = scan();
    ASSERT_EQ(t.devices().size(), 19u);
    EXPECT_TRUE(std::is_sorted(t.devices().begin(), t.devices().end(),
                               [](const auto& a, const auto& b) { return a.address < b.address; }));
    const auto& nic = dev(t, "0000:06:00.0");
    EXPECT_EQ(nic.vendor, 0x1d0f);
    EXPECT_EQ(nic.device, 0x0065);
    EXPECT_EQ(nic.class_code, 0x020000u);
    EXPECT_EQ(nic.driver, "vfio-pci");
    EXPECT_EQ(nic.iommu_group, 4u);
    EXPECT_THAT(nic.upstream, ElementsAre("0000:05:01.0", "0000:04:00.0", "0000:00:03.0"));
    EXPECT_FALSE(nic.is_bridge());
    EXPECT_TRUE(dev(t, "0000:05:01.0").is_bridge());
    EXPECT_TRUE(dev(t, "0000:00:02.0").boot_vga);
    EXPECT_FALSE(dev(t, "0000:08:00.0").boot_vga);
    EXPECT_EQ(dev(t, "0000:00:1f.0").driver, "");
    EXPECT_FALSE(dev(t, "0000:00:1f.0").iommu_group);
    EXPECT_THAT(t.group_devices(7), ElementsAre("0000:08:00.0", "0000:08:00.1"));
    EXPECT_THAT(t.group_devices(3), ElementsAre("0000:00:03.0", "0000:04:00.0"));
}

TEST_F(VfioHostTest, SingleFunctionEndpointBehindAcsPortsIsIsolated) {
    const PciTopology t = scan();
    // 07:00.0 sits below 05:02.0 (ACS on), 04:00.0 (upstream port, single function), 00:03.0 (ACS on).
    const IsolationReport r = analyse_isolation(t, dev(t, "0000:07:00.0"));
    EXPECT_TRUE(r.isolated);
    EXPECT_THAT(r.reasons, ::testing::IsEmpty());
    // The NVMe has no ACS of its own: a single-function endpoint does not need it.
    EXPECT_TRUE(analyse_isolation(t, dev(t, "0000:01:00.0")).isolated);
}

TEST_F(VfioHostTest, RootPortWithoutAcsIsNamed) {
    const PciTopology t = scan();
    const IsolationReport r = analyse_isolation(t, dev(t, "0000:02:00.0"));
    EXPECT_FALSE(r.isolated);
    ASSERT_EQ(r.reasons.size(), 1u);
    EXPECT_THAT(r.reasons[0], AllOf(HasSubstr("0000:00:1c.0"), HasSubstr("root port"), HasSubstr("no ACS capability")));
}

TEST_F(VfioHostTest, AcsWithRedirectDisabledNamesThatBridgeAndTheMissingControls) {
    const PciTopology t = scan();
    const IsolationReport r = analyse_isolation(t, dev(t, "0000:06:00.0"));
    EXPECT_FALSE(r.isolated);
    ASSERT_EQ(r.reasons.size(), 1u) << r.reasons[0];
    const std::string& why = r.reasons[0];
    EXPECT_THAT(why, AllOf(HasSubstr("0000:05:01.0"), HasSubstr("downstream port"), HasSubstr("P2P Request Redirect"),
                           HasSubstr("P2P Completion Redirect"), HasSubstr("at 0x01a0")));
    EXPECT_THAT(why, AllOf(Not(HasSubstr("Source Validation")), Not(HasSubstr("Upstream Forwarding")),
                           Not(HasSubstr("0000:05:02.0")), Not(HasSubstr("0000:00:03.0"))));
    EXPECT_EQ(acs_problem(dev(t, "0000:05:02.0")), std::nullopt);
}

TEST_F(VfioHostTest, ControlsTheCapabilityDoesNotImplementCountAsOn) {
    const PciTopology t = scan();
    // 00:05.0 implements SV/RR/CR but not UF; UF is then hard-wired (PCIe 5.0 §7.7.8.2).
    EXPECT_EQ(acs_problem(dev(t, "0000:00:05.0")), std::nullopt);
}

TEST_F(VfioHostTest, MultifunctionWithoutAcsSharesIsolationWithSiblings) {
    const PciTopology t = scan();
    const IsolationReport r = analyse_isolation(t, dev(t, "0000:08:00.0"));
    EXPECT_FALSE(r.isolated);
    ASSERT_EQ(r.reasons.size(), 1u);
    EXPECT_THAT(r.reasons[0], AllOf(HasSubstr("0000:08:00.0"), HasSubstr("no ACS capability"),
                                    HasSubstr("multifunction"), HasSubstr("0000:08:00.1")));
    EXPECT_FALSE(analyse_isolation(t, dev(t, "0000:08:00.1")).isolated);
    // The same shape with ACS on each function is isolated.
    EXPECT_TRUE(analyse_isolation(t, dev(t, "0000:09:00.0")).isolated);
    EXPECT_TRUE(analyse_isolation(t, dev(t, "0000:09:00.1")).isolated);
}

TEST_F(VfioHostTest, ConventionalBridgeAndUnreadableConfigAreNotIsolating) {
    fake_.add({.bdf = "0000:00:1e.0", .vendor = 0x8086, .device = 0x244e, .class_code = 0x060401,
               .config = PciConfigBuilder(0x8086, 0x244e, PCI_HEADER_TYPE_BRIDGE, false, 256).bytes(),
               .driver = "", .group = 12u});
    fake_.add({.bdf = "0000:0a:00.0", .parent = "0000:00:1e.0", .vendor = 0x1000, .device = 0x0030,
               .class_code = 0x010000, .config = {}, .driver = "", .group = 12u});
    const PciTopology t = scan();
    const IsolationReport r = analyse_isolation(t, dev(t, "0000:0a:00.0"));
    EXPECT_FALSE(r.isolated);
    ASSERT_EQ(r.reasons.size(), 1u);
    EXPECT_THAT(r.reasons[0], AllOf(HasSubstr("0000:00:1e.0"), HasSubstr("conventional PCI")));
    // A root port whose config is only 64 bytes (unprivileged read) cannot be judged.
    auto p = acs_problem(dev(t, "0000:0a:00.0"));
    ASSERT_TRUE(p);  // a 64-byte header: we cannot tell it is PCIe
    EXPECT_THAT(*p, HasSubstr("run as root"));
}

TEST_F(VfioHostTest, ViableGroupWithBridgeOnPcieport) {
    const PciTopology t = scan();
    const AssignabilityReport r = check_assignable(t, "0000:02:00.0");
    EXPECT_EQ(r.iommu_group, 11u);
    EXPECT_TRUE(r.viable) << "a bridge keeps its driver in a viable group";
    ASSERT_EQ(r.group_devices.size(), 2u);
    EXPECT_EQ(r.group_devices[0].bdf, "0000:00:1c.0");
    EXPECT_TRUE(r.group_devices[0].bridge);
    EXPECT_EQ(r.group_devices[0].driver, "pcieport");
    EXPECT_FALSE(r.acs_isolated);
    EXPECT_FALSE(r.ok());
}

TEST_F(VfioHostTest, GroupMemberOnHostDriverMakesGroupNotViable) {
    const PciTopology t = scan();
    const AssignabilityReport r = check_assignable(t, "0000:08:00.0");
    EXPECT_FALSE(r.viable);
    ASSERT_EQ(r.group_devices.size(), 2u);
    EXPECT_TRUE(r.group_devices[0].viable);
    EXPECT_FALSE(r.group_devices[1].viable);
    EXPECT_EQ(r.group_devices[1].driver, "snd_hda_intel");
    const bool named = std::any_of(r.reasons.begin(), r.reasons.end(), [](const std::string& s) {
        return s.find("0000:08:00.1") != std::string::npos && s.find("snd_hda_intel") != std::string::npos;
    });
    EXPECT_TRUE(named) << ::testing::PrintToString(r.reasons);
}

TEST_F(VfioHostTest, FullyAssignableDevice) {
    const PciTopology t = scan();
    const HostPaths paths = HostPaths::under(fake_.sys(), fake_.proc());
    const AssignabilityReport r = check_assignable(t, "0000:09:00.0", find_host_devices(t, paths));
    EXPECT_TRUE(r.viable);
    EXPECT_TRUE(r.acs_isolated);
    EXPECT_THAT(r.host_use, ::testing::IsEmpty());
    EXPECT_THAT(r.reasons, ::testing::IsEmpty());
    EXPECT_TRUE(r.ok());
}

TEST_F(VfioHostTest, NoIommuGroupAndUnknownDevice) {
    const PciTopology t = scan();
    const AssignabilityReport r = check_assignable(t, "0000:00:1f.0");
    EXPECT_FALSE(r.iommu_group);
    EXPECT_FALSE(r.viable);
    ASSERT_FALSE(r.reasons.empty());
    EXPECT_THAT(r.reasons[0], HasSubstr("no IOMMU group"));
    EXPECT_THROW(check_assignable(t, "0000:42:00.0"), Error);
    EXPECT_THROW(check_assignable(t, "garbage"), Error);
}

TEST_F(VfioHostTest, BridgeIsNotAssignable) {
    const PciTopology t = scan();
    const AssignabilityReport r = check_assignable(t, "0000:00:06.0");
    EXPECT_FALSE(r.ok());
    EXPECT_THAT(r.reasons[0], AllOf(HasSubstr("0000:00:06.0"), HasSubstr("bridge")));
}

// --- host usage --------------------------------------------------------------------------

std::map<std::string, std::string> uses_by_bdf(const std::vector<HostUse>& uses) {
    std::map<std::string, std::string> m;
    for (const auto& u : uses) m[u.bdf] += u.what;
    return m;
}

TEST_F(VfioHostTest, FindsBootVgaRootDiskAndDefaultRouteNicThroughBridge) {
    const PciTopology t = scan();
    const auto uses = uses_by_bdf(find_host_devices(t, HostPaths::under(fake_.sys(), fake_.proc())));
    ASSERT_EQ(uses.size(), 3u) << ::testing::PrintToString(uses);
    EXPECT_THAT(uses.at("0000:00:02.0"), HasSubstr("boot VGA"));
    EXPECT_THAT(uses.at("0000:01:00.0"), AllOf(HasSubstr("root filesystem"), HasSubstr("/dev/nvme0n1p2")));
    EXPECT_THAT(uses.at("0000:07:00.0"), AllOf(HasSubstr("default route"), HasSubstr("br0")));
}

TEST_F(VfioHostTest, RootOnDeviceMapperAndBtrfsAnonymousDevice) {
    fake_.add_block("dm-0", "253:0", "", {"nvme0n1p2"});
    fake_.set_root_mount("253:0", "/dev/mapper/vg-root");
    const PciTopology t = scan();
    EXPECT_THAT(uses_by_bdf(find_host_devices(t, HostPaths::under(fake_.sys(), fake_.proc()))).at("0000:01:00.0"),
                HasSubstr("/dev/mapper/vg-root"));

    fake_.set_root_mount("0:31", "/dev/nvme0n1p2", "btrfs");
    EXPECT_EQ(uses_by_bdf(find_host_devices(t, HostPaths::under(fake_.sys(), fake_.proc()))).count("0000:01:00.0"),
              1u);

    // A configured root device overrides mountinfo.
    fake_.set_root_mount("0:31", "overlay", "overlay");
    HostPaths p = HostPaths::under(fake_.sys(), fake_.proc());
    EXPECT_EQ(uses_by_bdf(find_host_devices(t, p)).count("0000:01:00.0"), 0u);
    p.root_device = "259:2";
    EXPECT_EQ(uses_by_bdf(find_host_devices(t, p)).count("0000:01:00.0"), 1u);
}

TEST_F(VfioHostTest, HostUseOfAGroupMemberIsReported) {
    // Put the default-route NIC's group-mate in question: 07:00.0 is alone in group 5, so use
    // the boot VGA's group with an added function.
    const PciTopology t = scan();
    const auto uses = find_host_devices(t, HostPaths::under(fake_.sys(), fake_.proc()));
    const AssignabilityReport r = check_assignable(t, "0000:07:00.0", uses);
    ASSERT_EQ(r.host_use.size(), 1u);
    EXPECT_THAT(r.host_use[0], AllOf(HasSubstr("0000:07:00.0"), HasSubstr("default route")));
    EXPECT_FALSE(r.ok());
}

// --- selectors ---------------------------------------------------------------------------

TEST(VfioPciSelector, ParsesBothShapes) {
    EXPECT_EQ(parse_pci_selector({{"bdf", "03:00.0"}}).bdf, "0000:03:00.0");
    const PciSelector s = parse_pci_selector({{"vendor", "1D0F"}, {"device", "0x0065"}, {"index", 1}});
    EXPECT_FALSE(s.bdf);
    EXPECT_EQ(s.vendor, 0x1d0f);
    EXPECT_EQ(s.device, 0x0065);
    EXPECT_EQ(s.index, 1u);
    EXPECT_EQ(parse_pci_selector({{"vendor", "1d0f"}, {"device", "0065"}}).index, 0u);
    EXPECT_EQ(parse_pci_selector(to_json(s)), s);
}

TEST(VfioPciSelector, ErrorsNameTheField) {
    auto field_of = [](const nlohmann::json& j) {
        try {
            parse_pci_selector(j, "pci[2]");
        } catch (const PciSelectorError& e) {
            EXPECT_THAT(e.what(), HasSubstr(e.field));
            return e.field;
        }
        return std::string("(accepted)");
    };
    EXPECT_EQ(field_of({{"bdf", "0000:03:00.9"}}), "pci[2].bdf");
    EXPECT_EQ(field_of({{"bdf", 3}}), "pci[2].bdf");
    EXPECT_EQ(field_of({{"bdf", "0000:03:00.0"}, {"vendor", "1d0f"}}), "pci[2].vendor");
    EXPECT_EQ(field_of({{"vendor", "1d0f"}}), "pci[2].device");
    EXPECT_EQ(field_of({{"device", "0065"}}), "pci[2].vendor");
    EXPECT_EQ(field_of({{"vendor", "1d0"}, {"device", "0065"}}), "pci[2].vendor");
    EXPECT_EQ(field_of({{"vendor", "ffff"}, {"device", "0065"}}), "pci[2].vendor");
    EXPECT_EQ(field_of({{"vendor", "1d0f"}, {"device", "00g5"}}), "pci[2].device");
    EXPECT_EQ(field_of({{"vendor", "1d0f"}, {"device", "0065"}, {"index", -1}}), "pci[2].index");
    EXPECT_EQ(field_of({{"vendor", "1d0f"}, {"device", "0065"}, {"index", "0"}}), "pci[2].index");
    EXPECT_EQ(field_of({{"bdf", "0000:03:00.0"}, {"slot", 1}}), "pci[2].slot");
    EXPECT_EQ(field_of(nlohmann::json::array()), "pci[2]");
    EXPECT_EQ(field_of({{"vendor", "1d0f"}, {"device", "0065"}, {"index", 3}}), "(accepted)");
}

TEST_F(VfioHostTest, SelectorResolvesByVendorDeviceAndIndexInAddressOrder) {
    const PciTopology t = scan();
    auto sel = [](unsigned index) { return PciSelector{std::nullopt, 0x1d0f, 0x0065, index}; };
    EXPECT_EQ(resolve_pci_selector(t, sel(0)), "0000:06:00.0");
    EXPECT_EQ(resolve_pci_selector(t, sel(1)), "0000:07:00.0");
    try {
        resolve_pci_selector(t, sel(2));
        FAIL() << "index 2 of two matches must not resolve";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), AllOf(HasSubstr("1d0f:0065"), HasSubstr("2 devices"), HasSubstr("0..1")));
    }
    EXPECT_THROW(resolve_pci_selector(t, PciSelector{std::nullopt, 0x1d0f, 0x0066, 0}), Error);
    EXPECT_EQ(resolve_pci_selector(t, PciSelector{"0000:02:00.0", 0, 0, 0}), "0000:02:00.0");
    EXPECT_THROW(resolve_pci_selector(t, PciSelector{"0000:42:00.0", 0, 0, 0}), Error);
}

}  // namespace
}  // namespace vmm::vfio
