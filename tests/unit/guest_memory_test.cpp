#include "devicemodel/bus/guest_memory.h"

#include "common/error.h"
#include "tests/support/fakes.h"

#include <gtest/gtest.h>

#include <limits>

namespace vmm {
namespace {

using test::FakeGuestMemory;

TEST(GuestMemoryTest, SpanInsideOneRegion) {
    FakeGuestMemory fake({{0, 0x1000}, {0x10000, 0x1000}});
    const GuestMemory& m = fake;
    ASSERT_TRUE(m.span(0, 0x1000));
    ASSERT_TRUE(m.span(0x10ff0, 0x10));
    EXPECT_EQ(m.total_size(), 0x2000u);
}

TEST(GuestMemoryTest, RejectsHolesEdgesAndOverflow) {
    FakeGuestMemory fake({{0, 0x1000}, {0x10000, 0x1000}});
    const GuestMemory& m = fake;
    EXPECT_FALSE(m.span(0x1000, 1)) << "first byte of the hole";
    EXPECT_FALSE(m.span(0xfff, 2)) << "crosses the end of a region";
    EXPECT_FALSE(m.span(0xf000, 0x2000)) << "starts in a hole, ends in RAM";
    EXPECT_FALSE(m.span(0x10000, 0x1001));
    EXPECT_FALSE(m.span(0x10800, std::numeric_limits<std::uint64_t>::max())) << "length wraps";
    EXPECT_FALSE(m.span(std::numeric_limits<std::uint64_t>::max(), 1));
    EXPECT_FALSE(m.span(0x20000, 0));
    std::uint32_t v = 0;
    EXPECT_FALSE(m.read(0xffe, &v, 4));
    EXPECT_FALSE(m.write(0xffe, &v, 4));
}

TEST(GuestMemoryTest, ReadWriteRoundTrip) {
    FakeGuestMemory fake({{0x1000, 0x1000}});
    const GuestMemory& m = fake;
    ASSERT_TRUE(m.write_obj<std::uint64_t>(0x1ff8, 0x1122334455667788ull));
    EXPECT_EQ(m.read_obj<std::uint64_t>(0x1ff8).value(), 0x1122334455667788ull);
    EXPECT_FALSE(m.read_obj<std::uint64_t>(0x1ffc).has_value());
}

TEST(GuestMemoryTest, OverlappingRegionsAreRefused) {
    std::vector<std::uint8_t> a(0x2000), b(0x1000);
    EXPECT_THROW(GuestMemory({{0, 0x2000, a.data()}, {0x1000, 0x1000, b.data()}}), Error);
    EXPECT_THROW(GuestMemory({{0, 0, a.data()}}), Error);
}

TEST(GuestMemoryTest, OrThrowVariantsNameTheRange) {
    FakeGuestMemory fake({{0, 0x1000}});
    try {
        fake.memory().span_or_throw(0x2000, 4, "kernel");
        FAIL();
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("kernel"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("0x2000"), std::string::npos);
    }
}

}  // namespace
}  // namespace vmm
