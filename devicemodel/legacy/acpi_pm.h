// AcpiPm: the ACPI fixed-feature hardware registers of a PC that is not hardware-reduced
// (ACPI 6.4 §4.8): the PM1a event block (status + enable), the PM1a control block and the
// 24-bit ACPI PM timer, in one 12-port block (the anchor maps it at 0x600, the FADT describes
// it; x86/acpi/tables.cpp takes the offsets below):
//   +0  PM1a_STS  16 bits, write 1 to clear   (§4.8.3.1.1, Table 4.16)
//   +2  PM1a_EN   16 bits                     (§4.8.3.1.2, Table 4.17)
//   +4  PM1a_CNT  16 bits                     (§4.8.3.2.1, Table 4.18)
//   +6  (unused: reads 0, writes dropped)
//   +8  PM_TMR    32 bits, read-only, 24 significant bits at 3.579545 MHz (§4.8.3.3)
// Any access width and alignment works (bytes are assembled little-endian); ports past the
// block read all-ones.
//
// SCI: a level interrupt, asserted while (PM1_STS & PM1_EN) has a bit set (§4.8.3.1).
// Sources: the fixed power button (press_power_button, what QMP system_powerdown does) and
// TMR_STS (set whenever timer bit 23 toggles). TMR_STS is evaluated when the registers are
// accessed, so with TMR_EN set the SCI rises at the next access rather than at the toggle
// itself; Linux never enables the timer event (it uses the timer as a clocksource only).
// PM1_CNT: SCI_EN always reads 1 (ACPI mode is fixed: the FADT has no SMI_CMD). Writing SLP_EN
// with SLP_TYP == kS5SlpTyp (what the DSDT's \_S5 announces) is the soft-off request and calls
// `on_poweroff`; any other sleep type is logged and ignored (the guest keeps running, as if it
// woke at once). SLP_EN and GBL_RLS read 0.
//
// Threads: read()/write() on vCPU threads, press_power_button() on the anchor's main thread,
// all at once: one mutex guards the registers. The SCI line is driven with that mutex held
// (InterruptLine implementations are thread-safe and do not call back into the device).
// `on_poweroff` runs on the writing vCPU thread after the lock is dropped; it must only request
// the stop, not tear down the VM inline. `clock` (monotonic nanoseconds) is called with the
// lock held, from any of those threads.
#pragma once

#include "common/log.h"
#include "devicemodel/bus/bus_device.h"
#include "devicemodel/bus/interrupt_line.h"


#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>

namespace vmm::legacy {

class AcpiPm : public BusDevice {
public:
    static constexpr std::uint64_t kPorts = 12;
    // Register offsets and lengths, as the FADT announces them.
    static constexpr std::uint64_t kPm1EventOffset = 0;
    static constexpr std::uint8_t kPm1EventLength = 4;  // STS (2) + EN (2)
    static constexpr std::uint64_t kPm1StatusOffset = 0;
    static constexpr std::uint64_t kPm1EnableOffset = 2;
    static constexpr std::uint64_t kPm1ControlOffset = 4;
    static constexpr std::uint8_t kPm1ControlLength = 2;
    static constexpr std::uint64_t kPmTimerOffset = 8;
    static constexpr std::uint8_t kPmTimerLength = 4;
    static constexpr std::uint64_t kTimerHz = 3579545;
    static constexpr std::uint32_t kTimerMask = 0xffffff;  // 24 bits: FADT TMR_VAL_EXT clear

    // PM1_STS bits (Table 4.16).
    static constexpr std::uint16_t kTmrSts = 1u << 0;
    static constexpr std::uint16_t kBmSts = 1u << 4;
    static constexpr std::uint16_t kGblSts = 1u << 5;
    static constexpr std::uint16_t kPwrbtnSts = 1u << 8;
    static constexpr std::uint16_t kSlpbtnSts = 1u << 9;
    static constexpr std::uint16_t kRtcSts = 1u << 10;
    static constexpr std::uint16_t kPciexpWakeSts = 1u << 14;
    static constexpr std::uint16_t kWakSts = 1u << 15;
    // PM1_EN bits (Table 4.17).
    static constexpr std::uint16_t kTmrEn = 1u << 0;
    static constexpr std::uint16_t kGblEn = 1u << 5;
    static constexpr std::uint16_t kPwrbtnEn = 1u << 8;
    static constexpr std::uint16_t kSlpbtnEn = 1u << 9;
    static constexpr std::uint16_t kRtcEn = 1u << 10;
    static constexpr std::uint16_t kPciexpWakeDis = 1u << 14;
    // PM1_CNT bits (Table 4.18).
    static constexpr std::uint16_t kSciEn = 1u << 0;
    static constexpr std::uint16_t kBmRld = 1u << 1;
    static constexpr std::uint16_t kGblRls = 1u << 2;
    static constexpr unsigned kSlpTypShift = 10;
    static constexpr std::uint16_t kSlpTypMask = 7u << kSlpTypShift;
    static constexpr std::uint16_t kSlpEn = 1u << 13;

    // The SLP_TYP value of S5 (soft off) on this platform; the DSDT's \_S5 package holds it.
    // Not 0, so a PM1_CNT write of zeros plus SLP_EN is not a power-off.
    static constexpr std::uint8_t kS5SlpTyp = 5;

    // Monotonic time in nanoseconds (any epoch).
    using Clock = std::function<std::uint64_t()>;
    static std::uint64_t steady_clock_ns();

    // `sci` must not be null (throws vmm::Error). The timer counts from 0 at construction.
    AcpiPm(std::shared_ptr<InterruptLine> sci, std::function<void()> on_poweroff, Clock clock = &steady_clock_ns);

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    // The fixed power button was pressed: sets PWRBTN_STS (SCI if the guest enabled
    // PWRBTN_EN). Returns whether PWRBTN_EN was set, i.e. whether a guest OS is listening.
    bool press_power_button();

    // The 24-bit timer value now (what PM_TMR reads).
    std::uint32_t timer_value();

private:
    std::uint64_t ticks_locked();  // timer ticks since construction, not wrapped
    std::uint16_t status_locked();
    void update_sci_locked();
    // Applies a write of `value` to the bytes of 16-bit register `reg_offset` in `mask`;
    // returns true when it is the S5 request.
    bool write_register_locked(std::uint64_t reg_offset, std::uint16_t value, std::uint16_t mask);

    std::shared_ptr<InterruptLine> sci_;
    std::function<void()> on_poweroff_;
    Clock clock_;
    std::shared_ptr<spdlog::logger> log_;

    std::mutex mutex_;
    std::uint64_t start_ns_;
    std::uint16_t status_ = 0;   // latched status bits except TMR_STS
    std::uint16_t enable_ = 0;
    std::uint16_t control_ = kSciEn;
    std::uint64_t tmr_cleared_ticks_ = 0;  // tick count when TMR_STS was last cleared
    bool sci_level_ = false;
    std::atomic<bool> warned_sleep_{false};
};

}  // namespace vmm::legacy
