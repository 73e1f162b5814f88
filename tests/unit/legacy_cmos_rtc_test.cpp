#include "devicemodel/legacy/cmos_rtc.h"

#include <gtest/gtest.h>

namespace vmm::legacy {
namespace {

constexpr std::uint64_t kMiB = 1024 * 1024;
constexpr std::uint64_t kGiB = 1024 * kMiB;
constexpr std::time_t k20261123_123456 = 1795437296;  // Monday, UTC

class CmosRtcTest : public ::testing::Test {
protected:
    std::uint8_t rd(std::uint8_t index) { return rd(rtc, index); }
    static std::uint8_t rd(CmosRtc& dev, std::uint8_t index) {
        dev.write(0, std::span<const std::uint8_t>(&index, 1));
        std::uint8_t v = 0;
        dev.read(1, std::span(&v, 1));
        return v;
    }
    void wr(std::uint8_t index, std::uint8_t v) {
        rtc.write(0, std::span<const std::uint8_t>(&index, 1));
        rtc.write(1, std::span<const std::uint8_t>(&v, 1));
    }
    std::uint16_t rd16(CmosRtc& dev, std::uint8_t lo) {
        return static_cast<std::uint16_t>(rd(dev, lo) | (rd(dev, static_cast<std::uint8_t>(lo + 1)) << 8));
    }

