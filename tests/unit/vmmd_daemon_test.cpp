// vmmd's daemon: the state machine through the API with the null hypervisor, errors that name
// the field or domain, adoption by a new daemon, the restart policy with a crashing fake
// anchor, and vmctl end to end against a live API socket.
#include "hypervisor/kvm/kvm_hypervisor.h"
#include "hypervisor/null/null_hypervisor.h"
#include "tests/support/test_paths.h"
#include "vmctl/commands.h"
#include "vmmd/api_server.h"
#include "vmmd/daemon.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace vmm::vmmd {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::HasSubstr;

class DaemonTest : public ::testing::Test {
protected:
    void SetUp() override {
        kernel_ = root_ + "/kernel.bin";
        std::ofstream(kernel_) << "x";
    }
    void TearDown() override {
        for (const auto& dir : {root_ + "/run/kvm"}) {
            if (!fs::exists(dir)) continue;
            for (const auto& d : fs::directory_iterator(dir)) {
                const int pid = run_pid(d.path().string());
                if (pid > 0) ::kill(pid, SIGKILL);
            }
        }
        fs::remove_all(root_);
    }
    static int run_pid(const std::string& dir) {
        std::ifstream in(dir + "/pid");
        int pid = -1;
        in >> pid;
        return pid;
    }
    // cgroup_parent: the kvm hypervisor places anchors under <root>/cgroup/<cgroup_parent>.
    std::unique_ptr<Daemon> make_daemon(DaemonConfig cfg = {}, bool with_kvm = false,
                                        const std::string& cgroup_parent = "") {
        auto d = std::make_unique<Daemon>(io_, cfg);
        d->add_hypervisor(std::make_unique<hv::NullHypervisor>(io_, root_ + "/run"));
        if (with_kvm) {
            hv::kvm::KvmConfig k;
            k.anchor_path = test::build_dir() + "/tests/tools/fake_anchor";
            k.run_dir = root_ + "/run";
            k.manifest_dir = root_ + "/run/vmmd/manifests";
            k.log_dir = root_ + "/run/vmmd/logs";
            k.cgroup_root = root_ + "/cgroup";
            k.cgroup_parent = cgroup_parent;
            d->add_hypervisor(std::make_unique<hv::kvm::KvmHypervisor>(io_, k));
        }
        return d;
    }
    DomainManifest manifest(const std::string& name, const std::string& hv = "null", const std::string& script = "") {
        json doc = {{"name", name}, {"hypervisor", hv}, {"vcpus", 2}, {"memory_mb", 64}, {"kernel", kernel_}};
        if (!script.empty()) doc["cmdline"] = "fake-anchor: " + script;
        return parse_manifest(doc, root_);
    }
    template <typename Pred> bool run_until(Pred pred, int ms = 8000) {
        const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
        while (!pred() && std::chrono::steady_clock::now() < end) {
            io_.restart();
            io_.run_for(std::chrono::milliseconds(10));
        }
        return pred();
    }
    json start(Daemon& d, const DomainManifest& m, std::optional<RestartPolicy> p = std::nullopt) {
        json reply;
        d.start(m, p, [&](const json& r) { reply = r; });
        EXPECT_TRUE(run_until([&] { return !reply.is_null(); }));
        return reply;
    }
    json stop(Daemon& d, const std::string& name) {
        json reply;
        d.stop(name, {false, std::chrono::milliseconds(5000)}, [&](const json& r) { reply = r; });
        EXPECT_TRUE(run_until([&] { return !reply.is_null(); }));
        return reply;
    }

    std::string root_ = test::make_temp_dir("vmmd");
    std::string kernel_;
    boost::asio::io_context io_;
};

TEST_F(DaemonTest, NullDomainGoesThroughItsStates) {
    auto d = make_daemon();
    EXPECT_EQ(d->state("a"), std::nullopt);
    const json r = start(*d, manifest("a"));
    ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
    EXPECT_EQ(r["domain"]["state"], "running");
    EXPECT_EQ(r["domain"]["hypervisor"], "null");
    EXPECT_EQ(r["domain"]["vcpus"], 2);
    EXPECT_EQ(d->pause("a")["domain"]["state"], "paused");
    EXPECT_EQ(d->resume("a")["domain"]["state"], "running");
    const json s = stop(*d, "a");
    ASSERT_TRUE(s["ok"].get<bool>()) << s.dump();
    EXPECT_EQ(s["domain"]["state"], "stopped");
    EXPECT_EQ(d->list()["domains"][0]["state"], "stopped") << "a stopped domain stays listed";
    EXPECT_THROW(d->resume("a"), ApiError);
    d->remove("a");
    EXPECT_EQ(d->list()["domains"].size(), 0u);
}

