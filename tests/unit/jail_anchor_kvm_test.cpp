// vmm-anchor --jail (anchor/anchor_jail.h, jail/mount_jail.h) with real guests: the virtio-blk
// guest's data path goes through the jail's bind mount to the host file; a jailed anchor's root
// (seen from the host through /proc/PID/root) holds the domain's files and nothing else, it
// has its own network namespace without taps and the host's with one, it serves QMP and a socket
// console, and it restarts on system_reset inside the jail (started with relative paths, which
// the restart reads again in there), also as a dedicated non-root uid; its dump-guest-memory
// reaches a file outside the jail only through a descriptor passed with getfd.
// Needs /dev/kvm and root.
#include "qmp/qmp_client.h"
#include "common/fd.h"
#include "tests/support/elf_core.h"
#include "tests/support/proc_status.h"
#include "tests/support/process.h"
#include "tests/support/test_paths.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

namespace vmm::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;
using Json = qmp::Json;

constexpr const char* kFlat32 = R"("flat": {"load_address": "0x100000", "entry": "0x100000", "mode": "protected32"})";

class JailedAnchorTest : public ::testing::Test {
protected:
    void SetUp() override {
        if (auto why = kvm_unavailable_reason(); !why.empty()) GTEST_SKIP() << why;
        if (::geteuid() != 0) GTEST_SKIP() << "the jail needs root";
        dir_ = make_temp_dir("anchor-jail");
        ::chmod(dir_.c_str(), 0755);
        std::ofstream(dir_ + "/secret.txt") << "not for the guest";
    }
    void TearDown() override {
        anchor_.finish();  // before its files go
        if (!dir_.empty()) fs::remove_all(dir_);
    }
    std::string manifest(const std::string& name, const std::string& guest, const std::string& extra, bool paused) {
        const std::string path = dir_ + "/" + name + ".json";
        std::ofstream(path) << "{\"name\": \"" << name << "\", \"kernel\": \"" << guest_path(guest)
                            << "\", \"memory_mb\": 16, " << (paused ? "\"start_paused\": true, " : "") << kFlat32
                            << (extra.empty() ? "" : ", ") << extra << "}";
        ::chmod(path.c_str(), 0644);
        return path;
    }
    std::string disk(std::size_t size = 64 * 1024) {
        const std::string path = dir_ + "/disk.img";
        std::ofstream(path) << std::string(size, 'z');
        ::chmod(path.c_str(), 0666);
        return path;
    }
    bool has_tap() const { return ::access("/dev/net/tun", R_OK | W_OK) == 0; }
    // With relative paths, from dir_ (as a user types `vmm-anchor --manifest x.json --run-dir
    // run --jail`): the restart re-reads them inside the jail.
    void start_in_dir(const std::string& manifest_leaf) {
        const std::string cmd = "cd '" + dir_ + "' && exec '" + anchor_path() + "' --manifest " + manifest_leaf +
                                " --run-dir run --jail";
        anchor_.start({"/bin/sh", "-c", cmd}, 120s);
    }
    void start(const std::string& manifest_path, const std::vector<std::string>& extra) {
        std::vector<std::string> argv{anchor_path(), "--manifest", manifest_path, "--run-dir", dir_ + "/run", "--jail"};
        argv.insert(argv.end(), extra.begin(), extra.end());
        anchor_.start(argv, 120s);
    }
    ProcessResult finish() { return anchor_.finish(); }
    // Resumes the domain and resets it through QMP (the anchor restarts by re-exec), then
    // returns a connection to the restarted anchor's QMP.
    std::unique_ptr<qmp::QmpClient> reset_and_reconnect(const std::string& name) {
        {
            qmp::QmpClient q(state(name, "qmp"), 30s);
            q.execute("cont");
            q.execute("system_reset");
        }
        std::this_thread::sleep_for(500ms);
        return std::make_unique<qmp::QmpClient>(state(name, "qmp"), 30s);
    }
    std::string state(const std::string& name, const std::string& leaf) { return dir_ + "/run/kvm/" + name + "/" + leaf; }
    int pid(const std::string& name) { return wait_pid_file(dir_ + "/run/kvm/" + name); }
    static std::string ns(const std::string& pid, const std::string& kind) {
        std::error_code ec;
        return fs::read_symlink("/proc/" + pid + "/ns/" + kind, ec).string();
    }
    // What the anchor sees at `path`, through /proc/PID/root.
    static bool sees(int pid, const std::string& path) {
        struct stat st{};
        return ::lstat(("/proc/" + std::to_string(pid) + "/root" + path).c_str(), &st) == 0;
    }
    static std::vector<std::string> top_level(int pid) {
        std::vector<std::string> names;
        std::error_code ec;
        for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/root", ec))
            names.push_back(e.path().filename().string());
        std::sort(names.begin(), names.end());
        return names;
    }
    static void connect_and_write(const std::string& sock) {
        const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock.c_str());
        EXPECT_EQ(::connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << sock << ": " << std::strerror(errno);
        EXPECT_EQ(::write(s, "hello\n", 6), 6);
        ::close(s);
    }

