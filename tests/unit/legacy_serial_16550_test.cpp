#include "devicemodel/legacy/serial_16550.h"

#include "tests/support/fakes.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace vmm::legacy {
namespace {

// Register offsets and bits, spelled as in Linux's include/uapi/linux/serial_reg.h.
constexpr unsigned RX = 0, TX = 0, DLL = 0, DLM = 1, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5,
                   MSR = 6, SCR = 7;
constexpr std::uint8_t IER_RDI = 0x01, IER_THRI = 0x02, IER_RLSI = 0x04, IER_MSI = 0x08;
constexpr std::uint8_t MCR_DTR = 0x01, MCR_RTS = 0x02, MCR_OUT1 = 0x04, MCR_OUT2 = 0x08, MCR_LOOP = 0x10;
constexpr std::uint8_t LSR_DR = 0x01, LSR_OE = 0x02, LSR_THRE = 0x20, LSR_TEMT = 0x40;

class Serial16550Test : public ::testing::Test {
protected:
    std::uint8_t rd(unsigned reg) {
        std::uint8_t v = 0;
        uart.read(reg, std::span(&v, 1));
        return v;
    }
    void wr(unsigned reg, std::uint8_t v) { uart.write(reg, std::span<const std::uint8_t>(&v, 1)); }
    std::size_t rx(const std::string& s) {
        return uart.receive(std::span(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()));
    }

