// QmpServer over real sockets (socketpairs and unix sockets) with a FakeDomain: greeting,
// negotiation, ids, every error shape, split/coalesced input, events, several clients,
// flood, oversize input, disconnects; descriptors passed for getfd/closefd and dump "fd:NAME"; the fault tests of a flooding client (an endless line, replies
// never read, garbage at full speed: bounded buffers, a log line, the others served).
// Single-threaded: the test steps the io_context with poll() (run_for() where a timeout is under
// test); only the QmpClient tests run it on a thread (the client blocks).
#include "common/log.h"
#include "common/scm_rights.h"
#include "qmp/fake_domain.h"
#include "qmp/json_writer.h"
#include "qmp/qmp_dispatcher.h"
#include "qmp/qmp_client.h"
#include "qmp/qmp_server.h"

#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <spdlog/sinks/ostream_sink.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace vmm::qmp {
namespace {

using namespace std::chrono_literals;

// One client end of a socketpair, non-blocking; reads by stepping the server's io_context.
class Peer {
public:
    Peer(boost::asio::io_context& io, QmpServer& server) : io_(io) {
        int sv[2];
        EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
        fd_ = Fd(sv[0]);
        server.serve(Fd(sv[1]));
    }

    // Sends all of `bytes`; false if the server stopped reading (socket buffer full).
    bool send(std::string_view bytes) {
        for (int spins = 0; !bytes.empty() && spins < 1000; ++spins) {
            const ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
            if (n > 0) {
                bytes.remove_prefix(static_cast<std::size_t>(n));
                spins = 0;
            } else {
                io_.poll();
            }
        }
        io_.poll();
        return bytes.empty();
    }

    // The next `count` messages (fewer if the server has no more).
    std::vector<Json> read(std::size_t count) {
        std::vector<Json> out;
        for (int idle = 0; out.size() < count && idle < 200; ++idle) {
            io_.poll();
            while (!messages_.empty() && out.size() < count) {
                out.push_back(std::move(messages_.front()));
                messages_.erase(messages_.begin());
            }
            char buf[65536];
            const ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
            if (n == 0) {
                eof_ = true;
                break;
            }
            if (n > 0) {
                idle = 0;
                for (auto& item : stream_.feed(std::string_view(buf, static_cast<std::size_t>(n)))) {
                    EXPECT_TRUE(item.ok()) << item.error;
                    if (item.ok()) messages_.push_back(std::move(*item.value));
                }
            }
        }
        while (!messages_.empty() && out.size() < count) {
            out.push_back(std::move(messages_.front()));
            messages_.erase(messages_.begin());
        }
        return out;
    }
    Json read1() {
        auto m = read(1);
        return m.empty() ? Json("<nothing>") : m[0];
    }
    // Sends one line, returns the next message.
    Json ask(const std::string& text) {
        EXPECT_TRUE(send(text + "\n"));
        return read1();
    }
    // Sends one line with descriptors attached (SCM_RIGHTS), returns the next message.
    Json ask_passing(const std::string& text, const std::vector<int>& fds) {
        const std::string line = text + "\n";
        iovec iov{const_cast<char*>(line.data()), line.size()};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        std::vector<char> control;
        attach_fds(msg, control, fds);
        EXPECT_EQ(::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL), static_cast<ssize_t>(line.size()));
        return read1();
    }
    Json greet_and_negotiate() {
        Json greeting = read1();
        EXPECT_EQ(ask(R"({"execute": "qmp_capabilities"})"), Json::parse(R"({"return": {}})"));
        return greeting;
    }
    bool eof() {
        read(1000);
        return eof_;
    }
    void close() { fd_.reset(); }
    int fd() const { return fd_.get(); }

private:
    boost::asio::io_context& io_;
    Fd fd_;
    JsonStream stream_;
    std::vector<Json> messages_;
    bool eof_ = false;
};

// Collects what the "qmp" logger writes while it lives.
class LogCapture {
public:
    LogCapture() { logger("qmp")->sinks().push_back(sink_); }
    ~LogCapture() {
        auto& sinks = logger("qmp")->sinks();
        sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
    }
    std::size_t count(const std::string& needle) const {
        const std::string text = out_.str();
        std::size_t n = 0;
        for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
        return n;
    }
    std::string text() const { return out_.str(); }

private:
    std::ostringstream out_;
    std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_ = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
};

std::vector<std::string> keys(const Json& object) {
    std::vector<std::string> k;
    for (const auto& [key, value] : object.items()) k.push_back(key);
    std::sort(k.begin(), k.end());
    return k;
}

std::string error_class(const Json& reply) { return reply["error"]["class"].get<std::string>(); }

class QmpServerTest : public ::testing::Test {
protected:
    QmpServerTest() : server_(io_, domain_, options()) { domain_.attach(server_); }
    static QmpServerOptions options() {
        QmpServerOptions o;
        o.limits.max_message_bytes = 64 << 10;
        return o;
    }

    boost::asio::io_context io_;
    FakeDomain domain_{"dom1", "prelaunch"};
    QmpServer server_;
};

TEST_F(QmpServerTest, GreetingHasQemuShape) {
    Peer p(io_, server_);
    const Json g = p.read1();
    ASSERT_EQ(keys(g), std::vector<std::string>{"QMP"});
    EXPECT_EQ(keys(g["QMP"]), (std::vector<std::string>{"capabilities", "version"}));
    EXPECT_EQ(keys(g["QMP"]["version"]), (std::vector<std::string>{"package", "qemu"}));
    EXPECT_EQ(keys(g["QMP"]["version"]["qemu"]), (std::vector<std::string>{"major", "micro", "minor"}));
    EXPECT_TRUE(g["QMP"]["capabilities"].is_array());
}

