// jail/systemd_scope.h: the StartTransientUnit call vmmd --systemd-slice makes to PID 1. The
// message is decoded here by the D-Bus specification's rules (independently of the encoder);
// the exchange runs against tests/support/fake_systemd_bus.h. Real systemd answers it in
// tests/integration/package_systemd_l1.sh.
#include "jail/systemd_scope.h"

#include "common/error.h"
#include "tests/support/fake_systemd_bus.h"
#include "tests/support/test_paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

using namespace vmm;
using ::testing::HasSubstr;

namespace {

// A reader of the message's bytes by the specification: little-endian, each value aligned to
// its size from the start of the message.
struct Decoder {
    const std::vector<std::uint8_t>& b;
    std::size_t at = 0;
    void align(std::size_t n) { at = (at + n - 1) / n * n; }
    std::uint32_t u32() {
        align(4);
        std::uint32_t v = 0;
        for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(b.at(at + static_cast<std::size_t>(i))) << (8 * i);
        at += 4;
        return v;
    }
    std::uint64_t u64() {
        align(8);
        std::uint64_t v = 0;
        for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(b.at(at + static_cast<std::size_t>(i))) << (8 * i);
        at += 8;
        return v;
    }
    std::string str() {
        const std::uint32_t n = u32();
        std::string s(b.begin() + static_cast<std::ptrdiff_t>(at), b.begin() + static_cast<std::ptrdiff_t>(at + n));
        EXPECT_EQ(b.at(at + n), 0) << "string " << s << " is NUL-terminated";
        at += n + 1;
        return s;
    }
    std::string sig() {
        const std::uint8_t n = b.at(at);
        std::string s(b.begin() + static_cast<std::ptrdiff_t>(at + 1), b.begin() + static_cast<std::ptrdiff_t>(at + 1 + n));
        at += 1 + n + 1;
        return s;
    }
};

struct Decoded {
    std::uint8_t type = 0;
    std::uint32_t serial = 0;
    std::map<int, std::string> fields;  // header field code -> its value (strings, signatures)
    std::string unit, mode;
    std::map<std::string, std::string> props;  // name -> "sig:value"
    std::uint32_t aux_count = 99;
};

Decoded decode(const std::vector<std::uint8_t>& m) {
    Decoded d;
    Decoder r{m};
    EXPECT_EQ(m.at(0), 'l');
    d.type = m.at(1);
    EXPECT_EQ(m.at(3), 1) << "protocol version";
    r.at = 4;
    const std::uint32_t body_len = r.u32();
    d.serial = r.u32();
    const std::uint32_t fields_len = r.u32();
    const std::size_t fields_end = r.at + fields_len;
    while (r.at < fields_end) {
        r.align(8);
        const int code = m.at(r.at++);
        const std::string type = r.sig();
        d.fields[code] = type == "g" ? r.sig() : r.str();
    }
    r.align(8);
    EXPECT_EQ(m.size() - r.at, body_len) << "the body length in the header";
    d.unit = r.str();
    d.mode = r.str();
    const std::uint32_t props_len = r.u32();
    r.align(8);
    const std::size_t props_end = r.at + props_len;
    while (r.at < props_end) {
        r.align(8);
        const std::string name = r.str();
        const std::string type = r.sig();
        if (type == "s") {
            d.props[name] = "s:" + r.str();
        } else if (type == "t") {
            d.props[name] = "t:" + std::to_string(r.u64());
        } else if (type == "au") {
            const std::uint32_t n = r.u32();
            std::string v = "au:";
            for (std::uint32_t i = 0; i < n / 4; ++i) v += std::to_string(r.u32()) + " ";
            d.props[name] = v;
        } else {
            ADD_FAILURE() << "unexpected property type " << type;
            break;
        }
    }
    EXPECT_EQ(r.at, props_end) << "the properties array's length";
    d.aux_count = r.u32();
    r.align(8);
    EXPECT_EQ(r.at, m.size()) << "nothing after the (empty) auxiliary array and its padding";
    return d;
}

jail::ScopeRequest request() {
    jail::ScopeRequest q;
    q.unit = "vmm-web.scope";
    q.slice = "machine.slice";
    q.description = "vmm domain web";
    q.pid = 4242;
    q.memory_max = 92606464;
    q.cpu_quota_per_sec_us = 1500000;
    return q;
}

}  // namespace

// Where systemd puts the scope's cgroup: a dash nests a slice in its parent slice.
TEST(SystemdScopeTest, TheScopesCgroupPathFollowsTheSliceNesting) {
    jail::ScopeRequest q;
    q.unit = "vmm-web.scope";
    q.slice = "machine.slice";
    EXPECT_EQ(jail::scope_cgroup_path(q), "/machine.slice/vmm-web.scope");
    q.slice = "edge-vms.slice";
    EXPECT_EQ(jail::scope_cgroup_path(q), "/edge.slice/edge-vms.slice/vmm-web.scope");
    q.slice = "a-b-c.slice";
    EXPECT_EQ(jail::scope_cgroup_path(q), "/a.slice/a-b.slice/a-b-c.slice/vmm-web.scope");
    q.slice = "-.slice";
    EXPECT_EQ(jail::scope_cgroup_path(q), "/vmm-web.scope");
    q.slice = "machine";
    EXPECT_THROW(jail::scope_cgroup_path(q), Error);
}

