// PciDriverBinder on a fake sysfs whose writer emulates the kernel's driver core: the exact
// sysfs writes of reserve/release, the original driver coming back, and refusals.
#include "common/error.h"
#include "tests/support/fake_sysfs.h"
#include "vfio/pci_driver_binder.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace vmm::vfio {
namespace {

using test::FakeSysfs;
using W = FakeSysfs::Write;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class VfioBinderTest : public ::testing::Test {
protected:
    void SetUp() override { test::populate_example_host(fake_); }
    PciDriverBinder binder() { return PciDriverBinder(HostPaths::under(fake_.sys(), fake_.proc()), fake_.kernel()); }
    std::string override_file(const std::string& bdf) { return fake_.read(fake_.device_dir(bdf) / "driver_override"); }
    FakeSysfs fake_;
};

TEST_F(VfioBinderTest, ReserveAndReleaseRoundTripRestoresTheHostDriver) {
    auto b = binder();
    const Reservation& r = b.reserve("0000:08:00.1");
    EXPECT_EQ(r.original_driver, "snd_hda_intel");
    EXPECT_EQ(r.original_override, "");
    EXPECT_EQ(fake_.driver_of("0000:08:00.1"), "vfio-pci");
    EXPECT_EQ(override_file("0000:08:00.1"), "vfio-pci\n");
    EXPECT_THAT(fake_.writes(), ElementsAre(W{"bus/pci/devices/0000:08:00.1/driver_override", "vfio-pci"},
                                            W{"bus/pci/drivers/snd_hda_intel/unbind", "0000:08:00.1"},
                                            W{"bus/pci/drivers_probe", "0000:08:00.1"}));
    ASSERT_EQ(b.reservations().count("0000:08:00.1"), 1u);

    b.release("08:00.1");
    EXPECT_EQ(fake_.driver_of("0000:08:00.1"), "snd_hda_intel");
    EXPECT_EQ(override_file("0000:08:00.1"), "(null)\n");
    EXPECT_THAT(std::vector<W>(fake_.writes().begin() + 3, fake_.writes().end()),
                ElementsAre(W{"bus/pci/devices/0000:08:00.1/driver_override", "\n"},
                            W{"bus/pci/drivers/vfio-pci/unbind", "0000:08:00.1"},
                            W{"bus/pci/drivers/snd_hda_intel/bind", "0000:08:00.1"}));
    EXPECT_TRUE(b.reservations().empty());
    EXPECT_THROW(b.release("0000:08:00.1"), Error) << "a second release has nothing to give back";
}

TEST_F(VfioBinderTest, UnboundDeviceGoesBackToNoDriver) {
    auto b = binder();
    fake_.set_native_driver("0000:09:00.1", "");
    b.reserve("0000:09:00.1");
    EXPECT_EQ(fake_.driver_of("0000:09:00.1"), "vfio-pci");
    EXPECT_THAT(fake_.writes(), ElementsAre(W{"bus/pci/devices/0000:09:00.1/driver_override", "vfio-pci"},
                                            W{"bus/pci/drivers_probe", "0000:09:00.1"}));
    b.release("0000:09:00.1");
    EXPECT_EQ(fake_.driver_of("0000:09:00.1"), "");
}

TEST_F(VfioBinderTest, AlreadyOnVfioPciIsLeftAlone) {
    auto b = binder();
    EXPECT_EQ(b.reserve("0000:06:00.0").original_driver, "vfio-pci");
    EXPECT_TRUE(fake_.writes().empty());
    EXPECT_EQ(&b.reserve("0000:06:00.0"), &b.reservations().at("0000:06:00.0"));
    b.release("0000:06:00.0");
    EXPECT_EQ(fake_.driver_of("0000:06:00.0"), "vfio-pci");
}

TEST_F(VfioBinderTest, RefusesBootVgaUnlessForced) {
    auto b = binder();
    try {
        b.reserve("0000:00:02.0");
        FAIL() << "the boot VGA must not be taken without force";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("boot VGA"));
        EXPECT_THAT(e.what(), HasSubstr("force"));
    }
    EXPECT_TRUE(fake_.writes().empty()) << "a refusal touches nothing";
    EXPECT_EQ(fake_.driver_of("0000:00:02.0"), "i915");

    b.reserve("0000:00:02.0", /*force=*/true);
    EXPECT_EQ(fake_.driver_of("0000:00:02.0"), "vfio-pci");
    b.release("0000:00:02.0");
    EXPECT_EQ(fake_.driver_of("0000:00:02.0"), "i915");
}

TEST_F(VfioBinderTest, RefusesDefaultRouteNicAndRootDiskUnlessForced) {
    auto b = binder();
    try {
        b.reserve("0000:07:00.0");
        FAIL() << "the default-route NIC must not be taken without force";
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("default route"));
        EXPECT_THAT(e.what(), HasSubstr("br0"));
    }
    EXPECT_THROW(b.reserve("0000:01:00.0"), Error);
    EXPECT_EQ(fake_.driver_of("0000:01:00.0"), "nvme");
    EXPECT_TRUE(fake_.writes().empty());

    b.reserve("0000:07:00.0", true);
    EXPECT_EQ(fake_.driver_of("0000:07:00.0"), "vfio-pci");
    b.release("0000:07:00.0");
    EXPECT_EQ(fake_.driver_of("0000:07:00.0"), "ixgbe");
}

TEST_F(VfioBinderTest, RefusesBridgesUnknownDevicesAndMissingVfioPci) {
    auto b = binder();
    EXPECT_THROW(b.reserve("0000:00:1c.0"), Error);
    EXPECT_THROW(b.reserve("0000:42:00.0"), Error);
    EXPECT_THROW(b.reserve("bogus"), Error);
    std::filesystem::remove_all(fake_.sys() / "bus/pci/drivers/vfio-pci");
    try {
        b.reserve("0000:08:00.1");
        FAIL();
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("modprobe vfio-pci"));
    }
    EXPECT_EQ(fake_.driver_of("0000:08:00.1"), "snd_hda_intel");
}

TEST_F(VfioBinderTest, FailedBindGivesTheDeviceBack) {
    // A writer that behaves like the kernel except that vfio-pci never binds (as when vfio-pci
    // refuses the device); reserve must notice and restore the host driver.
    auto kernel = fake_.kernel();
    PciDriverBinder b(HostPaths::under(fake_.sys(), fake_.proc()),
                      [&](const std::filesystem::path& p, std::string_view v) {
                          if (p.filename() == "drivers_probe") return;
                          kernel(p, v);
                      });
    try {
        b.reserve("0000:08:00.1");
        FAIL();
    } catch (const Error& e) {
        EXPECT_THAT(e.what(), HasSubstr("vfio-pci did not bind"));
    }
    EXPECT_EQ(fake_.driver_of("0000:08:00.1"), "snd_hda_intel");
    EXPECT_EQ(override_file("0000:08:00.1"), "(null)\n");
    EXPECT_TRUE(b.reservations().empty());
}

TEST(VfioSysfsWriter, ReportsTheKernelsErrorWithThePath) {
    try {
        write_sysfs_attr("/nonexistent-vmm-test/bind", "0000:00:00.0");
        FAIL();
    } catch (const std::system_error& e) {
        EXPECT_EQ(e.code().value(), ENOENT);
        EXPECT_THAT(e.what(), HasSubstr("/nonexistent-vmm-test/bind"));
    }
}

}  // namespace
}  // namespace vmm::vfio