TEST_F(QmpServerTest, CommandsBeforeNegotiationAreCommandNotFound) {
    Peer p(io_, server_);
    p.read1();
    Json r = p.ask(R"({"execute": "query-status", "id": "a"})");
    EXPECT_EQ(error_class(r), "CommandNotFound");
    EXPECT_EQ(r["id"], "a");
    EXPECT_EQ(error_class(p.ask(R"({"execute": "no-such"})")), "CommandNotFound");
    EXPECT_EQ(domain_.stops, 0);
    EXPECT_EQ(error_class(p.ask(R"({"execute": "stop"})")), "CommandNotFound");
    EXPECT_EQ(domain_.stops, 0);
    EXPECT_EQ(p.ask(R"({"execute": "qmp_capabilities", "id": 1})"),
              Json::parse(R"({"return": {}, "id": 1})"));
    r = p.ask(R"({"execute": "qmp_capabilities"})");
    EXPECT_EQ(error_class(r), "CommandNotFound");
    EXPECT_NE(r["error"]["desc"].get<std::string>().find("already complete"), std::string::npos);
    EXPECT_EQ(p.ask(R"({"execute": "query-status"})")["return"]["status"], "prelaunch");
}

TEST_F(QmpServerTest, CapabilitiesArgumentsAreChecked) {
    Peer p(io_, server_);
    p.read1();
    EXPECT_EQ(error_class(p.ask(R"({"execute": "qmp_capabilities", "arguments": {"enable": ["foo"]}})")),
              "GenericError");
    EXPECT_EQ(error_class(p.ask(R"({"execute": "qmp_capabilities", "arguments": {"enable": "oob"}})")),
              "GenericError");
    // oob is not offered in our greeting, so enabling it fails.
    EXPECT_EQ(error_class(p.ask(R"({"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}})")),
              "GenericError");
    EXPECT_EQ(error_class(p.ask(R"({"execute": "qmp_capabilities", "arguments": {"x": 1}})")),
              "GenericError");
    EXPECT_EQ(p.ask(R"({"execute": "qmp_capabilities", "arguments": {"enable": []}})"),
              Json::parse(R"({"return": {}})"));
}

TEST_F(QmpServerTest, IdsAreEchoedAsGiven) {
    Peer p(io_, server_);
    p.greet_and_negotiate();
    for (const char* id : {R"("s")", "7", "-1", "1.5", "null", "true", R"({"a": [1, {"b": "c"}]})",
                           "[1, 2]", "18446744073709551615"}) {
        const Json want = Json::parse(id);
        const Json ok = p.ask(std::string(R"({"execute": "query-name", "id": )") + id + "}");
        EXPECT_EQ(ok["id"], want) << id;
        EXPECT_EQ(to_qmp_text(ok["id"]), to_qmp_text(want));
        const Json err = p.ask(std::string(R"({"execute": "nope", "id": )") + id + "}");
        EXPECT_EQ(err["id"], want) << id;
        EXPECT_TRUE(err.contains("error"));
    }
    // No id sent, none echoed.
    EXPECT_EQ(keys(p.ask(R"({"execute": "query-name"})")), std::vector<std::string>{"return"});
}

TEST_F(QmpServerTest, ErrorShapesMatchQemu) {
    Peer p(io_, server_);
    p.greet_and_negotiate();
    struct Case {
        const char* input;
        const char* error_class;
        bool has_id;
        const char* desc;
    };
    const Case cases[] = {
        {"[1, 2]", "GenericError", false, "QMP input must be a JSON object"},
        {"3 ", "GenericError", false, "QMP input must be a JSON object"},
        {R"("x")", "GenericError", false, "QMP input must be a JSON object"},
        {"{}", "GenericError", false, "QMP input lacks member 'execute'"},
        {R"({"id": 5})", "GenericError", true, "QMP input lacks member 'execute'"},
        {R"({"execute": 1, "id": 5})", "GenericError", true, "QMP input member 'execute' must be a string"},
        {R"({"execute": "stop", "arguments": [1]})", "GenericError", false,
         "QMP input member 'arguments' must be an object"},
        {R"({"execute": "stop", "foo": 1})", "GenericError", false, "QMP input member 'foo' is unexpected"},
        {R"({"exec-oob": "stop"})", "GenericError", false, "QMP input member 'exec-oob' is unexpected"},
        {R"({"execute": "nope", "id": 1})", "CommandNotFound", true, "The command nope has not been found"},
        {R"({"execute": "query-status", "arguments": {"x": 1}, "id": 2})", "GenericError", true,
         "Parameter 'x' is unexpected"},
        {R"({"execute": "human-monitor-command"})", "GenericError", false,
         "Parameter 'command-line' is missing"},
        {R"({"execute": "human-monitor-command", "arguments": {"command-line": 5}})", "GenericError",
         false, "Invalid parameter type for 'command-line', expected: string"},
        {R"({"a" 1})", "GenericError", false, "JSON parse error, missing : in object pair"},
        {"}", "GenericError", false, "JSON parse error, expecting value"},
        {"@", "GenericError", false, "JSON parse error, stray '@'"},
    };
    for (const auto& c : cases) {
        const Json r = p.ask(c.input);
        ASSERT_TRUE(r.contains("error")) << c.input << " -> " << to_qmp_text(r);
        EXPECT_EQ(keys(r["error"]), (std::vector<std::string>{"class", "desc"})) << c.input;
        EXPECT_EQ(error_class(r), c.error_class) << c.input;
        EXPECT_EQ(r.contains("id"), c.has_id) << c.input;
        EXPECT_EQ(r["error"]["desc"], c.desc) << c.input;
    }
    // The connection is still usable.
    EXPECT_EQ(p.ask(R"({"execute": "query-name", "id": 9})"),
              Json::parse(R"({"return": {"name": "dom1"}, "id": 9})"));
}