// --allow-dir: a manifest whose kernel lies elsewhere is refused naming the field, and nothing
// is started; under an allowed directory it starts.
TEST_F(DaemonTest, ManifestPathsOutsideTheAllowListAreRefused) {
    DaemonConfig cfg;
    cfg.allowed_dirs = {root_ + "/images"};
    auto d = make_daemon(cfg);
    try {
        d->start(manifest("outside"), std::nullopt, [](const json&) {});
        FAIL() << "a kernel outside the allowed directories was accepted";
    } catch (const ApiError& e) {
        EXPECT_EQ(e.field, "kernel");
        EXPECT_EQ(e.domain, "outside");
        EXPECT_THAT(e.what(), HasSubstr("outside the allowed directories"));
    }
    EXPECT_EQ(d->state("outside"), std::nullopt);
    DaemonConfig open_cfg;
    open_cfg.allowed_dirs = {std::filesystem::path(kernel_).parent_path().string()};
    auto d2 = make_daemon(open_cfg);
    EXPECT_TRUE(start(*d2, manifest("inside"))["ok"].get<bool>());
}

TEST_F(DaemonTest, ErrorsNameTheFieldOrTheDomain) {
    auto d = make_daemon();
    try {
        d->start(manifest("k", "kvm"), std::nullopt, [](const json&) {});
        FAIL() << "kvm is not enabled in this daemon";
    } catch (const ApiError& e) {
        EXPECT_EQ(e.field, "hypervisor");
        EXPECT_EQ(e.domain, "k");
        EXPECT_THAT(e.what(), HasSubstr("\"null\""));
    }
    start(*d, manifest("a"));
    try {
        d->start(manifest("a"), std::nullopt, [](const json&) {});
        FAIL();
    } catch (const ApiError& e) {
        EXPECT_EQ(e.domain, "a");
        EXPECT_THAT(e.what(), HasSubstr("already running"));
    }
    try {
        d->info("nope");
        FAIL();
    } catch (const ApiError& e) {
        EXPECT_EQ(e.domain, "nope");
    }
    EXPECT_THROW(d->remove("a"), ApiError) << "a running domain is not forgotten";
}

// A kvm domain whose anchor cannot be placed in its cgroup (fake cgroupfs tree without the
// memory controller) is a start error naming the domain and the cgroup; nothing is left running
// and no record stays behind.
TEST_F(DaemonTest, ACgroupPlacementFailureIsTheDomainsStartError) {
    fs::create_directories(root_ + "/cgroup/vmm");
    std::ofstream(root_ + "/cgroup/vmm/cgroup.controllers") << "cpu pids\n";
    auto d = make_daemon({}, true, "vmm");
    try {
        d->start(manifest("capped", "kvm"), std::nullopt, [](const json&) {});
        FAIL() << "started outside its cgroup";
    } catch (const ApiError& e) {
        EXPECT_EQ(e.domain, "capped");
        EXPECT_THAT(e.what(), HasSubstr("domain 'capped': kvm: cannot place the anchor in cgroup " + root_ +
                                        "/cgroup/vmm/capped"));
        EXPECT_THAT(e.what(), HasSubstr("\"memory\" is not available"));
    }
    EXPECT_EQ(d->state("capped"), std::nullopt);
    EXPECT_EQ(run_pid(root_ + "/run/kvm/capped"), -1) << "no anchor came up";

    std::ofstream(root_ + "/cgroup/vmm/cgroup.controllers") << "cpu memory pids\n";
    const json r = start(*d, manifest("capped", "kvm"));
    ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
    std::ifstream procs(root_ + "/cgroup/vmm/capped/cgroup.procs");
    int placed = -1;
    procs >> placed;
    EXPECT_EQ(placed, r["domain"]["pid"].get<int>());
}

TEST_F(DaemonTest, ANewDaemonAdoptsRunningDomainsAndForgetsNothing) {
    {
        auto first = make_daemon();
        start(*first, manifest("a"));
        start(*first, manifest("b"));
        first->pause("b");
    }
    auto second = make_daemon();
    const auto names = second->adopt_all();
    EXPECT_EQ(names.size(), 2u);
    EXPECT_EQ(second->state("a"), DomainState::Running);
    EXPECT_EQ(second->state("b"), DomainState::Paused);
    EXPECT_TRUE(second->info("a")["domain"]["adopted"].get<bool>());
    EXPECT_EQ(second->info("a")["domain"]["memory_mb"], 64);
}

