#include "devicemodel/bus/guest_memory.h"

#include "common/error.h"
#include "tests/support/fakes.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <limits>
#include <thread>

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

// A ring index the other side is writing is read whole: a read_obj racing with the driver's
// 16-bit store returns the old value or the new one, never the new high byte with the old low
// one (glibc copies 2 bytes as two single bytes: a counter crossing a multiple of 256 read ~255
// ahead, which made a device see an avail idx more than the queue size ahead). Same for
// write_obj's stores, read by a plain 16-bit load. The writer stores values whose two bytes are
// equal (0x0101, 0x0202, ...), so any torn read shows two different bytes.
TEST(GuestMemoryTest, AnIndexWrittenConcurrentlyIsNeverReadTorn) {
    FakeGuestMemory fake({{0, 0x1000}});
    const GuestMemory& m = fake;
    auto* host = m.span(0x802, 2)->data();
    ASSERT_EQ(reinterpret_cast<std::uintptr_t>(host) % 2, 0u);
    for (const bool through_write_obj : {false, true}) {
        ASSERT_TRUE(m.write_obj<std::uint16_t>(0x802, 0));
        std::atomic<bool> done{false};
        std::thread driver([&] {
            for (unsigned i = 1; !done.load(std::memory_order_relaxed); ++i) {
                const auto v = static_cast<std::uint16_t>((i & 0xff) * 0x0101);
                if (through_write_obj)
                    m.write_obj<std::uint16_t>(0x802, v);
                else
                    __atomic_store_n(reinterpret_cast<std::uint16_t*>(host), v, __ATOMIC_RELEASE);  // a guest's mov
            }
        });
        unsigned torn = 0, reads = 0;
        std::uint16_t example = 0;
        for (const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(150);
             std::chrono::steady_clock::now() < end;) {
            std::uint16_t v;
            if (through_write_obj)
                v = __atomic_load_n(reinterpret_cast<const std::uint16_t*>(host), __ATOMIC_ACQUIRE);
            else
                v = *m.read_obj<std::uint16_t>(0x802);
            if ((v >> 8) != (v & 0xff)) {
                ++torn;
                example = v;
            }
            ++reads;
        }
        done = true;
        driver.join();
        EXPECT_EQ(torn, 0u) << (through_write_obj ? "write_obj" : "read_obj") << ": " << torn << " of " << reads
                            << " reads torn, e.g. " << std::hex << example;
    }
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