TEST_F(QmpServerTest, DomainErrorsBecomeErrorReplies) {
    Peer p(io_, server_);
    p.greet_and_negotiate();
    domain_.set_state("shutdown");
    Json r = p.ask(R"({"execute": "cont", "id": "c"})");
    EXPECT_EQ(error_class(r), "GenericError");
    EXPECT_EQ(r["error"]["desc"], "Resetting the Virtual Machine is required");
    EXPECT_EQ(r["id"], "c");
}

// dump-guest-memory's arguments are checked as QEMU's schema has them before the domain sees
// the command; a domain without guest memory refuses it; query-dump says "none".
TEST_F(QmpServerTest, DumpGuestMemoryArgumentsAndQueryDump) {
    Peer p(io_, server_);
    p.greet_and_negotiate();
    Json r = p.ask(R"({"execute": "dump-guest-memory", "arguments": {"protocol": "file:/tmp/x"}})");
    EXPECT_EQ(error_class(r), "GenericError");
    EXPECT_NE(r["error"]["desc"].get<std::string>().find("paging"), std::string::npos) << r.dump();
    r = p.ask(R"({"execute": "dump-guest-memory", "arguments": {"paging": "no", "protocol": "file:/tmp/x"}})");
    EXPECT_EQ(error_class(r), "GenericError");
    r = p.ask(R"({"execute": "dump-guest-memory", "arguments": {"paging": false, "protocol": "file:/tmp/x", "bogus": 1}})");
    EXPECT_EQ(error_class(r), "GenericError");
    r = p.ask(R"({"execute": "dump-guest-memory", "arguments": {"paging": false, "protocol": "file:/tmp/x"}})");
    EXPECT_EQ(error_class(r), "GenericError");
    EXPECT_EQ(r["error"]["desc"], "this domain has no guest memory to dump");
    r = p.ask(R"({"execute": "query-dump"})");
    EXPECT_EQ(r["return"], (Json{{"status", "none"}, {"completed", 0}, {"total", 0}})) << r.dump();
}

TEST_F(QmpServerTest, SplitMessagesAnswerOnceComplete) {
    Peer p(io_, server_);
    p.greet_and_negotiate();
    const std::string msg = R"({"execute": "query-status", "id": "split"})";
    for (std::size_t i = 0; i + 1 < msg.size(); ++i) {
        ASSERT_TRUE(p.send(msg.substr(i, 1)));
        EXPECT_TRUE(p.read(1).empty()) << "reply before the message was complete, at byte " << i;
    }
    ASSERT_TRUE(p.send(msg.substr(msg.size() - 1)));
    EXPECT_EQ(p.read1()["id"], "split");
}

TEST_F(QmpServerTest, CoalescedMessagesAnswerInOrder) {
    Peer p(io_, server_);
    p.read1();
    ASSERT_TRUE(p.send(R"({"execute":"qmp_capabilities","id":0}{"execute":"query-status","id":1})"
                       R"({"execute":"nope","id":2}[]{"execute":"query-version","id":3})"));
    const auto replies = p.read(5);
    ASSERT_EQ(replies.size(), 5u);
    EXPECT_EQ(replies[0]["id"], 0);
    EXPECT_EQ(replies[1]["id"], 1);
    EXPECT_EQ(replies[2]["id"], 2);
    EXPECT_FALSE(replies[3].contains("id"));
    EXPECT_EQ(replies[4]["id"], 3);
    EXPECT_TRUE(replies[4]["return"]["qemu"].contains("major"));
}

TEST_F(QmpServerTest, QueryStatusHasExactlyPillarsMembers) {
    Peer p(io_, server_);
    p.greet_and_negotiate();
    const Json r = p.ask(R"({"execute": "query-status", "id": 1})");
    EXPECT_EQ(keys(r), (std::vector<std::string>{"id", "return"}));
    EXPECT_EQ(keys(r["return"]), (std::vector<std::string>{"running", "singlestep", "status"}));
    EXPECT_EQ(r["return"]["running"], false);
    EXPECT_EQ(r["return"]["singlestep"], false);
    EXPECT_EQ(r["return"]["status"], "prelaunch");
}