    std::shared_ptr<test::FakeInterruptLine> irq = std::make_shared<test::FakeInterruptLine>();
    std::string out;
    Serial16550 uart{irq, [this](std::span<const std::uint8_t> b) { out.append(b.begin(), b.end()); }};
};

TEST_F(Serial16550Test, NullInterruptLineIsASetupError) {
    EXPECT_THROW(Serial16550(nullptr, {}), std::exception);
}

TEST_F(Serial16550Test, ResetState) {
    EXPECT_EQ(rd(IER), 0);
    EXPECT_EQ(rd(IIR), 0x01);
    EXPECT_EQ(rd(LSR), LSR_THRE | LSR_TEMT);
    EXPECT_EQ(rd(MCR), 0);
    EXPECT_EQ(rd(MSR) & 0xf0, 0xb0);  // DCD, DSR, CTS: a console is attached
    EXPECT_FALSE(irq->level);
}

// The sequence of drivers/tty/serial/8250/8250_port.c autoconfig() and autoconfig_16550a().
TEST_F(Serial16550Test, LinuxAutoconfigProbeFinds16550A) {
    // Scratch register.
    wr(SCR, 0xa5);
    EXPECT_EQ(rd(SCR), 0xa5);
    wr(SCR, 0x5a);
    EXPECT_EQ(rd(SCR), 0x5a);

    // IER: bits 3..0 and nothing else stick.
    wr(IER, 0);
    EXPECT_EQ(rd(IER) & 0x0f, 0);
    wr(IER, 0x0f);
    EXPECT_EQ(rd(IER) & 0x0f, 0x0f);
    wr(IER, 0xff);
    EXPECT_EQ(rd(IER), 0x0f);
    wr(IER, 0);

    // Loopback test: MSR reflects RTS->CTS and OUT2->DCD.
    const std::uint8_t save_mcr = rd(MCR);
    wr(MCR, MCR_LOOP | 0x0a);
    EXPECT_EQ(rd(MSR) & 0xf0, 0x90);
    wr(MCR, 0x1f);
    EXPECT_EQ(rd(MSR) & 0xf0, 0xf0);
    wr(MCR, MCR_LOOP);
    EXPECT_EQ(rd(MSR) & 0xf0, 0x00);
    wr(MCR, save_mcr);
    EXPECT_EQ(rd(MCR), save_mcr);

    // FIFO: IIR bits 7:6 == 3 means 16550A.
    wr(FCR, 0x01);
    EXPECT_EQ(rd(IIR) >> 6, 3);
    // 16750 test: FCR7_64BYTE must not show as IIR bit 5.
    wr(FCR, 0x21);
    EXPECT_EQ((rd(IIR) >> 5) & 1, 0);
    // EFR probe at LCR 0xbf reads IIR on a 16550A, which is never 0.
    wr(LCR, 0xbf);
    EXPECT_NE(rd(IIR), 0);
    wr(LCR, 0x03);
    wr(FCR, 0);
    EXPECT_EQ(rd(IIR) >> 6, 0);
    // No output was produced by the probe.
    EXPECT_TRUE(out.empty());
}

TEST_F(Serial16550Test, MsrDeltaBitsInLoopback) {
    wr(MCR, MCR_LOOP);
    rd(MSR);  // clear the deltas of entering loopback
    EXPECT_EQ(rd(MSR), 0);
    wr(MCR, MCR_LOOP | MCR_DTR);
    EXPECT_EQ(rd(MSR), 0x20 | 0x02);  // DSR, DDSR
    EXPECT_EQ(rd(MSR), 0x20);          // read cleared the delta
    wr(MCR, MCR_LOOP | MCR_DTR | MCR_OUT1);
    EXPECT_EQ(rd(MSR), 0x60);          // RI rising: no TERI
    wr(MCR, MCR_LOOP | MCR_DTR);
    EXPECT_EQ(rd(MSR), 0x20 | 0x04);  // RI trailing edge: TERI
    wr(MCR, MCR_LOOP | MCR_DTR | MCR_RTS | MCR_OUT2);
    EXPECT_EQ(rd(MSR), 0xb0 | 0x01 | 0x08);  // CTS, DCD and their deltas
}

TEST_F(Serial16550Test, DivisorLatch) {
    wr(IER, IER_RDI);
    wr(LCR, 0x80 | 0x03);
    EXPECT_EQ(rd(DLL), 12);  // 9600 baud at reset
    EXPECT_EQ(rd(DLM), 0);
    wr(DLL, 0x01);  // 115200
    wr(DLM, 0x02);
    EXPECT_EQ(rd(DLL), 0x01);
    EXPECT_EQ(rd(DLM), 0x02);
    EXPECT_EQ(rd(LCR), 0x83);
    wr(LCR, 0x03);
    // DLAB clear: the same offsets are THR/RBR and IER again, untouched by the latch writes.
    EXPECT_EQ(rd(IER), IER_RDI);
    EXPECT_TRUE(out.empty());
    wr(LCR, 0x80);
    EXPECT_EQ(rd(DLL), 0x01);
    EXPECT_EQ(rd(DLM), 0x02);
}

TEST_F(Serial16550Test, TransmitGoesToOutputImmediately) {
    for (char c : std::string("hello\n")) wr(TX, static_cast<std::uint8_t>(c));
    EXPECT_EQ(out, "hello\n");
    EXPECT_EQ(rd(LSR) & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
    EXPECT_EQ(rd(LSR) & LSR_DR, 0);  // nothing echoed into the receiver
}

TEST_F(Serial16550Test, LoopbackFeedsTheReceiverNotTheOutput) {
    wr(MCR, MCR_LOOP);
    wr(TX, 'x');
    wr(TX, 'y');
    EXPECT_TRUE(out.empty());
    EXPECT_EQ(rd(LSR) & LSR_DR, LSR_DR);
    EXPECT_EQ(rd(RX), 'x');
    EXPECT_EQ(rd(RX), 'y');
    EXPECT_EQ(rd(LSR) & LSR_DR, 0);
    EXPECT_EQ(rd(RX), 'y');  // an empty RBR keeps its last byte
    // Serial input is disconnected in loopback: the console must retry later.
    EXPECT_EQ(rx("a"), 0u);
    EXPECT_FALSE(uart.rx_has_room());
    wr(MCR, 0);
    EXPECT_TRUE(uart.rx_has_room());
    EXPECT_EQ(rx("a"), 1u);
}

TEST_F(Serial16550Test, ThreInterruptRaiseAndClear) {
    wr(MCR, MCR_OUT2);
    EXPECT_FALSE(irq->level);
    // Enabling THRI with THR empty raises THRE at once.
    wr(IER, IER_THRI);
    EXPECT_TRUE(irq->level);
    EXPECT_EQ(irq->triggers, 1);
    // Reading IIR when THRE is the source clears it.
    EXPECT_EQ(rd(IIR), 0x02);
    EXPECT_FALSE(irq->level);
    EXPECT_EQ(rd(IIR), 0x01);
    // A THR write: the byte leaves, THR is empty again, THRE pending again.
    wr(TX, 'a');
    EXPECT_TRUE(irq->level);
    EXPECT_EQ(irq->triggers, 2);
    EXPECT_EQ(out, "a");
    // Writing THR while THRE is pending clears and re-asserts it: the line stays up.
    wr(TX, 'b');
    EXPECT_TRUE(irq->level);
    EXPECT_EQ(rd(IIR), 0x02);
    // Disabling THRI drops it.
    wr(TX, 'c');
    wr(IER, 0);
    EXPECT_FALSE(irq->level);
    EXPECT_EQ(rd(IIR), 0x01);
    // Linux's UART_BUG_THRE test: IER=THRI, read IIR, IER=0, IER=THRI, read IIR: both pending.
    wr(IER, IER_THRI);
    EXPECT_EQ(rd(IIR) & 0x01, 0);
    wr(IER, 0);
    wr(IER, IER_THRI);
    EXPECT_EQ(rd(IIR) & 0x01, 0);
    // With FIFOs on, IIR carries 0xc0.
    wr(FCR, 0x01);
    wr(TX, 'd');
    EXPECT_EQ(rd(IIR), 0xc2);
    EXPECT_EQ(rd(IIR), 0xc1);
}

TEST_F(Serial16550Test, ThreNotPendingWithoutThri) {
    wr(MCR, MCR_OUT2);
    wr(TX, 'a');
    EXPECT_FALSE(irq->level);
    EXPECT_EQ(rd(IIR), 0x01);
}

TEST_F(Serial16550Test, ReceiveRaisesDataInterrupt) {
    wr(MCR, MCR_OUT2);
    wr(IER, IER_RDI);
    EXPECT_FALSE(irq->level);
    EXPECT_EQ(rx("ab"), 2u);
    EXPECT_TRUE(irq->level);
    EXPECT_EQ(rd(IIR), 0x04);
    EXPECT_EQ(rd(LSR) & LSR_DR, LSR_DR);
    EXPECT_EQ(rd(RX), 'a');
    EXPECT_TRUE(irq->level);
    EXPECT_EQ(rd(RX), 'b');
    EXPECT_FALSE(irq->level);
    EXPECT_EQ(rd(IIR), 0x01);
    EXPECT_EQ(rd(LSR) & LSR_DR, 0);
}

TEST_F(Serial16550Test, FifoTriggerLevelAndTimeout) {
    wr(MCR, MCR_OUT2);
    wr(FCR, 0x41);  // enable, trigger at 4 bytes
    wr(IER, IER_RDI);
    rx("ab");
    EXPECT_TRUE(irq->level);
    EXPECT_EQ(rd(IIR), 0xcc);  // below the trigger level: character timeout
    rx("cd");
    EXPECT_EQ(rd(IIR), 0xc4);  // at the trigger level: received data available
    // FCR "clear RX FIFO" empties the receiver.
    wr(FCR, 0x43);
    EXPECT_EQ(rd(LSR) & LSR_DR, 0);
    EXPECT_FALSE(irq->level);
    // Turning the FIFOs off clears them too.
    rx("e");
    wr(FCR, 0x00);
    EXPECT_EQ(rd(LSR) & LSR_DR, 0);
    EXPECT_EQ(rd(IIR), 0x01);
}

TEST_F(Serial16550Test, InterruptPriority) {
    // Fill the receiver, then overrun it through loopback: OE, data, THRE and a modem status
    // change (entering loopback) are all pending at once.
    EXPECT_EQ(uart.receive(std::vector<std::uint8_t>(Serial16550::kRxCapacity, 'z')), Serial16550::kRxCapacity);
    wr(IER, IER_RDI | IER_THRI | IER_RLSI | IER_MSI);
    wr(MCR, MCR_LOOP);
    wr(TX, 'o');
    EXPECT_EQ(rd(IIR), 0x06);  // line status first
    EXPECT_EQ(rd(LSR) & (LSR_OE | LSR_DR), LSR_OE | LSR_DR);
    EXPECT_EQ(rd(LSR) & LSR_OE, 0);  // reading LSR cleared OE
    EXPECT_EQ(rd(IIR), 0x04);        // then received data
    for (std::size_t i = 0; i < Serial16550::kRxCapacity; ++i) ASSERT_EQ(rd(RX), 'z');
    EXPECT_EQ(rd(IIR), 0x02);  // then THRE, cleared by this read
    EXPECT_EQ(rd(IIR), 0x00);  // then modem status
    rd(MSR);
    EXPECT_EQ(rd(IIR), 0x01);
}

TEST_F(Serial16550Test, Out2GatesTheInterrupt) {
    wr(IER, IER_RDI);
    rx("a");
    EXPECT_EQ(rd(IIR), 0x04);
    EXPECT_FALSE(irq->level);  // pending, but OUT2 is off
    wr(MCR, MCR_OUT2 | MCR_DTR | MCR_RTS);
    EXPECT_TRUE(irq->level);
    wr(MCR, MCR_DTR | MCR_RTS);
    EXPECT_FALSE(irq->level);
    wr(MCR, MCR_OUT2);
    EXPECT_TRUE(irq->level);
    // Loopback forces the OUT2 pin inactive.
    wr(MCR, MCR_OUT2 | MCR_LOOP);
    EXPECT_FALSE(irq->level);
    wr(MCR, MCR_OUT2);
    EXPECT_TRUE(irq->level);
    rd(RX);
    EXPECT_FALSE(irq->level);
}

TEST_F(Serial16550Test, ReceiveBufferIsBoundedAndNeverDrops) {
    std::vector<std::uint8_t> big(Serial16550::kRxCapacity + 100);
    for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::uint8_t>(i);
    EXPECT_EQ(uart.receive(big), Serial16550::kRxCapacity);
    EXPECT_FALSE(uart.rx_has_room());
    EXPECT_EQ(rx("x"), 0u);
    EXPECT_EQ(rd(RX), 0);
    EXPECT_TRUE(uart.rx_has_room());
    // The caller retries with what was not taken.
    EXPECT_EQ(uart.receive(std::span(big).subspan(Serial16550::kRxCapacity)), 1u);
    for (std::size_t i = 1; i <= Serial16550::kRxCapacity; ++i) ASSERT_EQ(rd(RX), static_cast<std::uint8_t>(i));
    EXPECT_EQ(rd(LSR) & (LSR_DR | LSR_OE), 0);
}

TEST_F(Serial16550Test, WideAccessTouchesConsecutiveRegisters) {
    const std::uint8_t two[2] = {'q', IER_RDI};
    uart.write(TX, two);
    EXPECT_EQ(out, "q");
    std::uint8_t r[2] = {};
    uart.read(LSR, r);
    EXPECT_EQ(r[0], LSR_THRE | LSR_TEMT);
    EXPECT_EQ(r[1] & 0xf0, 0xb0);
    std::uint8_t past[2] = {};
    uart.read(SCR, past);
    EXPECT_EQ(past[1], 0xff);
}

TEST(Serial16550Standalone, OutputCallbackMayCallReceive) {
    auto irq = std::make_shared<test::FakeInterruptLine>();
    Serial16550* self = nullptr;
    Serial16550 uart(irq, [&](std::span<const std::uint8_t> b) { self->receive(b); });  // echo
    self = &uart;
    const std::uint8_t c = 'e';
    uart.write(TX, std::span(&c, 1));
    std::uint8_t v = 0;
    uart.read(RX, std::span(&v, 1));
    EXPECT_EQ(v, 'e');
}

TEST(Serial16550Standalone, ConcurrentWritersAndReceiver) {
    auto irq = std::make_shared<test::FakeInterruptLine>();
    std::atomic<std::size_t> sent{0};
    Serial16550 uart(irq, [&](std::span<const std::uint8_t> b) { sent += b.size(); });
    const std::uint8_t ier = IER_RDI | IER_THRI, mcr = MCR_OUT2;
    uart.write(IER, std::span(&ier, 1));
    uart.write(MCR, std::span(&mcr, 1));
    constexpr int kPerThread = 2000;
    std::vector<std::thread> vcpus;
    for (int t = 0; t < 3; ++t) {
        vcpus.emplace_back([&] {
            for (int i = 0; i < kPerThread; ++i) {
                const std::uint8_t c = 'a';
                uart.write(TX, std::span(&c, 1));
                std::uint8_t v[2];
                uart.read(IIR, std::span(v, 1));
                uart.read(RX, std::span(v, 1));
            }
        });
    }
    std::size_t accepted = 0;
    std::thread console([&] {
        const std::uint8_t in[8] = {1, 2, 3, 4, 5, 6, 7, 8};
        for (int i = 0; i < kPerThread; ++i) accepted += uart.receive(in);
    });
    for (auto& t : vcpus) t.join();
    console.join();
    EXPECT_EQ(sent, 3u * kPerThread);
    EXPECT_GT(accepted, 0u);
}

}  // namespace
}  // namespace vmm::legacy
