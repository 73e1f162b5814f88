// QmpClient against a real peer: qemu-system-x86_64 -M none (skipped where it is missing).
// The same client against vmm's own QmpServer is covered in qmp_server_test.cpp; the getfd
// exchange runs against both here, with the same expectations.
#include "qmp/fake_domain.h"
#include "qmp/qmp_client.h"
#include "qmp/qmp_server.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

namespace vmm::qmp {
namespace {

using namespace std::chrono_literals;

std::string find_qemu() {
    for (const char* p : {"/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64"}) {
        if (::access(p, X_OK) == 0) return p;
    }
    return {};
}

class QemuPeer : public ::testing::Test {
protected:
    void SetUp() override {
        qemu_ = find_qemu();
        if (qemu_.empty()) GTEST_SKIP() << "qemu-system-x86_64 not installed";
        char tmpl[] = "/tmp/qmp-client-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        socket_ = dir_ + "/qmp";
        listener_ = dir_ + "/listener.qmp";
        // A QEMU socket chardev serves one client at a time: two monitors, as pillar uses.
        const std::string qmp_arg = "unix:" + socket_ + ",server=on,wait=off";
        const std::string listener_arg = "unix:" + listener_ + ",server=on,wait=off";
        pid_ = ::fork();
        ASSERT_GE(pid_, 0);
        if (pid_ == 0) {
            ::execl(qemu_.c_str(), qemu_.c_str(), "-M", "none", "-display", "none", "-nodefaults",
                    "-qmp", qmp_arg.c_str(), "-qmp", listener_arg.c_str(), static_cast<char*>(nullptr));
            ::_exit(127);
        }
    }
    void TearDown() override {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
        if (!dir_.empty()) std::filesystem::remove_all(dir_);
    }