TEST_F(QmpServerTest, StopContAndEvents) {
    Peer p(io_, server_);
    p.greet_and_negotiate();
    // cont: RESUME, then the reply, and the state has changed when the reply arrives.
    ASSERT_TRUE(p.send(R"({"execute": "cont", "id": 1})"));
    auto m = p.read(2);
    ASSERT_EQ(m.size(), 2u);
    EXPECT_EQ(m[0]["event"], "RESUME");
    EXPECT_EQ(keys(m[0]), (std::vector<std::string>{"event", "timestamp"}));
    EXPECT_EQ(keys(m[0]["timestamp"]), (std::vector<std::string>{"microseconds", "seconds"}));
    EXPECT_GT(m[0]["timestamp"]["seconds"].get<std::int64_t>(), 1600000000);
    EXPECT_LT(m[0]["timestamp"]["microseconds"].get<std::int64_t>(), 1000000);
    EXPECT_EQ(m[1], Json::parse(R"({"return": {}, "id": 1})"));
    EXPECT_EQ(p.ask(R"({"execute": "query-status"})")["return"]["running"], true);
    ASSERT_TRUE(p.send(R"({"execute": "stop"})"));
    m = p.read(2);
    ASSERT_EQ(m.size(), 2u);
    EXPECT_EQ(m[0]["event"], "STOP");
    EXPECT_EQ(p.ask(R"({"execute": "query-status"})")["return"]["status"], "paused");
    ASSERT_TRUE(p.send(R"({"execute": "system_reset"})"));
    m = p.read(2);
    ASSERT_EQ(m.size(), 2u);
    EXPECT_EQ(m[0]["event"], "RESET");
    EXPECT_EQ(m[0]["data"], Json::parse(R"({"guest": false, "reason": "host-qmp-system-reset"})"));
    ASSERT_TRUE(p.send(R"({"execute": "system_powerdown"})"));
    m = p.read(2);
    ASSERT_EQ(m.size(), 2u);
    EXPECT_EQ(m[0]["event"], "POWERDOWN");
    EXPECT_FALSE(m[0].contains("data"));
    EXPECT_EQ(domain_.powerdowns, 1);
}

TEST_F(QmpServerTest, EventsGoOnlyToNegotiatedClients) {
    Peer a(io_, server_), b(io_, server_), raw(io_, server_);
    a.greet_and_negotiate();
    b.greet_and_negotiate();
    raw.read1();
    server_.emit("SHUTDOWN", Json{{"guest", true}, {"reason", "guest-shutdown"}});
    for (Peer* p : {&a, &b}) {
        const Json e = p->read1();
        EXPECT_EQ(e["event"], "SHUTDOWN");
        EXPECT_EQ(e["data"]["guest"], true);
        EXPECT_EQ(e["data"]["reason"], "guest-shutdown");
    }
    EXPECT_TRUE(raw.read(1).empty());
}

TEST_F(QmpServerTest, EmitFromAnotherThreadIsDelivered) {
    Peer p(io_, server_);
    p.greet_and_negotiate();
    std::thread t([this] { server_.emit("POWERDOWN"); });
    t.join();
    EXPECT_EQ(p.read1()["event"], "POWERDOWN");
}

TEST_F(QmpServerTest, HumanMonitorCommandInfoStatus) {
    Peer p(io_, server_);
    p.greet_and_negotiate();
    const auto hmp = [&](const char* line) {
        return p.ask(std::string(R"({"execute": "human-monitor-command", "arguments": {"command-line": ")") +
                     line + "\"}}")["return"];
    };
    EXPECT_EQ(hmp("info status"), "VM status: paused (prelaunch)\r\n");
    domain_.set_state("running");
    EXPECT_EQ(hmp("info status"), "VM status: running\r\n");
    domain_.set_state("paused");
    EXPECT_EQ(hmp("info status"), "VM status: paused\r\n");
    EXPECT_EQ(hmp("bogus"), "unknown command: 'bogus'\r\n");
}

TEST_F(QmpServerTest, QueriesReturnDomainData) {
    Peer p(io_, server_);
    p.greet_and_negotiate();
    Json cmds = p.ask(R"({"execute": "query-commands"})")["return"];
    std::vector<std::string> names;
    for (const auto& c : cmds) names.push_back(c["name"]);
    for (const char* want : {"qmp_capabilities", "query-commands", "query-version", "query-name",
                             "query-status", "stop", "cont", "system_reset", "system_powerdown",
                             "quit", "query-cpus-fast", "query-block", "query-chardev",
                             "human-monitor-command"}) {
        EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
    }
    domain_.vcpus = 2;
    const Json cpus = p.ask(R"({"execute": "query-cpus-fast"})")["return"];
    ASSERT_EQ(cpus.size(), 2u);
    EXPECT_EQ(cpus[1]["cpu-index"], 1);
    EXPECT_EQ(p.ask(R"({"execute": "query-block"})")["return"], Json::array());
    EXPECT_EQ(p.ask(R"({"execute": "query-chardev"})")["return"][0]["label"], "compat_monitor0");
}

TEST_F(QmpServerTest, QuitRepliesThenCloseFlushes) {
    Peer p(io_, server_);
    p.greet_and_negotiate();
    domain_.on_quit = [this] { server_.close(); };
    ASSERT_TRUE(p.send(R"({"execute": "quit", "id": "q"})"));
    const auto m = p.read(2);
    ASSERT_EQ(m.size(), 2u);
    EXPECT_EQ(m[0]["event"], "SHUTDOWN");
    EXPECT_EQ(m[0]["data"]["reason"], "host-qmp-quit");
    EXPECT_EQ(m[1], Json::parse(R"({"return": {}, "id": "q"})"));
    EXPECT_TRUE(p.eof());
    EXPECT_EQ(server_.client_count(), 0u);
}