    std::time_t now = k20261123_123456;
    CmosRtc rtc{128 * kMiB, 0, 2, [this] { return now; }};
};

TEST_F(CmosRtcTest, TimeInBcd) {
    EXPECT_EQ(rd(0x00), 0x56);
    EXPECT_EQ(rd(0x02), 0x34);
    EXPECT_EQ(rd(0x04), 0x12);
    EXPECT_EQ(rd(0x06), 0x02);  // Monday; Sunday = 1
    EXPECT_EQ(rd(0x07), 0x23);
    EXPECT_EQ(rd(0x08), 0x11);
    EXPECT_EQ(rd(0x09), 0x26);
    EXPECT_EQ(rd(0x32), 0x20);
    now += 3;
    EXPECT_EQ(rd(0x00), 0x59);
}

TEST_F(CmosRtcTest, TimeInBinary) {
    wr(0x0b, 0x06);  // DM binary, 24h
    EXPECT_EQ(rd(0x00), 56);
    EXPECT_EQ(rd(0x02), 34);
    EXPECT_EQ(rd(0x04), 12);
    EXPECT_EQ(rd(0x06), 2);
    EXPECT_EQ(rd(0x07), 23);
    EXPECT_EQ(rd(0x08), 11);
    EXPECT_EQ(rd(0x09), 26);
    EXPECT_EQ(rd(0x32), 20);
}

TEST_F(CmosRtcTest, TwelveHourMode) {
    wr(0x0b, 0x00);  // BCD, 12h
    EXPECT_EQ(rd(0x04), 0x92);  // 12 PM
    now += 3600;
    EXPECT_EQ(rd(0x04), 0x81);  // 1 PM
    now -= 13 * 3600;
    EXPECT_EQ(rd(0x04), 0x12);  // 00:34 = 12 AM
    wr(0x0b, 0x04);  // binary, 12h
    now += 13 * 3600;  // 13:34
    EXPECT_EQ(rd(0x04), 0x81);
}

TEST_F(CmosRtcTest, StatusRegisters) {
    EXPECT_EQ(rd(0x0a), 0x26);
    EXPECT_EQ(rd(0x0a) & 0x80, 0);  // UIP never stuck
    wr(0x0a, 0xa0);                 // UIP is read-only; divider bits stick
    EXPECT_EQ(rd(0x0a), 0x20);
    EXPECT_EQ(rd(0x0b), 0x02);
    EXPECT_EQ(rd(0x0c), 0x00);
    EXPECT_EQ(rd(0x0d), 0x80);
    wr(0x0d, 0x00);
    EXPECT_EQ(rd(0x0d), 0x80);
    wr(0x0c, 0xff);
    EXPECT_EQ(rd(0x0c), 0x00);
}

TEST_F(CmosRtcTest, SetBitFreezesAndGuestSetsTime) {
    wr(0x0b, 0x82 | 0x10);  // SET (+ UIE, which SET clears)
    EXPECT_EQ(rd(0x0b), 0x82);
    now += 10;
    EXPECT_EQ(rd(0x00), 0x56);  // frozen
    // The guest writes 2000-01-01 23:59:50, then releases SET.
    wr(0x00, 0x50);
    wr(0x02, 0x59);
    wr(0x04, 0x23);
    wr(0x07, 0x01);
    wr(0x08, 0x01);
    wr(0x09, 0x00);
    wr(0x32, 0x20);
    wr(0x0b, 0x02);
    EXPECT_EQ(rd(0x00), 0x50);
    now += 15;  // runs on from there: 2000-01-02 00:00:05, a Sunday
    EXPECT_EQ(rd(0x00), 0x05);
    EXPECT_EQ(rd(0x02), 0x00);
    EXPECT_EQ(rd(0x04), 0x00);
    EXPECT_EQ(rd(0x06), 0x01);
    EXPECT_EQ(rd(0x07), 0x02);
    EXPECT_EQ(rd(0x08), 0x01);
    EXPECT_EQ(rd(0x09), 0x00);
    EXPECT_EQ(rd(0x32), 0x20);
}

TEST_F(CmosRtcTest, WriteToRunningClockTakesEffect) {
    wr(0x02, 0x00);  // minutes := 00
    EXPECT_EQ(rd(0x02), 0x00);
    EXPECT_EQ(rd(0x04), 0x12);
    now += 60;
    EXPECT_EQ(rd(0x02), 0x01);
    EXPECT_EQ(rd(0x00), 0x56);
}

TEST_F(CmosRtcTest, IndexNmiBitIgnoredAndIndexPortReadsFloat) {
    EXPECT_EQ(rd(0x80), 0x56);  // NMI-disable bit + seconds
    std::uint8_t v = 0;
    rtc.read(0, std::span(&v, 1));
    EXPECT_EQ(v, 0xff);
}

TEST_F(CmosRtcTest, NvramIsStorage) {
    wr(0x40, 0xa5);
    wr(0x7f, 0x5a);
    wr(0x01, 0x30);  // alarm seconds
    EXPECT_EQ(rd(0x40), 0xa5);
    EXPECT_EQ(rd(0x7f), 0x5a);
    EXPECT_EQ(rd(0x01), 0x30);
    EXPECT_EQ(rd(0x41), 0x00);
}

TEST_F(CmosRtcTest, MemoryRegisters128MiB) {
    EXPECT_EQ(rd16(rtc, 0x15), 640);
    EXPECT_EQ(rd16(rtc, 0x17), 0xffff);  // 127 MiB above 1 MiB, in KiB, capped at 0xffff
    EXPECT_EQ(rd16(rtc, 0x30), 0xffff);
    EXPECT_EQ(rd16(rtc, 0x34), 112 * 16);  // 64 KiB units above 16 MiB
    EXPECT_EQ(rd(0x5b), 0);
    EXPECT_EQ(rd(0x5c), 0);
    EXPECT_EQ(rd(0x5d), 0);
    EXPECT_EQ(rd(0x5f), 1);  // 2 vCPUs
}

TEST_F(CmosRtcTest, MemoryRegisters32MiB) {
    CmosRtc small(32 * kMiB, 0, 1, [this] { return now; });
    EXPECT_EQ(rd16(small, 0x17), 31 * 1024);  // KiB above 1 MiB, below the cap
    EXPECT_EQ(rd16(small, 0x30), 31 * 1024);
    EXPECT_EQ(rd16(small, 0x34), 16 * 16);
    EXPECT_EQ(rd(small, 0x5f), 0);
}

TEST_F(CmosRtcTest, MemoryRegisters5GiB) {
    CmosRtc big(3 * kGiB, 2 * kGiB, 8, [this] { return now; });
    EXPECT_EQ(rd16(big, 0x15), 640);
    EXPECT_EQ(rd16(big, 0x17), 0xffff);  // capped
    EXPECT_EQ(rd16(big, 0x30), 0xffff);
    EXPECT_EQ(rd16(big, 0x34), (3072 - 16) * 16);
    EXPECT_EQ(rd(big, 0x5b), 0x00);  // 2 GiB / 64 KiB = 0x8000
    EXPECT_EQ(rd(big, 0x5c), 0x80);
    EXPECT_EQ(rd(big, 0x5d), 0x00);
    EXPECT_EQ(rd(big, 0x5f), 7);
}

TEST_F(CmosRtcTest, SmallAndOddConfigurations) {
    CmosRtc tiny(512 * 1024, 0, 300, [this] { return now; });
    EXPECT_EQ(rd16(tiny, 0x15), 512);
    EXPECT_EQ(rd16(tiny, 0x17), 0);
    EXPECT_EQ(rd16(tiny, 0x34), 0);
    EXPECT_EQ(rd(tiny, 0x5f), 0xff);  // capped
    EXPECT_THROW(CmosRtc(128 * kMiB, 0, 0), std::exception);
}

TEST(CmosRtcStandalone, DefaultClockIsRealTime) {
    CmosRtc rtc(64 * kMiB, 0, 1);
    const std::uint8_t idx = 0x32;
    rtc.write(0, std::span(&idx, 1));
    std::uint8_t v = 0;
    rtc.read(1, std::span(&v, 1));
    EXPECT_EQ(v, 0x20);  // 21st century
}

}  // namespace
}  // namespace vmm::legacy