    std::string dir_;
    BackgroundProcess anchor_;
};

// The virtio-blk guest writes sector 1 and reads it back: through the jail's bind mount, the
// host file has the guest's bytes.
TEST_F(JailedAnchorTest, TheBlkGuestWritesTheHostFileThroughTheJail) {
    const std::string path = disk(128 * 512);
    auto r = run_process({anchor_path(), "--manifest",
                          manifest("jblk", "virtio_blk.bin", "\"disks\": [{\"path\": \"" + path + "\"}]", false),
                          "--run-dir", dir_ + "/run", "--jail"},
                         60s);
    EXPECT_THAT(r.out, HasSubstr("sector 1 read back ok")) << r.out << r.err;
    EXPECT_EQ(r.exit_status, (0x42 << 1) | 1) << r.out << r.err;
    std::ifstream f(path, std::ios::binary);
    std::string after((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    ASSERT_EQ(after.size(), 128u * 512);
    for (int i = 0; i < 512; ++i) ASSERT_EQ(static_cast<std::uint8_t>(after[512 + i]), std::uint8_t(i * 7 + 3)) << i;
    EXPECT_TRUE(fs::is_empty(dir_ + "/run/.jail-root")) << "the jail's tmpfs never shows on the host";
}

TEST_F(JailedAnchorTest, TheJailHoldsTheDomainsFilesOnlyAndSurvivesRestarts) {
    const bool tap = has_tap();
    std::string extra = R"("disks": [{"path": ")" + disk() + R"("}], "consoles": [{"kind": "socket", "path": ")" + dir_ +
                        R"(/sock/con.sock"}])";
    fs::create_directories(dir_ + "/sock");
    if (tap) extra += R"(, "nics": [{"tap": "vmmjail0"}])";
    manifest("jailed", "idle.bin", extra, true);
    start_in_dir("jailed.json");
    const int p = pid("jailed");
    ASSERT_GT(p, 0);
    qmp::QmpClient c(state("jailed", "qmp"), 30s);
    EXPECT_EQ(c.execute("query-status")["status"], "prelaunch");

    // What the anchor sees: its files, its devices, its runtime; nothing else.
    EXPECT_TRUE(sees(p, "/.vmm-jail"));
    EXPECT_TRUE(sees(p, dir_ + "/disk.img"));
    EXPECT_TRUE(sees(p, dir_ + "/jailed.json"));
    EXPECT_TRUE(sees(p, guest_path("idle.bin")));
    EXPECT_TRUE(sees(p, anchor_path()));
    EXPECT_TRUE(sees(p, "/dev/kvm"));
    EXPECT_TRUE(sees(p, "/dev/ptmx"));
    EXPECT_EQ(sees(p, "/dev/net/tun"), tap);
    EXPECT_FALSE(sees(p, dir_ + "/secret.txt")) << "a file next to the disk";
    EXPECT_FALSE(sees(p, "/etc/passwd"));
    EXPECT_FALSE(sees(p, "/proc/self"));
    EXPECT_FALSE(sees(p, "/sys/class"));
    // With a tap, the kernel's reports on its mitigations (how a tap transmits follows them).
    const std::string vulnerabilities = "/sys/devices/system/cpu/vulnerabilities/meltdown";
    EXPECT_EQ(sees(p, vulnerabilities), tap && fs::exists(vulnerabilities));
    EXPECT_FALSE(sees(p, "/dev/sda"));
    EXPECT_FALSE(sees(p, "/root"));
    EXPECT_FALSE(sees(p, "/home"));
    // The system's own top level (the loader, the libraries, the devices), plus wherever this checkout, its guests
    // and the test's directory live: /work, /tmp, /check, ... depending on where CI cloned the repo.
    std::vector<std::string> allowed{".vmm-jail", "bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "run", "sbin",
                                     "usr"};
    for (const std::string& path : {anchor_path(), guest_path("idle.bin"), dir_})
        allowed.push_back(fs::path(path).relative_path().begin()->string());
    if (tap) allowed.push_back("sys");
    for (const auto& name : top_level(p))
        EXPECT_THAT(allowed, ::testing::Contains(name)) << "unexpected at the jail's top level: " << name;
    EXPECT_FALSE(sees(p, "/root")) << "no home directory";
    // Namespaces: mount, IPC, UTS always; network only without a tap (the tap lives in the host's).
    EXPECT_NE(ns(std::to_string(p), "mnt"), ns("self", "mnt"));
    EXPECT_NE(ns(std::to_string(p), "uts"), ns("self", "uts"));
    EXPECT_EQ(ns(std::to_string(p), "net") == ns("self", "net"), tap);
    EXPECT_EQ(ns(std::to_string(p), "pid"), ns("self", "pid")) << "vmmd and pillar see the anchor's real pids";
    // Privileges: none while the guest runs (plus NET_ADMIN with a tap, for the restart).
    EXPECT_EQ(wait_proc_status(p, "Seccomp", "2"), "Seccomp:\t2");
    EXPECT_EQ(proc_status_line(p, "CapEff"), tap ? "CapEff:\t0000000000001000" : "CapEff:\t0000000000000000");
    EXPECT_EQ(proc_status_line(p, "CapBnd"), tap ? "CapBnd:\t0000000000001000" : "CapBnd:\t0000000000000000");
    EXPECT_EQ(proc_status_line(p, "NoNewPrivs"), "NoNewPrivs:\t1");
    connect_and_write(dir_ + "/sock/con.sock");

    // Restarts: the same pid, back in prelaunch, still jailed.
    for (int round = 0; round < 2; ++round) {
        auto again = reset_and_reconnect("jailed");
        EXPECT_EQ(again->execute("query-status")["status"], "prelaunch") << "round " << round;
        EXPECT_EQ(pid("jailed"), p);
        EXPECT_FALSE(sees(p, "/etc/passwd")) << "round " << round;
        EXPECT_TRUE(sees(p, "/.vmm-jail")) << "round " << round;
    }
    {
        qmp::QmpClient q(state("jailed", "qmp"), 30s);
        q.execute("quit");
    }
    const auto r = finish();
    EXPECT_EQ(r.exit_status, 8) << r.err;
    EXPECT_THAT(r.err, Not(HasSubstr("seccomp")));
    EXPECT_TRUE(!fs::exists(dir_ + "/run/kvm/jailed") || fs::is_empty(dir_ + "/run/kvm/jailed"))
        << "the anchor removed its files";
}