TEST(QmpServerQuit, ReplyIsFlushedWhenQuitClosesTheServerAtOnce) {
    boost::asio::io_context io;
    FakeDomain domain;  // not attached: quit emits no event, so nothing else is being written
    QmpServer server(io, domain);
    domain.on_quit = [&] { server.close(); };
    Peer p(io, server);
    p.greet_and_negotiate();
    ASSERT_TRUE(p.send(R"({"execute": "quit", "id": 1})"));
    EXPECT_EQ(p.read1(), Json::parse(R"({"return": {}, "id": 1})"));
    EXPECT_TRUE(p.eof());
    EXPECT_EQ(domain.quits, 1);
}

// After close(), once every client has its output and is gone, the server holds no work on the
// io_context: an owner that drains the loop (the anchor's exit) is not kept waiting for the
// deadline meant for clients that never read.
TEST_F(QmpServerTest, CloseLeavesNoWorkOnceClientsAreFlushed) {
    Peer p(io_, server_);
    p.greet_and_negotiate();
    server_.close();
    EXPECT_TRUE(p.eof());
    EXPECT_EQ(server_.client_count(), 0u);
    io_.restart();
    EXPECT_EQ(io_.poll(), 0u);  // handlers still queued would run here
    EXPECT_TRUE(io_.stopped()) << "work left on the io_context after every client closed";
}

TEST_F(QmpServerTest, DisconnectMidMessageHurtsNobodyElse) {
    Peer a(io_, server_), b(io_, server_);
    a.greet_and_negotiate();
    b.greet_and_negotiate();
    EXPECT_EQ(server_.client_count(), 2u);
    ASSERT_TRUE(a.send(R"({"execute": "query-st)"));
    a.close();
    io_.poll();
    EXPECT_EQ(server_.client_count(), 1u);
    EXPECT_EQ(b.ask(R"({"execute": "query-name", "id": 1})")["id"], 1);
    server_.emit("STOP");
    EXPECT_EQ(b.read1()["event"], "STOP");
}

TEST_F(QmpServerTest, OversizeMessageIsRejectedAndTheConnectionRecovers) {
    Peer p(io_, server_);
    p.greet_and_negotiate();
    const std::string big = R"({"execute": "query-name", "id": ")" + std::string(200 << 10, 'x') + "\"}\n";
    ASSERT_TRUE(p.send(big));
    const auto m = p.read(2);
    ASSERT_EQ(m.size(), 2u);
    EXPECT_EQ(m[0]["error"]["desc"], "JSON token size limit exceeded");
    EXPECT_EQ(m[1]["error"]["desc"], "JSON parse error, expecting value");  // the stray '}'
    EXPECT_EQ(p.ask(R"({"execute": "query-name", "id": 2})")["id"], 2);
}

