#include "devicemodel/legacy/serial_16550.h"

#include "common/error.h"
#include "common/log.h"

#include <algorithm>

namespace vmm::legacy {
namespace {

// Register offsets (PC16550D Table 2, "Register Summary"). DLAB = LCR bit 7.
constexpr unsigned kRbrThrDll = 0;
constexpr unsigned kIerDlm = 1;
constexpr unsigned kIirFcr = 2;
constexpr unsigned kLcr = 3;
constexpr unsigned kMcr = 4;
constexpr unsigned kLsr = 5;
constexpr unsigned kMsr = 6;
constexpr unsigned kScr = 7;

// IER: only bits 3..0 exist on the 16550A (Linux's autoconfig checks they alone stick).
constexpr std::uint8_t kIerRdi = 0x01;
constexpr std::uint8_t kIerThri = 0x02;
constexpr std::uint8_t kIerRlsi = 0x04;
constexpr std::uint8_t kIerMsi = 0x08;
constexpr std::uint8_t kIerMask = 0x0f;

// IIR (PC16550D Table 4, "Interrupt Control Functions").
constexpr std::uint8_t kIirNoInt = 0x01;
constexpr std::uint8_t kIirMsi = 0x00;
constexpr std::uint8_t kIirThri = 0x02;
constexpr std::uint8_t kIirRdi = 0x04;
constexpr std::uint8_t kIirRlsi = 0x06;
constexpr std::uint8_t kIirTimeout = 0x0c;
constexpr std::uint8_t kIirFifoEnabled = 0xc0;

// FCR.
constexpr std::uint8_t kFcrEnable = 0x01;
constexpr std::uint8_t kFcrClearRx = 0x02;
constexpr std::uint8_t kFcrTriggerMask = 0xc0;

constexpr std::uint8_t kLcrDlab = 0x80;

// MCR: bits 4..0; bits 7..5 read as 0 on the 16550A.
constexpr std::uint8_t kMcrDtr = 0x01;
constexpr std::uint8_t kMcrRts = 0x02;
constexpr std::uint8_t kMcrOut1 = 0x04;
constexpr std::uint8_t kMcrOut2 = 0x08;
constexpr std::uint8_t kMcrLoop = 0x10;
constexpr std::uint8_t kMcrMask = 0x1f;

// LSR.
constexpr std::uint8_t kLsrDr = 0x01;
constexpr std::uint8_t kLsrOe = 0x02;
constexpr std::uint8_t kLsrThre = 0x20;
constexpr std::uint8_t kLsrTemt = 0x40;

// MSR.
constexpr std::uint8_t kMsrDcts = 0x01;
constexpr std::uint8_t kMsrDdsr = 0x02;
constexpr std::uint8_t kMsrTeri = 0x04;
constexpr std::uint8_t kMsrDdcd = 0x08;
constexpr std::uint8_t kMsrCts = 0x10;
constexpr std::uint8_t kMsrDsr = 0x20;
constexpr std::uint8_t kMsrRi = 0x40;
constexpr std::uint8_t kMsrDcd = 0x80;
// Outside loopback the console is "connected": carrier, data set ready and clear to send.
constexpr std::uint8_t kMsrConnected = kMsrDcd | kMsrDsr | kMsrCts;

}  // namespace

Serial16550::Serial16550(std::shared_ptr<InterruptLine> irq,
                         std::function<void(std::span<const std::uint8_t>)> output)
    : irq_(std::move(irq)), output_(std::move(output)), log_(vmm::logger("serial")) {
    if (!irq_) throw Error("serial: no interrupt line");
}

void Serial16550::read(std::uint64_t offset, std::span<std::uint8_t> data) {
    // The UART is byte-wide: a wider access touches consecutive registers, as ISA bus sizing
    // would split it.
    std::lock_guard lock(mutex_);
    for (std::size_t i = 0; i < data.size(); ++i) {
        const std::uint64_t reg = offset + i;
        data[i] = reg < kPorts ? read_register(static_cast<unsigned>(reg)) : 0xff;
    }
}

void Serial16550::write(std::uint64_t offset, std::span<const std::uint8_t> data) {
    std::vector<std::uint8_t> tx;
    std::lock_guard tx_lock(tx_mutex_);
    {
        std::lock_guard lock(mutex_);
        for (std::size_t i = 0; i < data.size(); ++i) {
            const std::uint64_t reg = offset + i;
            if (reg < kPorts) write_register(static_cast<unsigned>(reg), data[i], tx);
        }
    }
    if (!tx.empty() && output_) output_(tx);
}

std::size_t Serial16550::receive(std::span<const std::uint8_t> bytes) {
    std::lock_guard lock(mutex_);
    // Loopback disconnects the serial input (PC16550D §8.6.5): hold the input back.
    if (mcr_ & kMcrLoop) return 0;
    const std::size_t n = std::min(bytes.size(), kRxCapacity - rx_.size());
    rx_.insert(rx_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    update_irq_locked();
    return n;
}

bool Serial16550::rx_has_room() {
    std::lock_guard lock(mutex_);
    return !(mcr_ & kMcrLoop) && rx_.size() < kRxCapacity;
}

std::uint8_t Serial16550::read_register(unsigned reg) {
    const bool dlab = lcr_ & kLcrDlab;
    switch (reg) {
    case kRbrThrDll:
        if (dlab) return static_cast<std::uint8_t>(divisor_);
        if (!rx_.empty()) {
            rbr_ = rx_.front();
            rx_.pop_front();
            update_irq_locked();
        }
        return rbr_;
    case kIerDlm:
        return dlab ? static_cast<std::uint8_t>(divisor_ >> 8) : ier_;
    case kIirFcr: {
        // IIR is readable whatever DLAB says. Reading it clears a THRE interrupt only when THRE
        // is the source it reports (PC16550D Table 4, "Interrupt Reset Control").
        const std::uint8_t iir = iir_locked();
        if ((iir & 0x0f) == kIirThri) {
            thre_pending_ = false;
            update_irq_locked();
        }
        return iir;
    }
    case kLcr:
        return lcr_;
    case kMcr:
        return mcr_;
    case kLsr: {
        // The transmitter is never busy: THRE and TEMT stay set. Reading LSR clears OE.
        const std::uint8_t lsr = (rx_.empty() ? 0 : kLsrDr) | lsr_errors_ | kLsrThre | kLsrTemt;
        if (lsr_errors_) {
            lsr_errors_ = 0;
            update_irq_locked();
        }
        return lsr;
    }
    case kMsr: {
        const std::uint8_t msr = modem_inputs_locked() | msr_delta_;
        if (msr_delta_) {
            msr_delta_ = 0;
            update_irq_locked();
        }
        return msr;
    }
    case kScr:
        return scr_;
    }
    return 0xff;
}

void Serial16550::write_register(unsigned reg, std::uint8_t value, std::vector<std::uint8_t>& tx) {
    const bool dlab = lcr_ & kLcrDlab;
    switch (reg) {
    case kRbrThrDll:
        if (dlab) {
            divisor_ = static_cast<std::uint16_t>((divisor_ & 0xff00) | value);
            return;
        }
        if (mcr_ & kMcrLoop) {
            // Loopback: the transmitter output feeds the receiver (PC16550D §8.6.5). A full
            // receiver overruns, as it would on hardware.
            if (rx_.size() < kRxCapacity) {
                rx_.push_back(value);
            } else {
                lsr_errors_ |= kLsrOe;
                log_->debug("receiver overrun in loopback");
            }
        } else {
            tx.push_back(value);
        }
        // Writing THR clears the THRE interrupt; the byte leaves at once, so THR is empty again
        // and THRE is re-asserted.
        thre_pending_ = true;
        update_irq_locked();
        return;
    case kIerDlm: {
        if (dlab) {
            divisor_ = static_cast<std::uint16_t>((divisor_ & 0x00ff) | (value << 8));
            return;
        }
        const std::uint8_t old = ier_;
        ier_ = value & kIerMask;
        // Enabling THRI while THR is empty raises THRE at once (16550A behaviour that Linux's
        // UART_BUG_THRE test relies on); disabling it drops the latch.
        if ((ier_ & kIerThri) && !(old & kIerThri)) thre_pending_ = true;
        if (!(ier_ & kIerThri)) thre_pending_ = false;
        update_irq_locked();
        return;
    }
    case kIirFcr: {
        // FCR (PC16550D §8.6.3): FCR0 must be set for the other bits to be programmed; changing
        // FCR0 clears both FIFOs. The transmitter has no FIFO content to clear.
        const bool was_enabled = fcr_ & kFcrEnable;
        if (!(value & kFcrEnable)) {
            if (was_enabled) clear_rx_locked();
            fcr_ = 0;
        } else {
            if (!was_enabled || (value & kFcrClearRx)) clear_rx_locked();
            fcr_ = value & (kFcrEnable | kFcrTriggerMask);
        }
        log_->debug("FCR {:#04x}", value);
        update_irq_locked();
        return;
    }
    case kLcr:
        lcr_ = value;
        return;
    case kMcr:
        set_mcr_locked(value & kMcrMask);
        return;
    case kLsr:
    case kMsr:
        // Read-only status registers (writes are factory-test only on the PC16550D).
        return;
    case kScr:
        scr_ = value;
        return;
    }
}

unsigned Serial16550::rx_trigger_level_locked() const {
    static constexpr unsigned kLevels[4] = {1, 4, 8, 14};  // FCR bits 7:6
    return kLevels[fcr_ >> 6];
}

std::uint8_t Serial16550::iir_locked() const {
    std::uint8_t id = kIirNoInt;
    // Priority (PC16550D Table 4): line status > received data / timeout > THRE > modem status.
    if ((ier_ & kIerRlsi) && lsr_errors_) {
        id = kIirRlsi;
    } else if ((ier_ & kIerRdi) && !rx_.empty()) {
        id = (fcr_ & kFcrEnable) && rx_.size() < rx_trigger_level_locked() ? kIirTimeout : kIirRdi;
    } else if ((ier_ & kIerThri) && thre_pending_) {
        id = kIirThri;
    } else if ((ier_ & kIerMsi) && msr_delta_) {
        id = kIirMsi;
    }
    return static_cast<std::uint8_t>(id | ((fcr_ & kFcrEnable) ? kIirFifoEnabled : 0));
}

void Serial16550::update_irq_locked() {
    // On the PC the INTR pin reaches the PIC through a buffer enabled by OUT2; in loopback the
    // OUT2 pin is forced inactive (PC16550D §8.6.5), which masks the interrupt too.
    const bool level = !(iir_locked() & kIirNoInt) && (mcr_ & kMcrOut2) && !(mcr_ & kMcrLoop);
    if (level == irq_level_) return;
    irq_level_ = level;
    irq_->set_level(level);
}

std::uint8_t Serial16550::modem_inputs_locked() const {
    if (!(mcr_ & kMcrLoop)) return kMsrConnected;
    // Loopback (PC16550D §8.6.5): DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
    std::uint8_t in = 0;
    if (mcr_ & kMcrRts) in |= kMsrCts;
    if (mcr_ & kMcrDtr) in |= kMsrDsr;
    if (mcr_ & kMcrOut1) in |= kMsrRi;
    if (mcr_ & kMcrOut2) in |= kMsrDcd;
    return in;
}

void Serial16550::set_mcr_locked(std::uint8_t mcr) {
    const std::uint8_t before = modem_inputs_locked();
    mcr_ = mcr;
    const std::uint8_t after = modem_inputs_locked();
    const std::uint8_t changed = before ^ after;
    // Delta bits (PC16550D §8.6.8): any change of CTS, DSR, DCD; RI only on its trailing edge.
    if (changed & kMsrCts) msr_delta_ |= kMsrDcts;
    if (changed & kMsrDsr) msr_delta_ |= kMsrDdsr;
    if ((before & kMsrRi) && !(after & kMsrRi)) msr_delta_ |= kMsrTeri;
    if (changed & kMsrDcd) msr_delta_ |= kMsrDdcd;
    update_irq_locked();
}

void Serial16550::clear_rx_locked() {
    rx_.clear();
}

}  // namespace vmm::legacy