TEST_F(JailedAnchorTest, ADedicatedUidRunsAndRestartsTheDomain) {
    const std::string extra = R"("disks": [{"path": ")" + disk() + R"("}])";
    start(manifest("jailuid", "idle.bin", extra, true), {"--jail-uid", "65534", "--jail-gid", "65534"});
    const int p = pid("jailuid");
    ASSERT_GT(p, 0);
    {
        qmp::QmpClient c(state("jailuid", "qmp"), 30s);
        EXPECT_EQ(c.execute("query-status")["status"], "prelaunch");
        EXPECT_EQ(proc_status_line(p, "Uid"), "Uid:\t65534\t65534\t65534\t65534");
        EXPECT_EQ(proc_status_line(p, "Gid"), "Gid:\t65534\t65534\t65534\t65534");
        EXPECT_EQ(wait_proc_status(p, "CapEff", "0000000000000000"), "CapEff:\t0000000000000000");
        struct stat st{};
        ASSERT_EQ(::stat(state("jailuid", "qmp").c_str(), &st), 0);
        EXPECT_EQ(st.st_uid, 65534u) << "the anchor's own files belong to its uid";
        c.execute("cont");
        c.execute("system_reset");
    }
    std::this_thread::sleep_for(500ms);
    {
        qmp::QmpClient again(state("jailuid", "qmp"), 30s);
        EXPECT_EQ(again.execute("query-status")["status"], "prelaunch");
        EXPECT_EQ(pid("jailuid"), p);
        EXPECT_EQ(proc_status_line(p, "Uid"), "Uid:\t65534\t65534\t65534\t65534");
        again.execute("quit");
    }
    const auto r = finish();
    EXPECT_EQ(r.exit_status, 8) << r.err;
}

