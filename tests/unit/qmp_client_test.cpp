// QmpClient against a real peer: qemu-system-x86_64 -M none (skipped where it is missing).
// The same client against vmm's own QmpServer is covered in qmp_server_test.cpp.
#include "qmp/qmp_client.h"

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

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

TEST(QmpClient, ConnectTimesOutWhenNobodyListens) {
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_THROW(QmpClient("/tmp/qmp-client-test-no-such-socket", 200ms), TimeoutError);
    EXPECT_GE(std::chrono::steady_clock::now() - t0, 200ms);
}

}  // namespace
}  // namespace vmm::qmp
