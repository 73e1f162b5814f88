#include "devicemodel/legacy/pvpanic.h"

#include <gtest/gtest.h>

#include <vector>

namespace vmm::legacy {
namespace {

class PvpanicTest : public ::testing::Test {
protected:
    void wr(std::uint8_t v) { dev.write(0, std::span<const std::uint8_t>(&v, 1)); }
    std::vector<std::uint8_t> events;
    Pvpanic dev{[this](std::uint8_t e) { events.push_back(e); }};
};

TEST_F(PvpanicTest, ReadReturnsSupportedEvents) {
    std::uint8_t v = 0;
    dev.read(0, std::span(&v, 1));
    EXPECT_EQ(v, 0x03);  // PANICKED | CRASH_LOADED
}

TEST_F(PvpanicTest, PanickedCallsOnEvent) {
    wr(0x01);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0], Pvpanic::kPanicked);
}

TEST_F(PvpanicTest, CrashLoadedIsReportedToo) {
    // Linux writes CRASH_LOADED instead of PANICKED when a kdump kernel is loaded.
    wr(0x02);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0], Pvpanic::kCrashLoaded);
}

TEST_F(PvpanicTest, UnknownBitsAreMaskedOrIgnored) {
    wr(0x00);
    wr(0x04);
    wr(0xf0);
    EXPECT_TRUE(events.empty());
    wr(0x05);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0], Pvpanic::kPanicked);
}

TEST_F(PvpanicTest, OtherOffsetsIgnored) {
    const std::uint8_t v = 1;
    dev.write(1, std::span(&v, 1));
    EXPECT_TRUE(events.empty());
    std::uint8_t r[2] = {};
    dev.read(0, r);
    EXPECT_EQ(r[0], 0x03);
    EXPECT_EQ(r[1], 0xff);
}

}  // namespace
}  // namespace vmm::legacy