TEST_F(QmpServerTest, FloodingClientIsThrottledOthersAreServed) {
    Peer flood(io_, server_), other(io_, server_);
    flood.greet_and_negotiate();
    other.greet_and_negotiate();
    // The flooder never reads: once its unread replies pass read_pause_bytes the server stops
    // reading it, its socket buffer fills, and its sends fail.
    std::string chunk;
    for (int i = 0; i < 1000; ++i) chunk += R"({"execute": "query-status", "id": 123456})";
    bool blocked = false;
    for (int i = 0; i < 2000 && !blocked; ++i) {
        const ssize_t n = ::send(flood.fd(), chunk.data(), chunk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        io_.poll();
        blocked = n < 0 && errno == EAGAIN;
    }
    EXPECT_TRUE(blocked) << "the server kept reading a client that does not read its replies";
    EXPECT_EQ(other.ask(R"({"execute": "query-status", "id": "ok"})")["id"], "ok");
    // Events to a client that does not read either: past max_output_bytes it is dropped.
    for (int i = 0; i < 20000 && server_.client_count() == 2; ++i) {
        server_.emit("RESET", Json{{"guest", false}, {"reason", "host-qmp-system-reset"}});
        io_.poll();
        other.read(1);
    }
    EXPECT_EQ(server_.client_count(), 1u);
    EXPECT_EQ(other.ask(R"({"execute": "query-name", "id": "still"})")["id"], "still");
}

class QmpServerSocketTest : public QmpServerTest {
protected:
    void SetUp() override {
        char tmpl[] = "/tmp/qmp-server-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::string dir_;
};

TEST_F(QmpServerSocketTest, ListenTwoSocketsMode0600AndCloseRemovesThem) {
    const std::string qmp = dir_ + "/qmp", listener = dir_ + "/listener.qmp";
    // A stale socket file from a dead anchor is replaced.
    {
        boost::asio::io_context other;
        FakeDomain d;
        QmpServer stale(other, d);
        stale.listen(qmp);
    }
    server_.listen(qmp);
    server_.listen(listener);
    struct stat st {};
    ASSERT_EQ(::stat(qmp.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    ASSERT_EQ(::stat(listener.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);

    auto guard = boost::asio::make_work_guard(io_);
    std::thread t([this] { io_.run(); });
    {
        // pillar's pattern: a long-lived event reader on listener.qmp, a connection per
        // command on qmp.
        QmpClient events(listener, 5s);
        for (int i = 0; i < 3; ++i) {
            QmpClient c(qmp, 5s);
            EXPECT_EQ(c.execute("query-status")["status"], "prelaunch");
        }
        QmpClient c(qmp, 5s);
        c.execute("cont");
        EXPECT_EQ(c.execute("query-status")["status"], "running");
        c.execute("system_powerdown");
        auto e = events.next_event(5s);
        ASSERT_TRUE(e);
        EXPECT_EQ((*e)["event"], "RESUME");
        e = events.next_event(5s);
        ASSERT_TRUE(e);
        EXPECT_EQ((*e)["event"], "POWERDOWN");
        try {
            c.execute("human-monitor-command", Json{{"command-line", 1}});
            ADD_FAILURE() << "no error";
        } catch (const CommandError& err) {
            EXPECT_EQ(err.error_class(), "GenericError");
        }
        EXPECT_FALSE(events.next_event(20ms).has_value());
    }
    boost::asio::post(io_, [this] { server_.close(); });
    guard.reset();
    t.join();
    EXPECT_FALSE(std::filesystem::exists(qmp));
    EXPECT_FALSE(std::filesystem::exists(listener));
}

// Fault tests: a client that floods. Each keeps the flooder's memory bounded, logs it, and
// serves another client meanwhile.

TEST_F(QmpServerTest, AnEndlessLineCostsOneMessageOfBufferAndOneError) {
    LogCapture log;
    Peer flood(io_, server_), other(io_, server_);
    flood.greet_and_negotiate();
    other.greet_and_negotiate();
    // A string that never ends, no newline: 16 MiB against a 64 KiB message limit.
    ASSERT_TRUE(flood.send(R"({"execute": "query-name", "id": ")"));
    const std::string chunk(64 << 10, 'x');
    std::size_t most = 0;
    for (int i = 0; i < 256; ++i) {
        ASSERT_TRUE(flood.send(chunk)) << "the server stopped reading after " << i << " chunks";
        most = std::max(most, server_.buffered_bytes());
        if (i % 64 == 0) {
            EXPECT_EQ(other.ask(R"({"execute": "query-name", "id": )" + std::to_string(i) + "}")["id"], i);
        }
    }
    EXPECT_LE(most, std::size_t{64 << 10}) << "held more than one message's worth";
    const auto replies = flood.read(10);
    ASSERT_EQ(replies.size(), 1u) << "one error for the whole line, not one per chunk";
    EXPECT_EQ(replies[0]["error"]["class"], "GenericError");
    EXPECT_EQ(replies[0]["error"]["desc"], "JSON token size limit exceeded");
    EXPECT_EQ(log.count("QMP client 1 on fd: rejected input: JSON token size limit exceeded (1 so far)"), 1u)
        << log.text();
    // A newline resynchronises the lexer (qmp-spec): the client is usable again.
    EXPECT_EQ(flood.ask("\n" R"({"execute": "query-name", "id": "back"})")["id"], "back");
    EXPECT_EQ(server_.client_count(), 2u);
}

TEST_F(QmpServerTest, GarbageAtFullSpeedIsAnsweredAndLoggedSparingly) {
    LogCapture log;
    Peer flood(io_, server_), other(io_, server_);
    flood.greet_and_negotiate();
    other.greet_and_negotiate();
    // 5000 stray '}' (each a parse error) in 1000-byte bursts, replies read as they come.
    std::size_t errors = 0;
    for (int burst = 0; burst < 5; ++burst) {
        ASSERT_TRUE(flood.send(std::string(1000, '}')));
        for (const auto& m : flood.read(1000)) errors += m["error"]["desc"] == "JSON parse error, expecting value";
        EXPECT_EQ(other.ask(R"({"execute": "query-status", "id": "ok"})")["id"], "ok");
    }
    EXPECT_EQ(errors, 5000u) << "QEMU answers every stray token";
    // Logged at the 1st, 2nd, 4th ... 4096th: 13 lines for 5000 errors.
    EXPECT_EQ(log.count("QMP client 1 on fd: rejected input: JSON parse error, expecting value"), 13u);
    EXPECT_EQ(log.count("(4096 so far)"), 1u);
    EXPECT_EQ(log.count("client 2"), 0u);
}

class QmpServerStallTest : public ::testing::Test {
protected:
    QmpServerStallTest() : server_(io_, domain_, options()) { domain_.attach(server_); }
    static QmpServerOptions options() {
        QmpServerOptions o;
        o.stall_timeout = 1000ms;
        return o;
    }
    // Fills the flooder's socket with commands without reading a reply, until the server stops
    // reading it; checks the server's buffer on the way.
    void flood_until_blocked(Peer& flood) {
        std::string chunk;
        for (int i = 0; i < 100; ++i) chunk += R"({"execute": "query-status", "id": 123456})";
        bool blocked = false;
        for (int i = 0; i < 20000 && !blocked; ++i) {
            const ssize_t n = ::send(flood.fd(), chunk.data(), chunk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
            io_.poll();
            blocked = n < 0 && errno == EAGAIN;
            most_ = std::max(most_, server_.buffered_bytes());
        }
        ASSERT_TRUE(blocked) << "the server kept reading a client that does not read its replies";
    }
    template <typename Pred> bool run_until(Pred pred, std::chrono::milliseconds limit) {
        const auto end = std::chrono::steady_clock::now() + limit;
        while (!pred() && std::chrono::steady_clock::now() < end) io_.run_for(20ms);
        return pred();
    }

    boost::asio::io_context io_;
    FakeDomain domain_{"dom1", "running"};
    QmpServer server_;
    std::size_t most_ = 0;
};

TEST_F(QmpServerStallTest, AClientThatNeverReadsItsRepliesIsBoundedThenDisconnected) {
    LogCapture log;
    Peer flood(io_, server_), other(io_, server_);
    flood.greet_and_negotiate();
    other.greet_and_negotiate();
    flood_until_blocked(flood);
    // Replies queued past read_pause_bytes (64 KiB) stop the reading; one batch may overshoot.
    EXPECT_LE(most_, std::size_t{(64 << 10) + (8 << 10)}) << "the write queue is not bounded";
    EXPECT_EQ(log.count("QMP client 1 on fd: "), 1u) << log.text();
    EXPECT_EQ(log.count("bytes of replies unread: not reading its input until it reads them"), 1u);
    EXPECT_EQ(other.ask(R"({"execute": "query-status", "id": "meanwhile"})")["id"], "meanwhile");

    // Nothing read for stall_timeout: it goes, and its buffers with it.
    ASSERT_TRUE(run_until([&] { return server_.client_count() == 1; }, 10s)) << "never disconnected";
    EXPECT_EQ(log.count("bytes of replies unread for 1000 ms: disconnecting it"), 1u) << log.text();
    EXPECT_EQ(server_.buffered_bytes(), 0u);
    EXPECT_EQ(other.ask(R"({"execute": "query-name", "id": "after"})")["id"], "after");
}

TEST_F(QmpServerStallTest, AClientThatReadsSlowlyIsKept) {
    Peer slow(io_, server_);
    slow.greet_and_negotiate();
    flood_until_blocked(slow);
    // It reads everything it has every ~200 ms: the server's writes make progress within every
    // stall_timeout, so it stays, for three timeouts.
    std::size_t replies = 0;
    const auto end = std::chrono::steady_clock::now() + 3s;
    while (std::chrono::steady_clock::now() < end) {
        io_.run_for(200ms);
        replies += slow.read(100000).size();
        ASSERT_EQ(server_.client_count(), 1u) << "a client that reads was disconnected";
    }
    EXPECT_GT(replies, 2000u);
}

}  // namespace
}  // namespace vmm::qmp

namespace vmm::qmp {
namespace {

// A pipe whose write end goes to the server: while the server holds a copy, the read end sees
// no EOF after ours is closed. So "held" and "closed" are observed, not assumed.
struct WatchedPipe {
    WatchedPipe() {
        int p[2];
        EXPECT_EQ(::pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
        read_end = Fd(p[0]);
        write_end = Fd(p[1]);
    }
    // After our write end is dropped: true when no one else holds one (EOF).
    bool closed_everywhere() {
        write_end.reset();
        char c;
        return ::read(read_end.get(), &c, 1) == 0;
    }
    std::string drain() {
        std::string out;
        char buf[256];
        for (ssize_t n; (n = ::read(read_end.get(), buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
        return out;
    }
    Fd read_end, write_end;
};

std::string desc(const Json& reply) { return reply["error"]["desc"].get<std::string>(); }

TEST_F(QmpServerTest, GetfdNamesThePassedDescriptorUntilClosefd) {
    Peer p(io_, server_);
    p.greet_and_negotiate();
    const Json none = p.ask(R"({"execute": "getfd", "arguments": {"fdname": "out"}})");
    EXPECT_EQ(desc(none), "No file descriptor supplied via SCM_RIGHTS");

    WatchedPipe pipe;
    EXPECT_EQ(p.ask_passing(R"({"execute": "getfd", "arguments": {"fdname": "out"}, "id": 1})", {pipe.write_end.get()}),
              Json::parse(R"({"return": {}, "id": 1})"));
    EXPECT_FALSE(pipe.closed_everywhere()) << "the server holds the named descriptor";
    EXPECT_EQ(p.ask(R"({"execute": "closefd", "arguments": {"fdname": "out"}})"), Json::parse(R"({"return": {}})"));
    EXPECT_TRUE(pipe.closed_everywhere()) << "closefd closed it";
    EXPECT_EQ(desc(p.ask(R"({"execute": "closefd", "arguments": {"fdname": "out"}})")),
              "File descriptor named 'out' not found");
}

TEST_F(QmpServerTest, GetfdRefusesANameStartingWithADigitAndClosesTheDescriptor) {
    Peer p(io_, server_);
    p.greet_and_negotiate();
    WatchedPipe pipe;
    const Json r = p.ask_passing(R"({"execute": "getfd", "arguments": {"fdname": "1st"}})", {pipe.write_end.get()});
    EXPECT_EQ(error_class(r), "GenericError");
    EXPECT_EQ(desc(r), "Parameter 'fdname' expects a name not starting with a digit");
    EXPECT_TRUE(pipe.closed_everywhere());
}

TEST_F(QmpServerTest, NamedDescriptorsCloseWithTheirConnectionOnly) {
    Peer a(io_, server_), b(io_, server_);
    a.greet_and_negotiate();
    b.greet_and_negotiate();
    WatchedPipe pipe;
    EXPECT_EQ(a.ask_passing(R"({"execute": "getfd", "arguments": {"fdname": "x"}})", {pipe.write_end.get()}),
              Json::parse(R"({"return": {}})"));
    EXPECT_EQ(desc(b.ask(R"({"execute": "closefd", "arguments": {"fdname": "x"}})")),
              "File descriptor named 'x' not found")
        << "names are per connection, as QEMU's per monitor";
    EXPECT_FALSE(pipe.closed_everywhere());
    a.close();
    for (int i = 0; i < 50 && server_.client_count() > 1; ++i) io_.run_for(10ms);
    EXPECT_TRUE(pipe.closed_everywhere()) << "the connection's end closed it";
}

TEST_F(QmpServerTest, GetfdTakesTheFirstOfTheLatestMessagesDescriptorsAndClosesTheRest) {
    Peer p(io_, server_);
    p.greet_and_negotiate();
    WatchedPipe stale, first, second, third;
    // Descriptors on a message that is not getfd wait; the next message with descriptors replaces them.
    EXPECT_EQ(p.ask_passing(R"({"execute": "query-status"})", {stale.write_end.get()})["return"]["status"], "prelaunch");
    EXPECT_EQ(p.ask_passing(R"({"execute": "getfd", "arguments": {"fdname": "f"}})",
                            {first.write_end.get(), second.write_end.get(), third.write_end.get()}),
              Json::parse(R"({"return": {}})"));
    EXPECT_TRUE(stale.closed_everywhere()) << "replaced";
    EXPECT_TRUE(second.closed_everywhere());
    EXPECT_TRUE(third.closed_everywhere());
    EXPECT_FALSE(first.closed_everywhere()) << "named 'f'";
    // getfd on a name in use replaces (and closes) the old descriptor.
    WatchedPipe again;
    EXPECT_EQ(p.ask_passing(R"({"execute": "getfd", "arguments": {"fdname": "f"}})", {again.write_end.get()}),
              Json::parse(R"({"return": {}})"));
    EXPECT_TRUE(first.closed_everywhere());
    EXPECT_FALSE(again.closed_everywhere());
    EXPECT_EQ(desc(p.ask(R"({"execute": "getfd", "arguments": {"fdname": "g"}})")),
              "No file descriptor supplied via SCM_RIGHTS")
        << "each passed descriptor is named once";
}

TEST_F(QmpServerTest, MoreDescriptorsThanAMessageTakesAreClosedAndLogged) {
    LogCapture log;
    Peer p(io_, server_);
    p.greet_and_negotiate();
    std::vector<WatchedPipe> pipes(kMaxPassedFds + 4);
    std::vector<int> fds;
    for (auto& w : pipes) fds.push_back(w.write_end.get());
    EXPECT_EQ(p.ask_passing(R"({"execute": "getfd", "arguments": {"fdname": "many"}})", fds),
              Json::parse(R"({"return": {}})"));
    EXPECT_FALSE(pipes[0].closed_everywhere());
    for (std::size_t i = 1; i < pipes.size(); ++i) EXPECT_TRUE(pipes[i].closed_everywhere()) << i;
    EXPECT_EQ(log.count("more than 16 file descriptors in one message: the rest were dropped"), 1u) << log.text();
}

TEST_F(QmpServerTest, AConnectionNamesAtMostSoManyDescriptors) {
    Peer p(io_, server_);
    p.greet_and_negotiate();
    WatchedPipe pipe;
    for (std::size_t i = 0; i < QmpDispatcher::kMaxNamedFds; ++i)
        ASSERT_EQ(p.ask_passing(R"({"execute": "getfd", "arguments": {"fdname": "n)" + std::to_string(i) + R"("}})",
                                {pipe.write_end.get()}),
                  Json::parse(R"({"return": {}})"))
            << i;
    const Json over = p.ask_passing(R"({"execute": "getfd", "arguments": {"fdname": "one-more"}})", {pipe.write_end.get()});
    EXPECT_EQ(desc(over), "this connection holds 64 named file descriptors already; closefd one first");
    EXPECT_EQ(p.ask_passing(R"({"execute": "getfd", "arguments": {"fdname": "n0"}})", {pipe.write_end.get()}),
              Json::parse(R"({"return": {}})"))
        << "a name in use may be replaced at the limit";
}

TEST_F(QmpServerTest, DumpToANamedDescriptorHandsItToTheDomainAndUsesItUp) {
    Peer p(io_, server_);
    p.greet_and_negotiate();
    int dumps = 0;
    domain_.on_dump = [&](const Json& args, Fd target) {
        if (++dumps == 1) throw CommandError(kGenericError, "not now");
        EXPECT_EQ(args["protocol"], "fd:core");
        ASSERT_TRUE(target.valid());
        EXPECT_EQ(::write(target.get(), "ELF", 3), 3);
    };
    const std::string dump = R"({"execute": "dump-guest-memory", "arguments": {"paging": false, "protocol": "fd:core"}})";
    EXPECT_EQ(desc(p.ask(dump)), "File descriptor named 'core' has not been found");
    EXPECT_EQ(dumps, 0) << "the domain is not asked without the descriptor";

    WatchedPipe pipe;
    ASSERT_EQ(p.ask_passing(R"({"execute": "getfd", "arguments": {"fdname": "core"}})", {pipe.write_end.get()}),
              Json::parse(R"({"return": {}})"));
    EXPECT_EQ(desc(p.ask(dump)), "not now");
    EXPECT_EQ(p.ask(dump), Json::parse(R"({"return": {}})")) << "a refused dump left the name for another try";
    EXPECT_EQ(pipe.drain(), "ELF");
    EXPECT_TRUE(pipe.closed_everywhere()) << "the dump used the descriptor up";
    EXPECT_EQ(desc(p.ask(dump)), "File descriptor named 'core' has not been found");
    EXPECT_EQ(dumps, 2);
}

}  // namespace
}  // namespace vmm::qmp
