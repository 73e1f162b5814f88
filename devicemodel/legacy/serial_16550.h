// Serial16550: an NS16550A UART (8 ports; the anchor maps it at 0x3f8, IRQ 4), as Linux's 8250
// driver and SeaBIOS program it. Register descriptions: TI PC16550D datasheet (SNLS378C) §8.6.
//
// Callers and threads:
//   read()/write()      vCPU threads, possibly concurrently.
//   receive()/rx_has_room()  the console's thread (never a vCPU thread).
//   `output` is called on the vCPU thread that wrote THR, one call per byte, in order; it must not
//   block (buffering is the console layer's job) and must not write to this device's THR.
//   It may call receive(). The interrupt line is driven while the device lock is held.
//
// Deviations from the silicon, all invisible to the 8250 driver:
//   - Transmission is instantaneous: THRE and TEMT are always set, and a THR write is followed at
//     once by a THRE interrupt (when enabled).
//   - The receiver is a host-side queue of kRxCapacity bytes in both FIFO and 16450 mode; input
//     from the console is back-pressured (receive() returns how much it took), never dropped.
//     Only loopback data can overrun it (LSR.OE), as a guest-caused overrun would on hardware.
//   - Below the FIFO trigger level the character-timeout interrupt (IIR 0x0C) is reported at once
//     instead of after four character times.
#pragma once

#include "common/log.h"
#include "devicemodel/bus/bus_device.h"
#include "devicemodel/bus/interrupt_line.h"


#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

namespace vmm::legacy {

class Serial16550 : public BusDevice {
public:
    static constexpr std::size_t kRxCapacity = 4096;
    static constexpr std::uint64_t kPorts = 8;

    // `irq` must not be null (throws vmm::Error). `output` may be empty (bytes are discarded).
    Serial16550(std::shared_ptr<InterruptLine> irq, std::function<void(std::span<const std::uint8_t>)> output);

    void read(std::uint64_t offset, std::span<std::uint8_t> data) override;
    void write(std::uint64_t offset, std::span<const std::uint8_t> data) override;

    // Queues host input for the guest; returns how many leading bytes were accepted (0 when the
    // queue is full or the UART is in loopback, where the serial input is disconnected).
    std::size_t receive(std::span<const std::uint8_t> bytes);
    bool rx_has_room();

private:
    // One byte-wide register access; the lock is held. A THR byte to transmit is appended to
    // `tx` (sent after the lock is dropped).
    std::uint8_t read_register(unsigned reg);
    void write_register(unsigned reg, std::uint8_t value, std::vector<std::uint8_t>& tx);

    std::uint8_t iir_locked() const;  // pending-interrupt identification, by priority
    void update_irq_locked();
    // Modem-status inputs (MSR bits 7..4) as the UART sees them: the MCR outputs in loopback.
    std::uint8_t modem_inputs_locked() const;
    void set_mcr_locked(std::uint8_t mcr);
    void clear_rx_locked();
    unsigned rx_trigger_level_locked() const;

    std::shared_ptr<InterruptLine> irq_;
    std::function<void(std::span<const std::uint8_t>)> output_;
    std::shared_ptr<spdlog::logger> log_;

    // tx_mutex_ (taken first) keeps output bytes in THR-write order across vCPUs while the
    // callback runs without mutex_, so a callback may call receive().
    std::mutex tx_mutex_;
    std::mutex mutex_;
    std::deque<std::uint8_t> rx_;
    std::uint8_t rbr_ = 0;  // last byte read: RBR keeps it when the receiver is empty
    std::uint8_t ier_ = 0;
    std::uint8_t fcr_ = 0;  // bits 0 (FIFO enable) and 7:6 (trigger level) as last written
    std::uint8_t lcr_ = 0x03;
    std::uint8_t mcr_ = 0;
    std::uint8_t lsr_errors_ = 0;  // OE; cleared by reading LSR
    std::uint8_t msr_delta_ = 0;   // MSR bits 3..0; cleared by reading MSR
    std::uint8_t scr_ = 0;
    std::uint16_t divisor_ = 12;  // 9600 baud from the 1.8432 MHz PC clock
    bool thre_pending_ = false;   // THRE interrupt latch (PC16550D Table 4)
    bool irq_level_ = false;
};

}  // namespace vmm::legacy