// --jail-pid-ns (jail/pid_namespace.h): the process the host started (the `pid` file's) is the
// keeper; the anchor under it is pid 1 of a namespace of its own. QMP still reports host thread
// ids (a host pins vCPUs by them), a restart stays in the namespace under the same keeper, and
// SIGTERM to the keeper stops the domain as it would stop an anchor without one.
TEST_F(JailedAnchorTest, APidNamespaceOfItsOwnReportsHostThreadIdsAndSurvivesRestarts) {
    const std::string extra = R"("disks": [{"path": ")" + disk() + R"("}])";
    start(manifest("jpid", "idle.bin", extra, true), {"--jail-pid-ns", "--jail-uid", "65534", "--jail-gid", "65534"});
    const int keeper = pid("jpid");
    ASSERT_GT(keeper, 0);
    auto anchor_of = [](int k) {
        std::ifstream f("/proc/" + std::to_string(k) + "/task/" + std::to_string(k) + "/children");
        int child = 0;
        f >> child;
        return child;
    };
    auto vcpu0_host_tid = [&] {
        qmp::QmpClient c(state("jpid", "qmp"), 30s);
        const Json cpus = c.execute("query-cpus-fast");
        return cpus.size() == 1 ? cpus[0]["thread-id"].get<int>() : -1;
    };
    int anchor = 0;
    {
        qmp::QmpClient c(state("jpid", "qmp"), 30s);
        EXPECT_EQ(c.execute("query-status")["status"], "prelaunch");
        anchor = anchor_of(keeper);
        ASSERT_GT(anchor, 0) << "the keeper has a child";
        EXPECT_NE(ns(std::to_string(anchor), "pid"), ns("self", "pid"));
        EXPECT_EQ(ns(std::to_string(keeper), "pid"), ns("self", "pid"));
        EXPECT_EQ(proc_status_line(anchor, "NSpid"), "NSpid:\t" + std::to_string(anchor) + "\t1");
        EXPECT_EQ(proc_status_line(anchor, "Uid"), "Uid:\t65534\t65534\t65534\t65534");
        EXPECT_EQ(wait_proc_status(anchor, "Seccomp", "2"), "Seccomp:\t2");
        // The keeper: root outside the jail, but with CAP_KILL only and a filter of its own.
        EXPECT_EQ(proc_status_line(keeper, "CapEff"), "CapEff:\t0000000000000020");
        EXPECT_EQ(proc_status_line(keeper, "Seccomp"), "Seccomp:\t2");
        EXPECT_TRUE(sees(anchor, "/.vmm-jail"));
        EXPECT_FALSE(sees(keeper, "/.vmm-jail")) << "the keeper stays in the host's mount namespace";
    }
    for (int round = 0; round < 2; ++round) {
        const int tid = vcpu0_host_tid();
        ASSERT_GT(tid, 1) << "round " << round;
        EXPECT_EQ(proc_status_line(tid, "Tgid"), "Tgid:\t" + std::to_string(anchor)) << "a host id of the anchor's thread";
        EXPECT_THAT(proc_status_line(tid, "Name"), HasSubstr("vcpu0"));
        auto again = reset_and_reconnect("jpid");
        EXPECT_EQ(again->execute("query-status")["status"], "prelaunch") << "round " << round;
        EXPECT_EQ(pid("jpid"), keeper);
        EXPECT_EQ(anchor_of(keeper), anchor) << "the restart stays pid 1 of the same namespace";
        EXPECT_NE(vcpu0_host_tid(), tid) << "a new vCPU thread, its host id found again";
    }
    ASSERT_EQ(::kill(keeper, SIGTERM), 0);
    const auto r = finish();
    EXPECT_EQ(r.exit_status, 8) << r.err;  // kExitHostRequest, passed on by the keeper
    EXPECT_THAT(r.err, Not(HasSubstr("seccomp")));
    EXPECT_FALSE(fs::exists("/proc/" + std::to_string(anchor))) << "the anchor ended with its keeper";
}

// The guest's exit status reaches the host through the keeper.
TEST_F(JailedAnchorTest, InAPidNamespaceTheBlkGuestsExitStatusComesThroughTheKeeper) {
    const std::string path = disk(128 * 512);
    auto r = run_process({anchor_path(), "--manifest",
                          manifest("jpidblk", "virtio_blk.bin", "\"disks\": [{\"path\": \"" + path + "\"}]", false),
                          "--run-dir", dir_ + "/run", "--jail", "--jail-pid-ns"},
                         60s);
    EXPECT_THAT(r.out, HasSubstr("sector 1 read back ok")) << r.out << r.err;
    EXPECT_EQ(r.exit_status, (0x42 << 1) | 1) << r.out << r.err;
}

