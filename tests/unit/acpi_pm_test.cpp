// AcpiPm, the ACPI fixed-feature registers: power button -> SCI, write-1-to-clear, S5 entry,
// the PM timer, on a fake SCI line and a fake clock.
#include "devicemodel/legacy/acpi_pm.h"

#include "common/error.h"
#include "tests/support/fakes.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

namespace vmm::legacy {
namespace {

class AcpiPmTest : public ::testing::Test {
protected:
    AcpiPmTest()
        : sci_(std::make_shared<test::FakeInterruptLine>()),
          pm_(sci_, [this] { ++poweroffs_; }, [this] { return now_ns_.load(); }) {}

    std::uint64_t rd(std::uint64_t offset, std::size_t bytes) {
        std::array<std::uint8_t, 8> b{};
        pm_.read(offset, std::span(b.data(), bytes));
        return bus_value(std::span<const std::uint8_t>(b.data(), bytes));
    }
    void wr(std::uint64_t offset, std::size_t bytes, std::uint64_t v) {
        std::array<std::uint8_t, 8> b{};
        set_bus_value(std::span(b.data(), bytes), v);
        pm_.write(offset, std::span<const std::uint8_t>(b.data(), bytes));
    }
    // One tick of the 3.579545 MHz timer is ~279.4 ns.
    void advance_ticks(std::uint64_t ticks) { now_ns_ += (ticks * 1'000'000'000ull + AcpiPm::kTimerHz - 1) / AcpiPm::kTimerHz; }

    std::atomic<std::uint64_t> now_ns_{5'000'000'000ull};  // any epoch: the timer starts at 0
    std::shared_ptr<test::FakeInterruptLine> sci_;
    std::atomic<int> poweroffs_{0};
    AcpiPm pm_;
};

TEST_F(AcpiPmTest, ResetState) {
    EXPECT_EQ(rd(AcpiPm::kPm1StatusOffset, 2), 0u);
    EXPECT_EQ(rd(AcpiPm::kPm1EnableOffset, 2), 0u);
    EXPECT_EQ(rd(AcpiPm::kPm1ControlOffset, 2), AcpiPm::kSciEn) << "ACPI mode is fixed: SCI_EN reads 1";
    EXPECT_EQ(rd(AcpiPm::kPmTimerOffset, 4), 0u);
    EXPECT_EQ(rd(6, 2), 0u);
    EXPECT_EQ(rd(12, 1), 0xffu) << "past the block";
    EXPECT_FALSE(sci_->level);
}

TEST_F(AcpiPmTest, PowerButtonRaisesSciOnlyWhenEnabled) {
    EXPECT_FALSE(pm_.press_power_button()) << "no OS listening yet";
    EXPECT_EQ(rd(0, 2) & AcpiPm::kPwrbtnSts, AcpiPm::kPwrbtnSts);
    EXPECT_FALSE(sci_->level) << "PWRBTN_EN is clear";

    // The OS enables the event: the pending status now asserts the SCI.
    wr(AcpiPm::kPm1EnableOffset, 2, AcpiPm::kPwrbtnEn);
    EXPECT_TRUE(sci_->level);
    EXPECT_EQ(sci_->triggers, 1);

    // Writing 0 to the status bit leaves it; writing 1 clears it and drops the SCI.
    wr(0, 2, 0);
    EXPECT_TRUE(sci_->level);
    wr(0, 2, AcpiPm::kPwrbtnSts);
    EXPECT_EQ(rd(0, 2) & AcpiPm::kPwrbtnSts, 0u);
    EXPECT_FALSE(sci_->level);

    // A second press with the event enabled: SCI at once.
    EXPECT_TRUE(pm_.press_power_button());
    EXPECT_TRUE(sci_->level);
    EXPECT_EQ(sci_->triggers, 2);
    // Disabling the event also drops the line, the status stays latched.
    wr(AcpiPm::kPm1EnableOffset, 2, 0);
    EXPECT_FALSE(sci_->level);
    EXPECT_EQ(rd(0, 2) & AcpiPm::kPwrbtnSts, AcpiPm::kPwrbtnSts);
    EXPECT_EQ(poweroffs_, 0);
}

TEST_F(AcpiPmTest, DwordWriteOfEventBlockClearsStatusAndSetsEnable) {
    pm_.press_power_button();
    // One 32-bit write covering STS (low half, W1C) and EN (high half), as a guest may do.
    wr(0, 4, (std::uint32_t(AcpiPm::kPwrbtnEn) << 16) | AcpiPm::kPwrbtnSts);
    EXPECT_EQ(rd(0, 4), std::uint32_t(AcpiPm::kPwrbtnEn) << 16);
    EXPECT_FALSE(sci_->level);
    // Byte access to the high byte of PM1_EN only.
    wr(3, 1, 0);
    EXPECT_EQ(rd(2, 2), 0u);
}

TEST_F(AcpiPmTest, S5WritePowersOff) {
    const std::uint16_t typ = std::uint16_t(AcpiPm::kS5SlpTyp << AcpiPm::kSlpTypShift);
    // ACPICA writes SLP_TYP first, then SLP_TYP | SLP_EN (hwsleep.c): only the second is the request.
    wr(AcpiPm::kPm1ControlOffset, 2, typ);
    EXPECT_EQ(poweroffs_, 0);
    EXPECT_EQ(rd(AcpiPm::kPm1ControlOffset, 2), typ | AcpiPm::kSciEn);
    wr(AcpiPm::kPm1ControlOffset, 2, typ | AcpiPm::kSlpEn);
    EXPECT_EQ(poweroffs_, 1);
    EXPECT_EQ(rd(AcpiPm::kPm1ControlOffset, 2) & AcpiPm::kSlpEn, 0u) << "SLP_EN is write-only";
}

TEST_F(AcpiPmTest, S5WriteAsTwoBytes) {
    const std::uint16_t v = std::uint16_t((AcpiPm::kS5SlpTyp << AcpiPm::kSlpTypShift) | AcpiPm::kSlpEn);
    wr(AcpiPm::kPm1ControlOffset, 1, v & 0xff);
    EXPECT_EQ(poweroffs_, 0);
    wr(AcpiPm::kPm1ControlOffset + 1, 1, v >> 8);
    EXPECT_EQ(poweroffs_, 1);
}

TEST_F(AcpiPmTest, OtherSleepTypesDoNotPowerOff) {
    for (unsigned typ = 0; typ < 8; ++typ) {
        if (typ == AcpiPm::kS5SlpTyp) continue;
        wr(AcpiPm::kPm1ControlOffset, 2, (typ << AcpiPm::kSlpTypShift) | AcpiPm::kSlpEn);
        EXPECT_EQ(poweroffs_, 0) << "SLP_TYP " << typ;
    }
    // SCI_EN cannot be cleared.
    wr(AcpiPm::kPm1ControlOffset, 2, 0);
    EXPECT_EQ(rd(AcpiPm::kPm1ControlOffset, 2), AcpiPm::kSciEn);
}

TEST_F(AcpiPmTest, TimerCountsAt3579545HzAndWrapsAt24Bits) {
    EXPECT_EQ(rd(AcpiPm::kPmTimerOffset, 4), 0u);
    now_ns_ += 1'000'000'000ull;  // one second
    EXPECT_EQ(rd(AcpiPm::kPmTimerOffset, 4), AcpiPm::kTimerHz);
    EXPECT_EQ(pm_.timer_value(), AcpiPm::kTimerHz);
    // Byte reads assemble the same value.
    EXPECT_EQ(rd(AcpiPm::kPmTimerOffset + 2, 1), (AcpiPm::kTimerHz >> 16) & 0xff);
    // Writes are ignored.
    wr(AcpiPm::kPmTimerOffset, 4, 0);
    EXPECT_EQ(rd(AcpiPm::kPmTimerOffset, 4), AcpiPm::kTimerHz);

    // Monotonic (mod 2^24) over many steps, including a wrap: ~4.69 s per period.
    std::uint32_t prev = pm_.timer_value();
    std::uint64_t total = 0;
    for (int i = 0; i < 2000; ++i) {
        now_ns_ += 7'654'321;  // ~27398 ticks
        const std::uint32_t v = pm_.timer_value();
        EXPECT_LE(v, AcpiPm::kTimerMask);
        const std::uint32_t delta = (v - prev) & AcpiPm::kTimerMask;
        EXPECT_GT(delta, 27000u);
        EXPECT_LT(delta, 27500u);
        total += delta;
        prev = v;
    }
    EXPECT_GT(total, std::uint64_t(AcpiPm::kTimerMask)) << "the loop must have crossed a wrap";
}

TEST_F(AcpiPmTest, TimerNoOverflowAfterDays) {
    now_ns_ += 10ull * 24 * 3600 * 1'000'000'000ull;  // ten days: ns * Hz overflows 64 bits
    const std::uint64_t expect = (10ull * 24 * 3600 * AcpiPm::kTimerHz) & AcpiPm::kTimerMask;
    EXPECT_EQ(pm_.timer_value(), expect);
}

TEST_F(AcpiPmTest, TimerStatusSetsOnBit23ToggleAndClears) {
    EXPECT_EQ(rd(0, 2) & AcpiPm::kTmrSts, 0u);
    advance_ticks((1u << 23) - 10);
    EXPECT_EQ(rd(0, 2) & AcpiPm::kTmrSts, 0u);
    advance_ticks(20);
    EXPECT_EQ(rd(0, 2) & AcpiPm::kTmrSts, AcpiPm::kTmrSts);
    EXPECT_FALSE(sci_->level) << "TMR_EN clear";
    wr(AcpiPm::kPm1EnableOffset, 2, AcpiPm::kTmrEn);
    EXPECT_TRUE(sci_->level);
    wr(0, 2, AcpiPm::kTmrSts);
    EXPECT_EQ(rd(0, 2) & AcpiPm::kTmrSts, 0u);
    EXPECT_FALSE(sci_->level);
    advance_ticks(1u << 23);
    EXPECT_EQ(rd(0, 2) & AcpiPm::kTmrSts, AcpiPm::kTmrSts);
    EXPECT_TRUE(sci_->level);
}

TEST_F(AcpiPmTest, WakeStatusIsWriteOneToClearOnly) {
    // Nothing sets WAK_STS here (no sleep states but S5); writes of 1 must not set it.
    wr(0, 2, AcpiPm::kWakSts);
    EXPECT_EQ(rd(0, 2) & AcpiPm::kWakSts, 0u);
}

TEST_F(AcpiPmTest, NullSciThrows) {
    EXPECT_THROW(AcpiPm(nullptr, [] {}), Error);
}

// The power button pressed from the main thread while vCPU threads poll and clear the status:
// the final line level must match the final register state (run under TSan/ASan for races).
TEST_F(AcpiPmTest, ConcurrentPressAndClear) {
    wr(AcpiPm::kPm1EnableOffset, 2, AcpiPm::kPwrbtnEn);
    std::atomic<bool> stop{false};
    std::vector<std::thread> vcpus;
    for (int t = 0; t < 2; ++t) {
        vcpus.emplace_back([&] {
            while (!stop) {
                if (rd(0, 2) & AcpiPm::kPwrbtnSts) wr(0, 2, AcpiPm::kPwrbtnSts);
            }
        });
    }
    for (int i = 0; i < 2000; ++i) pm_.press_power_button();
    stop = true;
    for (auto& t : vcpus) t.join();
    const bool pending = (rd(0, 2) & AcpiPm::kPwrbtnSts) != 0;
    EXPECT_EQ(sci_->level.load(), pending);
    if (pending) wr(0, 2, AcpiPm::kPwrbtnSts);
    EXPECT_FALSE(sci_->level);
}

}  // namespace
}  // namespace vmm::legacy
