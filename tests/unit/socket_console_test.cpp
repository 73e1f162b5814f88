// SocketConsole (anchor/socket_console.h) on a real unix socket with a real io_context thread,
// no VM: output kept while nobody is connected and replayed, bounded; input to the feed; a new
// client replaces the old one; a path that is not a socket is refused.
#include "anchor/socket_console.h"
#include "common/fd.h"
#include "tests/support/test_paths.h"

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

namespace vmm::anchor {
namespace {

using namespace std::chrono_literals;

class SocketConsoleTest : public ::testing::Test {
protected:
    void SetUp() override {
        dir_ = test::make_temp_dir("socket-console");
        path_ = dir_ + "/vcon.sock";
        thread_ = std::thread([this] { io_.run(); });
    }
    void TearDown() override {
        work_.reset();
        io_.stop();
        thread_.join();
        std::filesystem::remove_all(dir_);
    }
    std::shared_ptr<SocketConsole> make() {
        auto c = SocketConsole::create(io_, path_, [this](std::span<const std::uint8_t> b) {
            std::lock_guard lock(mu_);
            fed_.append(b.begin(), b.end());
        });
        c->start();
        return c;
    }
    Fd connect_client() {
        Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path_.c_str());
        EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << std::strerror(errno);
        return fd;
    }
    // Reads until `want` bytes arrived, EOF, or 5 s.
    static std::string read_n(int fd, std::size_t want, bool* eof = nullptr, std::chrono::milliseconds wait = 5s) {
        std::string got;
        const auto deadline = std::chrono::steady_clock::now() + wait;
        while (got.size() < want && std::chrono::steady_clock::now() < deadline) {
            pollfd p{fd, POLLIN, 0};
            if (::poll(&p, 1, 100) <= 0) continue;
            char buf[8192];
            const ssize_t n = ::read(fd, buf, sizeof buf);
            if (n <= 0) {
                if (eof) *eof = true;
                break;
            }
            got.append(buf, static_cast<std::size_t>(n));
        }
        return got;
    }
    static std::span<const std::uint8_t> bytes(const std::string& s) {
        return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
    }
    std::string fed() {
        std::lock_guard lock(mu_);
        return fed_;
    }

    boost::asio::io_context io_;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ = boost::asio::make_work_guard(io_);
    std::thread thread_;
    std::string dir_, path_;
    std::mutex mu_;
    std::string fed_;
};

TEST_F(SocketConsoleTest, OutputBeforeAClientIsReplayedAndInputIsFed) {
    auto c = make();
    c->write(bytes("early "));
    Fd client = connect_client();
    EXPECT_EQ(read_n(client.get(), 6), "early ");
    c->write(bytes("later\n"));
    EXPECT_EQ(read_n(client.get(), 6), "later\n");
    ASSERT_EQ(::write(client.get(), "typed", 5), 5);
    for (int i = 0; i < 100 && fed() != "typed"; ++i) std::this_thread::sleep_for(10ms);
    EXPECT_EQ(fed(), "typed");
    EXPECT_EQ(c->chardev_filename(), "unix:" + path_ + ",server=on");
    c->close();
}

// The guest's last words: output written right before close() (the domain ends) reaches the
// connected client, in order, and then the client sees EOF.
TEST_F(SocketConsoleTest, OutputWrittenJustBeforeCloseReachesTheClient) {
    for (int round = 0; round < 20; ++round) {
        auto c = make();
        Fd client = connect_client();
        c->write(bytes("hello "));
        ASSERT_EQ(read_n(client.get(), 6), "hello ") << round;  // connected and served
        c->write(bytes("last "));
        c->write(bytes("words\n"));
        c->close();
        bool eof = false;
        EXPECT_EQ(read_n(client.get(), 11, &eof), "last words\n") << round;
        read_n(client.get(), 1, &eof, 2s);
        EXPECT_TRUE(eof) << round;
    }
}

TEST_F(SocketConsoleTest, PendingOutputIsBoundedKeepingTheNewest) {
    auto c = make();
    std::string big;
    for (std::size_t i = 0; i < SocketConsole::kPendingMax + 1000; ++i) big.push_back(static_cast<char>('a' + i % 26));
    c->write(bytes(big));
    Fd client = connect_client();
    const std::string got = read_n(client.get(), SocketConsole::kPendingMax);
    EXPECT_EQ(read_n(client.get(), 1, nullptr, 300ms), "") << "nothing beyond the bound";
    EXPECT_EQ(got.size(), SocketConsole::kPendingMax);
    EXPECT_EQ(got, big.substr(1000));
    c->close();
}

TEST_F(SocketConsoleTest, ANewClientReplacesTheOldOne) {
    auto c = make();
    Fd first = connect_client();
    c->write(bytes("one"));
    EXPECT_EQ(read_n(first.get(), 3), "one");
    Fd second = connect_client();
    bool eof = false;
    read_n(first.get(), 1, &eof);
    EXPECT_TRUE(eof) << "the first client is closed when the second connects";
    c->write(bytes("two"));
    EXPECT_EQ(read_n(second.get(), 3), "two");
    c->close();
    for (int i = 0; i < 100 && std::filesystem::exists(path_); ++i) std::this_thread::sleep_for(10ms);
    EXPECT_FALSE(std::filesystem::exists(path_));
}

// What a named port tells the guest about its host side: a client came (true) or went (false);
// a client replacing another is no change.
TEST_F(SocketConsoleTest, ConnectionsAreReported) {
    std::mutex m;
    std::vector<bool> changes;
    auto seen = [&] {
        std::lock_guard lock(m);
        return changes;
    };
    auto wait_for = [&](std::size_t n) {
        for (int i = 0; i < 500 && seen().size() < n; ++i) std::this_thread::sleep_for(10ms);
        return seen();
    };
    auto c = SocketConsole::create(io_, path_, [this](std::span<const std::uint8_t> b) {
        std::lock_guard lock(mu_);
        fed_.append(b.begin(), b.end());
    });
    c->on_connection([&](bool connected) {
        std::lock_guard lock(m);
        changes.push_back(connected);
    });
    c->start();
    {
        Fd first = connect_client();
        EXPECT_EQ(wait_for(1), std::vector<bool>({true}));
        Fd second = connect_client();
        ASSERT_EQ(::write(second.get(), "x", 1), 1);
        for (int i = 0; i < 500 && fed().empty(); ++i) std::this_thread::sleep_for(10ms);
        ASSERT_EQ(fed(), "x") << "the second client is served";
        EXPECT_EQ(seen(), std::vector<bool>({true})) << "a client replacing another";
    }
    EXPECT_EQ(wait_for(2), std::vector<bool>({true, false})) << "the last client left";
    Fd again = connect_client();
    EXPECT_EQ(wait_for(3), std::vector<bool>({true, false, true}));
    c->close();
}

TEST_F(SocketConsoleTest, APathThatIsNotASocketIsRefusedAndKept) {
    std::ofstream(path_) << "precious";
    try {
        make();
        FAIL() << "a regular file was replaced";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("not a socket"), std::string::npos) << e.what();
    }
    std::ifstream in(path_);
    std::string text;
    in >> text;
    EXPECT_EQ(text, "precious");
}

}  // namespace
}  // namespace vmm::anchor