TEST(SystemdScopeTest, TheCallIsStartTransientUnitWithTheScopesProperties) {
    const Decoded d = decode(jail::start_transient_unit_message(request(), 9));
    EXPECT_EQ(d.type, 1) << "METHOD_CALL";
    EXPECT_EQ(d.serial, 9u);
    EXPECT_EQ(d.fields.at(1), "/org/freedesktop/systemd1");
    EXPECT_EQ(d.fields.at(2), "org.freedesktop.systemd1.Manager");
    EXPECT_EQ(d.fields.at(3), "StartTransientUnit");
    EXPECT_EQ(d.fields.at(6), "org.freedesktop.systemd1");
    EXPECT_EQ(d.fields.at(8), "ssa(sv)a(sa(sv))");
    EXPECT_EQ(d.unit, "vmm-web.scope");
    EXPECT_EQ(d.mode, "fail");
    const std::map<std::string, std::string> want = {
        {"Description", "s:vmm domain web"}, {"Slice", "s:machine.slice"},   {"CollectMode", "s:inactive-or-failed"},
        {"MemoryMax", "t:92606464"},          {"CPUQuotaPerSecUSec", "t:1500000"}, {"PIDs", "au:4242 "}};
    EXPECT_EQ(d.props, want);
    EXPECT_EQ(d.aux_count, 0u);

    // Without a cpu quota there is no CPUQuota property; odd lengths move every alignment.
    auto q = request();
    q.cpu_quota_per_sec_us.reset();
    q.unit = "vmm-a.scope";
    q.description = "vmm domain a";
    const Decoded e = decode(jail::start_transient_unit_message(q, 1));
    EXPECT_EQ(e.props.count("CPUQuotaPerSecUSec"), 0u);
    EXPECT_EQ(e.props.at("PIDs"), "au:4242 ");
    EXPECT_EQ(e.props.at("MemoryMax"), "t:92606464");
}

class SystemdScopeBusTest : public ::testing::Test {
protected:
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::string dir_ = test::make_temp_dir("sdscope");
};

TEST_F(SystemdScopeBusTest, TheJobComesBackAndTheCallIsTheMessageAsEncoded) {
    test::FakeSystemdBus bus(dir_ + "/private");
    EXPECT_EQ(jail::start_transient_scope(dir_ + "/private", request(), std::chrono::seconds(5)),
              "/org/freedesktop/systemd1/job/42");
    ASSERT_EQ(bus.calls().size(), 1u);
    EXPECT_EQ(bus.calls()[0], jail::start_transient_unit_message(request(), 1));
    EXPECT_EQ(bus.problem(), "");
}

TEST_F(SystemdScopeBusTest, SystemdsRefusalIsTheErrorWithItsNameAndMessage) {
    test::FakeSystemdBus bus(dir_ + "/private");
    bus.fail_with("org.freedesktop.systemd1.UnitExists", "Unit vmm-web.scope was already loaded or has a fragment file.");
    try {
        jail::start_transient_scope(dir_ + "/private", request(), std::chrono::seconds(5));
        FAIL() << "a refused scope was taken for a job";
    } catch (const Error& e) {
        EXPECT_STREQ(e.what(), "systemd: org.freedesktop.systemd1.UnitExists: Unit vmm-web.scope was already loaded or "
                               "has a fragment file.");
    }
}

TEST_F(SystemdScopeBusTest, NoBusAndABusThatSaysNothingSensibleAreErrorsNamingIt) {
    EXPECT_THAT([&] { jail::start_transient_scope(dir_ + "/none", request(), std::chrono::seconds(1)); },
                ::testing::ThrowsMessage<std::system_error>(HasSubstr("systemd bus: connect " + dir_ + "/none")));

    // A peer that refuses authentication, and one that answers with garbage then hangs up.
    for (const std::string& answer : {std::string("REJECTED EXTERNAL\r\n"), std::string("OK 00\r\nBxxxxxxxxxxxxxxxx")}) {
        const std::string path = dir_ + "/odd";
        const int l = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
        ::unlink(path.c_str());
        ASSERT_EQ(::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
        ASSERT_EQ(::listen(l, 1), 0);
        std::thread peer([&] {
            const int c = ::accept(l, nullptr, nullptr);
            char buf[512];
            (void)::recv(c, buf, sizeof buf, 0);
            (void)::send(c, answer.data(), answer.size(), MSG_NOSIGNAL);
            ::usleep(50000);
            ::close(c);
        });
        try {
            jail::start_transient_scope(path, request(), std::chrono::seconds(5));
            ADD_FAILURE() << "no error for " << answer;
        } catch (const Error& e) {
            EXPECT_THAT(e.what(), HasSubstr("systemd bus: ")) << answer;
        }
        peer.join();
        ::close(l);
    }
}
