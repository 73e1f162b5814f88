#include "devicemodel/bus/io_bus.h"

#include "common/error.h"

#include <gtest/gtest.h>

namespace vmm {
namespace {

class Recorder : public BusDevice {
public:
    void read(std::uint64_t offset, std::span<std::uint8_t> data) override { set_bus_value(data, 0x1000 + offset); }
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override {
        last_offset = offset;
        last_value = bus_value(data);
        last_size = data.size();
    }
    std::uint64_t last_offset = ~0ull, last_value = 0;
    std::size_t last_size = 0;
};

TEST(IoBusTest, DispatchesWithOffsetsInsideTheRange) {
    IoBus bus("pio");
    auto dev = std::make_shared<Recorder>();
    bus.insert(0x3f8, 8, dev);
    std::uint8_t b[2];
    ASSERT_TRUE(bus.read(0x3fa, b));
    EXPECT_EQ(b[0] | (b[1] << 8), 0x1002);
    const std::uint8_t w[4] = {1, 2, 3, 4};
    ASSERT_TRUE(bus.write(0x3fc, w));
    EXPECT_EQ(dev->last_offset, 4u);
    EXPECT_EQ(dev->last_value, 0x04030201u);
    EXPECT_EQ(dev->last_size, 4u);
}

TEST(IoBusTest, AccessStraddlingTheEndMissesAndReadsAllOnes) {
    IoBus bus("pio");
    bus.insert(0x60, 1, std::make_shared<Recorder>());
    std::uint8_t b[2] = {0, 0};
    EXPECT_FALSE(bus.read(0x60, b));
    EXPECT_EQ(b[0], 0xff);
    EXPECT_EQ(b[1], 0xff);
    EXPECT_FALSE(bus.read(0x5f, std::span<std::uint8_t>(b, 1)));
}

TEST(IoBusTest, OverlapsAreRefusedAndRemoveWorks) {
    IoBus bus("mmio");
    bus.insert(0x1000, 0x100, std::make_shared<Recorder>());
    EXPECT_THROW(bus.insert(0x10ff, 1, std::make_shared<Recorder>()), Error);
    EXPECT_THROW(bus.insert(0xf00, 0x101, std::make_shared<Recorder>()), Error);
    EXPECT_THROW(bus.insert(0x2000, 0, std::make_shared<Recorder>()), Error);
    bus.insert(0x1100, 0x100, std::make_shared<Recorder>());  // adjacent is fine
    EXPECT_TRUE(bus.remove(0x1000));
    EXPECT_FALSE(bus.remove(0x1000));
    std::uint8_t b[1];
    EXPECT_FALSE(bus.read(0x1000, b));
    bus.insert(0x1000, 0x100, std::make_shared<Recorder>());
}

}  // namespace
}  // namespace vmm
