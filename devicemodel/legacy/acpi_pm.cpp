#include "devicemodel/legacy/acpi_pm.h"

#include "common/error.h"
#include "common/log.h"

#include <array>
#include <chrono>

namespace vmm::legacy {

namespace {

constexpr std::uint16_t kStatusW1c = AcpiPm::kTmrSts | AcpiPm::kBmSts | AcpiPm::kGblSts | AcpiPm::kPwrbtnSts |
                                     AcpiPm::kSlpbtnSts | AcpiPm::kRtcSts | AcpiPm::kPciexpWakeSts | AcpiPm::kWakSts;
constexpr std::uint16_t kEnableBits = AcpiPm::kTmrEn | AcpiPm::kGblEn | AcpiPm::kPwrbtnEn | AcpiPm::kSlpbtnEn |
                                      AcpiPm::kRtcEn | AcpiPm::kPciexpWakeDis;
// Bits of PM1_CNT that hold state (SLP_EN and GBL_RLS are write-only strobes, SCI_EN is fixed).
constexpr std::uint16_t kControlStored = AcpiPm::kBmRld | AcpiPm::kSlpTypMask;
constexpr std::uint64_t kTimerToggleBit = 23;  // TMR_STS: set when bit 23 of the counter toggles

}  // namespace

std::uint64_t AcpiPm::steady_clock_ns() {
    return static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
            .count());
}

AcpiPm::AcpiPm(std::shared_ptr<InterruptLine> sci, std::function<void()> on_poweroff, Clock clock)
    : sci_(std::move(sci)), on_poweroff_(std::move(on_poweroff)), clock_(std::move(clock)),
      log_(vmm::logger("acpi-pm")) {
    if (!sci_) throw Error("AcpiPm: the SCI interrupt line is null");
    if (!clock_) throw Error("AcpiPm: the clock is empty");
    start_ns_ = clock_();
}

std::uint64_t AcpiPm::ticks_locked() {
    const std::uint64_t now = clock_();
    const std::uint64_t ns = now > start_ns_ ? now - start_ns_ : 0;
    // ns * kTimerHz / 1e9 without overflowing 64 bits: whole seconds, then the remainder.
    constexpr std::uint64_t kNsPerSec = 1'000'000'000;
    return ns / kNsPerSec * kTimerHz + ns % kNsPerSec * kTimerHz / kNsPerSec;
}

std::uint32_t AcpiPm::timer_value() {
    std::lock_guard lock(mutex_);
    return static_cast<std::uint32_t>(ticks_locked() & kTimerMask);
}

std::uint16_t AcpiPm::status_locked() {
    std::uint16_t s = status_;
    if ((ticks_locked() >> kTimerToggleBit) != (tmr_cleared_ticks_ >> kTimerToggleBit)) s |= kTmrSts;
    return s;
}

void AcpiPm::update_sci_locked() {
    const bool level = (status_locked() & enable_) != 0;
    if (level == sci_level_) return;
    sci_level_ = level;
    sci_->set_level(level);
}

void AcpiPm::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    std::lock_guard lock(mutex_);
    const std::uint16_t sts = status_locked();
    const auto tmr = static_cast<std::uint32_t>(ticks_locked() & kTimerMask);
    const std::uint16_t cnt = static_cast<std::uint16_t>(control_ | kSciEn);
    const std::array<std::uint8_t, kPorts> image{
        std::uint8_t(sts),         std::uint8_t(sts >> 8),         std::uint8_t(enable_), std::uint8_t(enable_ >> 8),
        std::uint8_t(cnt),         std::uint8_t(cnt >> 8),         0,                     0,
        std::uint8_t(tmr),         std::uint8_t(tmr >> 8),         std::uint8_t(tmr >> 16), std::uint8_t(tmr >> 24)};
    for (std::size_t i = 0; i < data.size(); ++i) {
        const std::uint64_t off = offset + i;
        data[i] = off < kPorts ? image[off] : 0xff;
    }
    // A status read may be the first to see TMR_STS: keep the SCI level in step.
    update_sci_locked();
}

void AcpiPm::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    bool poweroff = false;
    {
        std::lock_guard lock(mutex_);
        for (std::uint64_t reg : {kPm1StatusOffset, kPm1EnableOffset, kPm1ControlOffset}) {
            std::uint16_t value = 0, mask = 0;
            for (std::size_t i = 0; i < data.size(); ++i) {
                const std::uint64_t off = offset + i;
                if (off < reg || off >= reg + 2) continue;
                const unsigned shift = unsigned(8 * (off - reg));
                value |= std::uint16_t(data[i] << shift);
                mask |= std::uint16_t(0xff << shift);
            }
            if (mask) poweroff |= write_register_locked(reg, value, mask);
        }
        update_sci_locked();
    }
    if (poweroff) {
        log_->info("guest entered S5 (soft off)");
        if (on_poweroff_) on_poweroff_();
    }
}

bool AcpiPm::write_register_locked(std::uint64_t reg_offset, std::uint16_t value, std::uint16_t mask) {
    value &= mask;
    if (reg_offset == kPm1StatusOffset) {
        const std::uint16_t clear = value & kStatusW1c;
        if (clear & kTmrSts) tmr_cleared_ticks_ = ticks_locked();
        status_ &= std::uint16_t(~clear);
        return false;
    }
    if (reg_offset == kPm1EnableOffset) {
        const std::uint16_t m = mask & kEnableBits;
        enable_ = std::uint16_t((enable_ & ~m) | (value & m));
        return false;
    }
    // PM1_CNT.
    const std::uint16_t m = mask & kControlStored;
    control_ = std::uint16_t((control_ & ~m) | (value & m));
    if (!(value & kSlpEn)) return false;
    const unsigned typ = (control_ & kSlpTypMask) >> kSlpTypShift;
    if (typ == kS5SlpTyp) return true;
    if (!warned_sleep_.exchange(true)) log_->warn("guest asked for sleep type {} (only S5 = {} is supported); ignored", typ, kS5SlpTyp);
    return false;
}

bool AcpiPm::press_power_button() {
    std::lock_guard lock(mutex_);
    status_ |= kPwrbtnSts;
    update_sci_locked();
    return (enable_ & kPwrbtnEn) != 0;
}

}  // namespace vmm::legacy
