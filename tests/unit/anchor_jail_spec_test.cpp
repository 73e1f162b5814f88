// What a jailed anchor's jail holds, from its manifest (anchor/anchor_jail.h): the spec only,
// no namespaces (jail_mount_test and jail_anchor_kvm_test enter real jails). PCI passthrough
// reads the IOMMU groups from a fake sysfs tree.
#include "anchor/anchor_jail.h"
#include "tests/support/fake_sysfs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <linux/capability.h>

#include <algorithm>
#include <filesystem>
#include <optional>

namespace vmm::anchor {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

std::optional<jail::JailBind> bind_of(const jail::JailSpec& s, const std::string& path) {
    for (const auto& b : s.binds)
        if (b.host_path == path) return b;
    return std::nullopt;
}

DomainManifest web() {
    DomainManifest m;
    m.name = "web";
    m.kernel = "/images/vmlinuz";
    m.initrd = "/images/initrd";
    m.disks = {{"/images/root.img", false, "", ""}, {"/images/seed.iso", true, "", ""}};
    m.consoles = {{"socket", "/run/consoles/web.sock", "org.qemu.guest_agent.0"}, {"pty", "", ""}};
    return m;
}

AnchorJailOptions options() {
    AnchorJailOptions o;
    o.run_dir = "/run/hv";
    o.manifest_path = "/var/lib/vmmd/web.json";
    o.executable = "/usr/bin/vmm-anchor";
    return o;
}

TEST(AnchorJailSpecTest, TheDomainsFilesWithTheRightAccess) {
    const auto s = anchor_jail_spec(web(), options());
    EXPECT_EQ(s.mountpoint, "/run/hv/.jail-root");
    const auto ro = [&](const std::string& p) {
        auto b = bind_of(s, p);
        ASSERT_TRUE(b) << p;
        EXPECT_FALSE(b->writable) << p;
        EXPECT_FALSE(b->executable) << p;
    };
    const auto rw = [&](const std::string& p) {
        auto b = bind_of(s, p);
        ASSERT_TRUE(b) << p;
        EXPECT_TRUE(b->writable) << p;
        EXPECT_FALSE(b->executable) << p;
    };
    ro("/images/vmlinuz");
    ro("/images/initrd");
    ro("/images/seed.iso");
    ro("/var/lib/vmmd/web.json");
    rw("/images/root.img");
    rw("/run/consoles");  // the anchor makes the socket in it
    rw("/dev/pts");
    rw("/run/hv/kvm/web");
    EXPECT_TRUE(bind_of(s, "/run/hv/kvm/web")->create_dir);
    // The runtime a restart needs: the binary and the shared objects it has loaded, executable.
    ASSERT_TRUE(bind_of(s, "/usr/bin/vmm-anchor"));
    EXPECT_TRUE(bind_of(s, "/usr/bin/vmm-anchor")->executable);
    const bool libc = std::any_of(s.binds.begin(), s.binds.end(), [](const jail::JailBind& b) {
        return b.executable && b.host_path.find("libc.so") != std::string::npos;
    });
    EXPECT_TRUE(libc) << "this process's libc, by the name ld.so used";
    // Nothing the domain does not use.
    EXPECT_FALSE(bind_of(s, "/sys"));
    EXPECT_FALSE(bind_of(s, "/proc"));
    EXPECT_FALSE(bind_of(s, "/images")) << "files, not their directory";
    EXPECT_EQ(s.devices, (std::vector<std::string>{"/dev/kvm", "/dev/ptmx", "/dev/null"}));
    // No tap: a network namespace of its own, no capability kept.
    EXPECT_TRUE(s.new_network_namespace);
    EXPECT_EQ(s.keep, 0u);
    EXPECT_FALSE(s.identity);
}

TEST(AnchorJailSpecTest, TapsKeepTheHostsNetworkTunAndNetAdmin) {
    test::FakeSysfs sysfs;
    const auto vulnerabilities = sysfs.sys() / "devices/system/cpu/vulnerabilities";
    auto m = web();
    m.nics = {{"tap0", ""}};
    auto o = options();
    o.identity = jail::JailIdentity{1000, 1001};
    o.sysfs = sysfs.sys().string();
    EXPECT_FALSE(bind_of(anchor_jail_spec(m, o), vulnerabilities.string())) << "a kernel without the reports";
    std::filesystem::create_directories(vulnerabilities);
    const auto s = anchor_jail_spec(m, o);
    EXPECT_FALSE(s.new_network_namespace);
    EXPECT_THAT(s.devices, Contains("/dev/net/tun"));
    EXPECT_EQ(s.keep, jail::cap_bit(CAP_NET_ADMIN));
    ASSERT_TRUE(s.identity);
    EXPECT_EQ(s.identity->uid, 1000u);
    EXPECT_EQ(s.identity->gid, 1001u);
    // How a tap transmits follows the host's mitigations (tap_batches_pay_off): their reports
    // are in the jail, read-only; nothing else of /sys is.
    ASSERT_TRUE(bind_of(s, vulnerabilities.string()));
    EXPECT_FALSE(bind_of(s, vulnerabilities.string())->writable);
    EXPECT_FALSE(bind_of(s, o.sysfs));
    EXPECT_FALSE(bind_of(anchor_jail_spec(web(), o), vulnerabilities.string())) << "no NIC, no need";
}

TEST(AnchorJailSpecTest, PassthroughGetsSysReadOnlyAndOnlyItsOwnIommuGroups) {
    test::FakeSysfs sysfs;
    test::FakePciDevice mine;
    mine.bdf = "0000:03:00.0";
    mine.group = 7;
    test::FakePciDevice other;
    other.bdf = "0000:04:00.0";
    other.group = 9;
    sysfs.add(mine).add(other);
    auto m = web();
    m.pci = {{"0000:03:00.0", 0, 0, 0}};
    auto o = options();
    o.sysfs = sysfs.sys().string();
    const auto s = anchor_jail_spec(m, o);
    EXPECT_THAT(s.devices, Contains("/dev/vfio/vfio"));
    EXPECT_THAT(s.devices, Contains("/dev/vfio/7"));
    EXPECT_THAT(s.devices, Not(Contains("/dev/vfio/9"))) << "another free group could be attached";
    ASSERT_TRUE(bind_of(s, o.sysfs));
    EXPECT_FALSE(bind_of(s, o.sysfs)->writable);
    EXPECT_EQ(s.keep, jail::cap_bit(CAP_IPC_LOCK));
}

// A device chosen by vendor/device IDs (and index among the matches, in address order) gets the
// group of the device the anchor will resolve them to, as by bdf; IDs nothing matches are refused.
TEST(AnchorJailSpecTest, ADeviceChosenByIdsGetsItsOwnGroup) {
    test::FakeSysfs sysfs;
    test::FakePciDevice first, second, other;
    first.bdf = "0000:03:00.0";
    first.vendor = 0x1d0f, first.device = 0x0065, first.group = 7;
    second.bdf = "0000:04:00.0";
    second.vendor = 0x1d0f, second.device = 0x0065, second.group = 8;
    other.bdf = "0000:05:00.0";
    other.group = 9;
    sysfs.add(first).add(second).add(other);
    auto m = web();
    m.pci = {{"", 0x1d0f, 0x0065, 1}};
    auto o = options();
    o.sysfs = sysfs.sys().string();
    const auto s = anchor_jail_spec(m, o);
    EXPECT_THAT(s.devices, Contains("/dev/vfio/8")) << "the second match";
    EXPECT_THAT(s.devices, Not(Contains("/dev/vfio/7")));
    EXPECT_THAT(s.devices, Not(Contains("/dev/vfio/9")));
    m.pci = {{"", 0x1d0f, 0x0065, 2}};
    try {
        anchor_jail_spec(m, o);
        ADD_FAILURE() << "a third match of two was accepted";
    } catch (const std::exception& e) {
        EXPECT_THAT(e.what(), HasSubstr("jail: "));
        EXPECT_THAT(e.what(), HasSubstr("1d0f:0065"));
    }
}

TEST(AnchorJailSpecTest, UnusableInputsAreRefusedWithTheReason) {
    auto m = web();
    test::FakeSysfs sysfs;
    m.pci = {{"0000:05:00.0", 0, 0, 0}};
    auto o = options();
    o.sysfs = sysfs.sys().string();
    try {
        anchor_jail_spec(m, o);
        ADD_FAILURE() << "a device without an IOMMU group was accepted";
    } catch (const std::exception& e) {
        EXPECT_THAT(e.what(), HasSubstr("0000:05:00.0 has no IOMMU group"));
    }
    o = options();
    o.executable = "build/anchor/vmm-anchor";
    try {
        anchor_jail_spec(web(), o);
        ADD_FAILURE() << "a relative executable path was accepted";
    } catch (const std::exception& e) {
        EXPECT_THAT(e.what(), HasSubstr("is not absolute"));
    }
}

}  // namespace
}  // namespace vmm::anchor
