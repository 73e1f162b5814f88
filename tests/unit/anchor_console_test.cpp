// Console and ConsoleLog without a VM: a pty nobody reads never blocks the writer, a client
// attaching later gets what was kept, and the log file is capped and rotated.
#include "anchor/console.h"
#include "anchor/console_log.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace vmm::anchor {
namespace {

std::string slurp(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::span<const std::uint8_t> bytes(const std::string& s) {
    return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

class ConsoleTest : public ::testing::Test {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/console_test.XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::filesystem::path dir_;
};

TEST_F(ConsoleTest, LogKeepsEverythingUpToTheCapThenRotates) {
    ConsoleLog log((dir_ / "console.log").string(), 100);
    std::string first(60, 'a'), second(60, 'b'), third(30, 'c');
    log.append(bytes(first));
    log.append(bytes(second));  // 40 fit, then rotation, 20 in the new file
    EXPECT_EQ(slurp((dir_ / "console.log.0").string()), first + std::string(40, 'b'));
    EXPECT_EQ(slurp((dir_ / "console.log").string()), std::string(20, 'b'));
    log.append(bytes(third));
    EXPECT_EQ(slurp((dir_ / "console.log").string()), std::string(20, 'b') + third);
    // Past the cap again: the old .0 is replaced, never more than two files.
    log.append(bytes(std::string(120, 'd')));
    EXPECT_EQ(slurp((dir_ / "console.log.0").string()).size(), 100u);
    EXPECT_LE(std::filesystem::file_size(dir_ / "console.log"), 100u);
    EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir_), {}), 2);
}

TEST_F(ConsoleTest, PtyNobodyReadsNeverBlocksAndALateClientGetsTheNewestOutput) {
    auto console = Console::make_pty();
    ASSERT_FALSE(console->pty_path().empty());
    console->set_log(std::make_unique<ConsoleLog>((dir_ / "console.log").string(), 1 << 20));
    // Far more than the pty's own buffer plus the console's pending buffer.
    std::string all;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 4000; ++i) {
        const std::string line = "line " + std::to_string(i) + " of guest output, nobody is attached\n";
        all += line;
        console->write(bytes(line));
    }
    const auto took = std::chrono::steady_clock::now() - start;
    EXPECT_LT(took, std::chrono::seconds(5)) << "writes must not wait for a reader";
    EXPECT_GT(all.size(), Console::kPendingMax + 16384);
    EXPECT_EQ(slurp((dir_ / "console.log").string()), all) << "the log has every byte";

    // A client attaches (as screen does) and reads: it sees a contiguous tail of the output
    // that ends with the newest line.
    const int fd = ::open(console->pty_path().c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    std::string got;
    for (;;) {
        console->flush();
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 200) <= 0) break;
        char buf[8192];
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) break;
        got.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    ASSERT_FALSE(got.empty());
    EXPECT_GE(got.size(), Console::kPendingMax / 2) << "the bounded buffer is replayed";
    const std::string newest = "line 3999 of guest output, nobody is attached\n";
    ASSERT_GE(got.size(), newest.size());
    EXPECT_EQ(got.substr(got.size() - newest.size()), newest);
    // The kept bytes are one contiguous piece of the output (oldest dropped, never reordered),
    // apart from the pty's first chunk which holds the oldest bytes written when it had room.
    const std::string tail = got.substr(got.size() - Console::kPendingMax / 2);
    EXPECT_NE(all.find(tail), std::string::npos);
}

TEST_F(ConsoleTest, PtyIsRawSoGuestBytesPassUnchanged) {
    auto console = Console::make_pty();
    const int fd = ::open(console->pty_path().c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    const std::string text = "a\nb\r\n\x1b[0m\x03";
    console->write(bytes(text));
    std::string got;
    while (got.size() < text.size()) {
        pollfd p{fd, POLLIN, 0};
        ASSERT_GT(::poll(&p, 1, 2000), 0);
        char buf[64];
        const ssize_t n = ::read(fd, buf, sizeof buf);
        ASSERT_GT(n, 0);
        got.append(buf, static_cast<std::size_t>(n));
    }
    EXPECT_EQ(got, text) << "no \\n -> \\r\\n translation, no signals";
    // Input typed on the pty reaches the console's input fd, without echo back to the client.
    ASSERT_EQ(::write(fd, "xy", 2), 2);
    pollfd p{console->input_fd(), POLLIN, 0};
    ASSERT_GT(::poll(&p, 1, 2000), 0);
    char in[8];
    EXPECT_EQ(::read(console->input_fd(), in, sizeof in), 2);
    pollfd echo{fd, POLLIN, 0};
    EXPECT_EQ(::poll(&echo, 1, 100), 0) << "the pty must not echo";
    ::close(fd);
}

}  // namespace
}  // namespace vmm::anchor