    std::string qemu_, dir_, socket_, listener_;
    pid_t pid_ = -1;
};

TEST_F(QemuPeer, GreetingNegotiationAndCommands) {
    QmpClient c(socket_, 10s);  // retries until QEMU has created the socket
    ASSERT_TRUE(c.greeting()["QMP"]["version"]["qemu"].contains("major"));
    const Json status = c.execute("query-status");
    EXPECT_TRUE(status.contains("running"));
    EXPECT_TRUE(status["status"].is_string());
    const Json version = c.execute("query-version");
    EXPECT_TRUE(version["package"].is_string());
}

TEST_F(QemuPeer, ErrorReplyThrowsClassAndDesc) {
    QmpClient c(socket_, 10s);
    try {
        c.execute("no-such-command");
        FAIL() << "no error";
    } catch (const CommandError& e) {
        EXPECT_EQ(e.error_class(), "CommandNotFound");
        EXPECT_NE(e.desc().find("no-such-command"), std::string::npos);
    }
    try {
        c.execute("query-status", Json{{"bogus", 1}});
        FAIL() << "no error";
    } catch (const CommandError& e) {
        EXPECT_EQ(e.error_class(), "GenericError");
    }
}

TEST_F(QemuPeer, EventsReachASecondConnection) {
    QmpClient commands(socket_, 10s);
    QmpClient events(listener_, 10s);
    EXPECT_FALSE(events.next_event(50ms).has_value());
    commands.execute("stop");
    const auto e = events.next_event(5s);
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ((*e)["event"], "STOP");
    EXPECT_TRUE((*e)["timestamp"]["seconds"].is_number_integer());
    EXPECT_TRUE((*e)["timestamp"]["microseconds"].is_number_integer());
    EXPECT_EQ(commands.execute("query-status")["status"], "paused");
}

TEST_F(QemuPeer, WithoutNegotiationCommandsAreRefused) {
    QmpClient c(socket_, 10s, /*negotiate=*/false);
    try {
        c.execute("query-status");
        FAIL() << "no error";
    } catch (const CommandError& e) {
        EXPECT_EQ(e.error_class(), "CommandNotFound");
    }
}

// getfd/closefd and dump-guest-memory "fd:NAME", as one exchange that must go the same way
// against QEMU and against vmm's QmpServer (descriptions included): a pipe's write end is
// passed, and the read end tells whether the peer still holds it.
void expect_getfd_semantics(QmpClient& c) {
    auto error_of = [&](const std::string& command, const Json& args, const std::vector<int>& fds = {}) {
        try {
            c.execute_passing_fds(command, args, fds);
            return std::string("no error");
        } catch (const CommandError& e) {
            return e.error_class() + ": " + e.desc();
        }
    };
    int p[2];
    ASSERT_EQ(::pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    Fd read_end(p[0]), write_end(p[1]);
    auto held_elsewhere = [&] {
        char ch;
        return ::read(read_end.get(), &ch, 1) < 0 && errno == EAGAIN;
    };
    EXPECT_EQ(error_of("getfd", {{"fdname", "x"}}), "GenericError: No file descriptor supplied via SCM_RIGHTS");
    EXPECT_EQ(error_of("getfd", {{"fdname", "1x"}}, {write_end.get()}),
              "GenericError: Parameter 'fdname' expects a name not starting with a digit");
    EXPECT_EQ(c.execute_passing_fds("getfd", {{"fdname", "x"}}, {write_end.get()}), Json::object());
    write_end.reset();
    EXPECT_TRUE(held_elsewhere()) << "the peer holds 'x'";
    EXPECT_EQ(error_of("dump-guest-memory", {{"paging", false}, {"protocol", "fd:nope"}}),
              "GenericError: File descriptor named 'nope' has not been found");
    EXPECT_EQ(c.execute("closefd", {{"fdname", "x"}}), Json::object());
    EXPECT_FALSE(held_elsewhere()) << "closefd closed it (EOF)";
    EXPECT_EQ(error_of("closefd", {{"fdname", "x"}}), "GenericError: File descriptor named 'x' not found");
}

TEST_F(QemuPeer, GetfdClosefdAndDumpToANamedFd) {
    QmpClient c(socket_, 10s);
    expect_getfd_semantics(c);
}

TEST(VmmPeer, GetfdClosefdAndDumpToANamedFdAsQemu) {
    char tmpl[] = "/tmp/qmp-client-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const std::string dir = tmpl;
    boost::asio::io_context io;
    FakeDomain domain;
    QmpServer server(io, domain);
    server.listen(dir + "/qmp");
    auto work = boost::asio::make_work_guard(io);
    std::thread t([&] { io.run(); });
    {
        QmpClient c(dir + "/qmp", 10s);
        expect_getfd_semantics(c);
    }
    work.reset();
    boost::asio::post(io, [&] { server.close(); });
    t.join();
    std::filesystem::remove_all(dir);
}

// A peer that greets twice (seen from QEMU 7.2 in CI, with a client that connected while QEMU
// was starting): the second greeting is no reply, and the commands after it get theirs.
TEST(QmpClient, ASecondGreetingIsNotTakenForAReply) {
    char tmpl[] = "/tmp/qmp-client-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const std::string dir = tmpl, path = dir + "/qmp";
    const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener, 1), 0);
    std::thread peer([listener] {
        const int c = ::accept(listener, nullptr, nullptr);
        const std::string greeting = R"({"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}, "package": ""}, "capabilities": []}})"
                                     "\r\n";
        [[maybe_unused]] ssize_t w = ::write(c, greeting.data(), greeting.size());
        std::string in;
        char buf[512];
        for (int answered = 0; answered < 2;) {
            const ssize_t n = ::read(c, buf, sizeof buf);
            if (n <= 0) break;
            in.append(buf, static_cast<std::size_t>(n));
            for (auto nl = in.find('\n'); nl != std::string::npos; nl = in.find('\n')) {
                const Json req = Json::parse(in.substr(0, nl));
                in.erase(0, nl + 1);
                // The greeting again before the first reply, as QEMU sends it.
                std::string out = answered == 0 ? greeting : "";
                out += Json{{"return", {{"status", "running"}}}, {"id", req["id"]}}.dump() + "\r\n";
                w = ::write(c, out.data(), out.size());
                ++answered;
            }
        }
        ::close(c);
    });
    try {
        QmpClient c(path, 5s);  // negotiates: the second greeting comes before that reply
        EXPECT_EQ(c.execute("query-status")["status"], "running");
    } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
    }
    peer.join();  // the client's close ends the peer's reads
    ::close(listener);
    std::filesystem::remove_all(dir);
}

TEST(QmpClient, ConnectTimesOutWhenNobodyListens) {
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_THROW(QmpClient("/tmp/qmp-client-test-no-such-socket", 200ms), TimeoutError);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 200ms);
}

}  // namespace
}  // namespace vmm::qmp