// A manifest that names its jail identity is jailed as that uid without --jail (the controller
// chose it for this domain).
TEST_F(JailedAnchorTest, AManifestsJailIdentityJailsTheDomainWithoutTheFlag) {
    const std::string extra = R"("disks": [{"path": ")" + disk() + R"("}], "jail": {"uid": 65534, "gid": 65533})";
    anchor_.start({anchor_path(), "--manifest", manifest("jailman", "idle.bin", extra, true), "--run-dir", dir_ + "/run"},
                  120s);
    const int p = pid("jailman");
    ASSERT_GT(p, 0);
    qmp::QmpClient c(state("jailman", "qmp"), 30s);
    EXPECT_EQ(c.execute("query-status")["status"], "prelaunch");
    EXPECT_EQ(proc_status_line(p, "Uid"), "Uid:\t65534\t65534\t65534\t65534");
    EXPECT_EQ(proc_status_line(p, "Gid"), "Gid:\t65533\t65533\t65533\t65533");
    EXPECT_TRUE(sees(p, "/.vmm-jail"));
    EXPECT_FALSE(sees(p, "/etc/passwd"));
    c.execute("quit");
    EXPECT_EQ(finish().exit_status, 8);
}

// A file the manifest names that the jail's uid cannot open: the start fails and says which.
TEST_F(JailedAnchorTest, AFileTheUidCannotOpenIsNamed) {
    const std::string path = disk();
    ::chmod(path.c_str(), 0600);
    auto r = run_process({anchor_path(), "--manifest",
                          manifest("jailbad", "idle.bin", "\"disks\": [{\"path\": \"" + path + "\"}]", true),
                          "--run-dir", dir_ + "/run", "--jail", "--jail-uid", "65534"},
                         60s);
    EXPECT_NE(r.exit_status, 0);
    EXPECT_THAT(r.err, HasSubstr(path)) << r.err;
    EXPECT_THAT(r.err, HasSubstr("Permission denied")) << r.err;
}

// dump-guest-memory from a jailed anchor: a path outside the jail does not exist in there (the
// dump fails with the reason and the anchor lives); a descriptor passed with getfd reaches out,
// and the core written through it holds the guest's memory.
TEST_F(JailedAnchorTest, ADumpReachesOutOfTheJailThroughAPassedDescriptor) {
    fs::create_directories(dir_ + "/cores");
    start(manifest("jaildump", "idle.bin", "", true), {"--jail-uid", "65534"});
    const int p = pid("jaildump");
    ASSERT_GT(p, 0);
    qmp::QmpClient events(state("jaildump", "listener.qmp"), 30s);
    qmp::QmpClient c(state("jaildump", "qmp"), 30s);
    const std::string core = dir_ + "/cores/core";
    EXPECT_FALSE(sees(p, dir_ + "/cores"));
    c.execute("dump-guest-memory", {{"paging", false}, {"protocol", "file:" + core}}, 60s);
    auto done = [&] {
        for (auto e = events.next_event(30s); e; e = events.next_event(30s))
            if ((*e)["event"] == "DUMP_COMPLETED") return *e;
        return Json("no DUMP_COMPLETED");
    };
    const Json failed = done();
    EXPECT_EQ(failed["data"]["result"]["status"], "failed") << failed.dump();
    EXPECT_THAT(failed["data"].value("error", ""), HasSubstr("No such file or directory")) << failed.dump();
    EXPECT_FALSE(fs::exists(core));

    // Opened here, as root, outside the jail; the anchor (uid 65534) writes through it.
    Fd out = open_fd(core.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    EXPECT_EQ(c.execute_passing_fds("getfd", {{"fdname", "core"}}, {out.get()}), Json::object());
    out.reset();
    c.execute("dump-guest-memory", {{"paging", false}, {"protocol", "fd:core"}}, 60s);
    const Json ok = done();
    EXPECT_EQ(ok["data"]["result"]["status"], "completed") << ok.dump();
    std::ifstream in(core, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ifstream img(guest_path("idle.bin"), std::ios::binary);
    const std::string image((std::istreambuf_iterator<char>(img)), std::istreambuf_iterator<char>());
    EXPECT_EQ(core_bytes(bytes, 0x100000, 64), image.substr(0, 64)) << "idle.bin at 1 MiB, in the core";
    try {
        c.execute("dump-guest-memory", {{"paging", false}, {"protocol", "fd:core"}});
        ADD_FAILURE() << "the descriptor was not used up";
    } catch (const qmp::CommandError& e) {
        EXPECT_EQ(e.desc(), "File descriptor named 'core' has not been found");
    }
    c.execute("quit");
    EXPECT_EQ(finish().exit_status, 8);
}

}  // namespace
}  // namespace vmm::test
