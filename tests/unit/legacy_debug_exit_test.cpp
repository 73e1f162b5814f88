#include "devicemodel/legacy/debug_exit.h"

#include <gtest/gtest.h>

#include <cstring>
#include <optional>

namespace vmm::legacy {
namespace {

class DebugExitTest : public ::testing::Test {
protected:
    void wr(std::uint64_t off, std::uint64_t v, std::size_t width) {
        std::uint8_t b[8];
        set_bus_value(std::span(b, width), v);
        dev.write(off, std::span<const std::uint8_t>(b, width));
    }
    std::optional<int> status;
    int calls = 0;
    DebugExit dev{[this](int s) {
        status = s;
        ++calls;
    }};
};

TEST_F(DebugExitTest, ByteWriteExitsWithShiftedStatus) {
    wr(0, 0x00, 1);
    EXPECT_EQ(status, 1);
    wr(0, 0x10, 1);
    EXPECT_EQ(status, 0x21);
    wr(0, 0xff, 1);
    EXPECT_EQ(status, 0x1ff);
    EXPECT_EQ(calls, 3);
}

TEST_F(DebugExitTest, WordAndDwordWrites) {
    wr(0, 0x1234, 2);
    EXPECT_EQ(status, 0x2469);
    wr(0, 0x12345678, 4);
    EXPECT_EQ(status, 0x2468acf1);
    wr(0, 0xffffffff, 4);
    EXPECT_EQ(status, -1);  // 0x1ffffffff truncated to 32 bits
}

TEST_F(DebugExitTest, OtherOffsetsAndWidthsIgnored) {
    wr(1, 0x01, 1);
    wr(2, 0x01, 2);
    wr(0, 0x01, 8);
    wr(0, 0x01, 3);
    EXPECT_EQ(calls, 0);
}

TEST_F(DebugExitTest, ReadsAllOnes) {
    std::uint8_t b[4] = {};
    dev.read(0, b);
    EXPECT_EQ(bus_value(b), 0xffffffffu);
    EXPECT_EQ(calls, 0);
}

TEST(DebugExitStandalone, EmptyCallbackIsHarmless) {
    DebugExit dev{{}};
    const std::uint8_t v = 3;
    dev.write(0, std::span(&v, 1));
}

}  // namespace
}  // namespace vmm::legacy