TEST_F(DaemonTest, CrashedKvmDomainIsRestartedWithBackoff) {
    DaemonConfig cfg;
    cfg.backoff_initial = std::chrono::milliseconds(50);
    cfg.backoff_max = std::chrono::milliseconds(400);
    auto d = make_daemon(cfg, true);
    const json r = start(*d, manifest("flaky", "kvm", "crash-after-ms=300"), RestartPolicy::OnCrash);
    ASSERT_TRUE(r["ok"].get<bool>()) << r.dump();
    const int first_pid = r["domain"]["pid"].get<int>();
    ASSERT_TRUE(run_until([&] { return d->state("flaky") == DomainState::Crashed; }));
    json info = d->info("flaky")["domain"];
    EXPECT_EQ(info["exit"]["status"], 6);
    EXPECT_TRUE(info["exit"]["crashed"].get<bool>());
    ASSERT_TRUE(run_until([&] { return d->info("flaky")["domain"]["restarts"].get<unsigned>() >= 1 &&
                                       d->state("flaky") == DomainState::Running; }));
    EXPECT_NE(d->info("flaky")["domain"]["pid"].get<int>(), first_pid);
    json s;
    d->stop("flaky", {true, std::chrono::milliseconds(100)}, [&](const json& x) { s = x; });
    ASSERT_TRUE(run_until([&] { return !s.is_null(); }));
    EXPECT_EQ(d->state("flaky"), DomainState::Stopped);
}

TEST_F(DaemonTest, NeverPolicyLeavesACrashedDomainCrashed) {
    auto d = make_daemon({}, true);
    start(*d, manifest("once", "kvm", "crash-after-ms=100 crash-signal=11"));
    ASSERT_TRUE(run_until([&] { return d->state("once") == DomainState::Crashed; }));
    const json info = d->info("once")["domain"];
    EXPECT_EQ(info["exit"]["status"], 128 + SIGSEGV);
    EXPECT_THAT(info["exit"]["detail"].get<std::string>(), HasSubstr("SIGSEGV"));
    EXPECT_FALSE(info["restart_pending"].get<bool>());
}

// vmctl against a live API socket served from a thread.
TEST_F(DaemonTest, VmctlDrivesTheApi) {
    auto d = make_daemon();
    const std::string sock = root_ + "/vmmd.sock";
    auto api = std::make_unique<ApiServer>(io_, *d, sock);
    auto guard = boost::asio::make_work_guard(io_);
    std::thread loop([&] { io_.run(); });
    auto vmctl = [&](std::vector<std::string> args, std::string* out_text = nullptr, std::string* err_text = nullptr) {
        args.insert(args.begin(), {"--socket", sock});
        std::ostringstream out, err;
        const int rc = vmctl::run_vmctl(args, out, err);
        if (out_text) *out_text = out.str();
        if (err_text) *err_text = err.str();
        return rc;
    };
    const std::string file = root_ + "/web.json";
    std::ofstream(file) << json{{"name", "web"}, {"hypervisor", "null"}, {"vcpus", 3}, {"memory_mb", 2048},
                                {"kernel", "kernel.bin"}}.dump();
    std::string out, err;
    EXPECT_EQ(vmctl({"start", file}, &out, &err), 0) << err;
    EXPECT_THAT(out, HasSubstr("web: running on null"));
    EXPECT_THAT(out, HasSubstr(root_ + "/run/null/web")) << "start prints the state dir";

    EXPECT_EQ(vmctl({"list"}, &out), 0);
    EXPECT_THAT(out, HasSubstr("NAME"));
    EXPECT_THAT(out, ::testing::ContainsRegex("web +null +running +3 +2G +- +[0-9]+s"));
    EXPECT_EQ(vmctl({"info", "web", "--json"}, &out), 0);
    EXPECT_EQ(json::parse(out)["vcpus"], 3);
    EXPECT_EQ(vmctl({"pause", "web"}, &out), 0);
    EXPECT_THAT(out, HasSubstr("paused"));
    EXPECT_EQ(vmctl({"resume", "web"}, &out), 0);
    EXPECT_EQ(vmctl({"console", "web"}, &out, &err), 1);
    EXPECT_THAT(err, HasSubstr("has no console"));

    const std::string bad = root_ + "/bad.json";
    std::ofstream(bad) << json{{"name", "bad"}, {"vcpus", 0}, {"kernel", "kernel.bin"}}.dump();
    EXPECT_EQ(vmctl({"start", bad}, &out, &err), 1);
    EXPECT_THAT(err, HasSubstr("\"vcpus\""));
    EXPECT_EQ(vmctl({"stop", "ghost"}, &out, &err), 1);
    EXPECT_THAT(err, HasSubstr("'ghost'"));

    EXPECT_EQ(vmctl({"stop", "web", "--timeout", "2"}, &out, &err), 0) << err;
    EXPECT_THAT(out, HasSubstr("web: stopped"));
    EXPECT_EQ(vmctl({"bogus"}, &out, &err), 64);

    guard.reset();
    io_.stop();
    loop.join();
    api.reset();
    EXPECT_EQ(vmctl({"list"}, &out, &err), 69) << "vmmd is gone";
    EXPECT_THAT(err, HasSubstr(sock));
}

}  // namespace
}  // namespace vmm::vmmd
