#include "devicemodel/legacy/i8042.h"

#include <gtest/gtest.h>

namespace vmm::legacy {
namespace {

constexpr std::uint64_t DATA = I8042::kDataOffset, CMD = I8042::kCommandOffset;
constexpr std::uint8_t STR_OBF = 0x01, STR_IBF = 0x02, STR_SYS = 0x04, STR_CMDDAT = 0x08, STR_AUXDATA = 0x20;

class I8042Test : public ::testing::Test {
protected:
    std::uint8_t rd(std::uint64_t off) {
        std::uint8_t v = 0;
        kbc.read(off, std::span(&v, 1));
        return v;
    }
    void wr(std::uint64_t off, std::uint8_t v) { kbc.write(off, std::span<const std::uint8_t>(&v, 1)); }
    // A controller command with a response, as Linux's i8042_command() issues it.
    std::uint8_t command_response(std::uint8_t cmd) {
        wr(CMD, cmd);
        EXPECT_TRUE(rd(CMD) & STR_OBF);
        return rd(DATA);
    }

    int resets = 0;
    I8042 kbc{[this] { ++resets; }};
};

TEST_F(I8042Test, StatusWithNoKeyboard) {
    const std::uint8_t s = rd(CMD);
    EXPECT_EQ(s & STR_OBF, 0);  // nothing to read
    EXPECT_EQ(s & STR_IBF, 0);  // ready for commands
    EXPECT_EQ(s & STR_SYS, STR_SYS);
    EXPECT_NE(s, 0xff);  // Linux's i8042_flush treats 0xff as "no controller"
}

TEST_F(I8042Test, OtherOffsetsAreNotPartOfIt) {
    for (std::uint64_t off = 1; off <= 3; ++off) EXPECT_EQ(rd(off), 0xff) << off;
    wr(1, 0x00);  // port 0x61 writes go nowhere
    EXPECT_EQ(resets, 0);
}

TEST_F(I8042Test, PulseResetCommand) {
    // Linux's BOOT_KBD path: wait for IBF clear, then 0xfe.
    EXPECT_EQ(rd(CMD) & STR_IBF, 0);
    wr(CMD, 0xfe);
    EXPECT_EQ(resets, 1);
    wr(CMD, 0xff);  // pulses no line
    EXPECT_EQ(resets, 1);
    wr(CMD, 0xf0);  // pulses bits 3..0 including reset
    EXPECT_EQ(resets, 2);
}

TEST_F(I8042Test, OutputPortResetBit) {
    EXPECT_EQ(command_response(0xd0) & 0x03, 0x03);  // reset line high, A20 on
    wr(CMD, 0xd1);
    wr(DATA, 0x03);
    EXPECT_EQ(resets, 0);
    wr(CMD, 0xd1);
    wr(DATA, 0x02);  // bit 0 clear: CPU reset
    EXPECT_EQ(resets, 1);
    EXPECT_EQ(command_response(0xd0) & 0x01, 0x01);  // reset line released again
}

TEST_F(I8042Test, CommandByteReadWrite) {
    const std::uint8_t ctr = command_response(0x20);
    EXPECT_EQ(ctr & 0x04, 0x04);  // system flag
    EXPECT_EQ(rd(CMD) & STR_OBF, 0);  // reading the data port emptied the buffer
    wr(CMD, 0x60);
    EXPECT_EQ(rd(CMD) & STR_CMDDAT, STR_CMDDAT);
    wr(DATA, 0x65);
    EXPECT_EQ(rd(CMD) & STR_CMDDAT, 0);
    EXPECT_EQ(command_response(0x20), 0x65);
    // The status system flag follows CTR bit 2.
    wr(CMD, 0x60);
    wr(DATA, 0x61);
    EXPECT_EQ(rd(CMD) & STR_SYS, 0);
    EXPECT_EQ(resets, 0);
}

TEST_F(I8042Test, SelfTest) {
    wr(CMD, 0x60);
    wr(DATA, 0x00);
    EXPECT_EQ(command_response(0xaa), 0x55);
    EXPECT_EQ(rd(CMD) & STR_SYS, STR_SYS);
    EXPECT_EQ(command_response(0xab), 0x00);  // keyboard interface test
}

TEST_F(I8042Test, EnableDisablePorts) {
    wr(CMD, 0xad);
    EXPECT_EQ(command_response(0x20) & 0x10, 0x10);
    wr(CMD, 0xae);
    EXPECT_EQ(command_response(0x20) & 0x10, 0x00);
    wr(CMD, 0xa7);
    EXPECT_EQ(command_response(0x20) & 0x20, 0x20);
    wr(CMD, 0xa8);
    EXPECT_EQ(command_response(0x20) & 0x20, 0x00);
}

TEST_F(I8042Test, AuxLoopbackMarksAuxData) {
    wr(CMD, 0xd3);
    wr(DATA, 0x5a);
    const std::uint8_t s = rd(CMD);
    EXPECT_EQ(s & (STR_OBF | STR_AUXDATA), STR_OBF | STR_AUXDATA);
    EXPECT_EQ(rd(DATA), 0x5a);
    EXPECT_EQ(rd(CMD) & (STR_OBF | STR_AUXDATA), 0);
}

TEST_F(I8042Test, DataForAbsentKeyboardIsDropped) {
    wr(DATA, 0xf2);  // GET ID
    EXPECT_EQ(rd(CMD) & STR_OBF, 0);
    EXPECT_EQ(resets, 0);
}

TEST_F(I8042Test, NewCommandAbortsPendingOne) {
    wr(CMD, 0xd1);
    wr(CMD, 0x20);  // the 0xd1 never gets its byte
    rd(DATA);
    wr(DATA, 0x00);  // a keyboard byte, not an output-port write
    EXPECT_EQ(resets, 0);
}

}  // namespace
}  // namespace vmm::legacy
