// vmm-anchor's hand-written command-line parser (anchor/anchor_cli.h): every option in both
// spellings, the defaults, and each kind of usage error naming what is wrong.
#include "anchor/anchor_cli.h"
#include "anchor/stop_reason.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include <unistd.h>

namespace vmm::anchor {
namespace {

using ::testing::HasSubstr;

AnchorCliResult parse(std::vector<std::string> args) { return parse_anchor_cli(args); }

TEST(AnchorCliTest, DefaultsWithOnlyTheManifest) {
    const auto r = parse({"--manifest", "/m.json"});
    ASSERT_TRUE(r.cli) << r.message;
    EXPECT_EQ(r.cli->manifest_path, "/m.json");
    EXPECT_EQ(r.cli->options.run_dir, "/run/hypervisor");
    EXPECT_EQ(r.cli->options.console, ConsoleMode::Stdio);
    EXPECT_EQ(r.cli->options.seccomp, "on");
    EXPECT_EQ(r.cli->log_level, "warn");
    EXPECT_TRUE(r.cli->allow_dirs.empty());
    EXPECT_TRUE(r.cli->dump_acpi.empty());
    EXPECT_FALSE(r.cli->jail);
    EXPECT_FALSE(r.cli->jail_pid_ns);
    EXPECT_FALSE(r.cli->jail_uid);
}

TEST(AnchorCliTest, EveryOptionInBothSpellings) {
    const std::string dir = ::testing::TempDir();
    const auto r = parse({"--manifest=/m.json", "--run-dir", "/run/x", "--console=pty", "--seccomp", "log",
                          "--allow-dir", "/images", "--allow-dir=/disks", "--jail", "--jail-uid", "70000",
                          "--jail-gid=70001", "--jail-pid-ns", "--log-level", "debug", "--dump-acpi", dir});
    ASSERT_TRUE(r.cli) << r.message;
    EXPECT_EQ(r.cli->manifest_path, "/m.json");
    EXPECT_EQ(r.cli->options.run_dir, "/run/x");
    EXPECT_EQ(r.cli->options.console, ConsoleMode::Pty);
    EXPECT_EQ(r.cli->options.seccomp, "log");
    EXPECT_EQ(r.cli->allow_dirs, (std::vector<std::string>{"/images", "/disks"}));
    EXPECT_TRUE(r.cli->jail);
    EXPECT_TRUE(r.cli->jail_pid_ns);
    EXPECT_EQ(r.cli->jail_uid, 70000u);
    EXPECT_EQ(r.cli->jail_gid, 70001u);
    EXPECT_EQ(r.cli->log_level, "debug");
    EXPECT_EQ(r.cli->dump_acpi, dir);
    // an empty value given with '=' is a value ("" run dir is the caller's problem, not a parse error)
    EXPECT_TRUE(parse({"--manifest=/m.json", "--log-level="}).cli);
}

TEST(AnchorCliTest, HelpExitsZeroAndTheUsageListsEveryOption) {
    for (const char* h : {"-h", "--help"}) {
        const auto r = parse({"--seccomp", "bogus", h});  // arguments are taken in order: the error first
        EXPECT_FALSE(r.cli);
        EXPECT_EQ(r.exit_status, kExitUsage) << h;
        const auto help = parse({h, "--seccomp", "bogus"});
        EXPECT_FALSE(help.cli);
        EXPECT_EQ(help.exit_status, 0) << h;
    }
    const std::string usage = anchor_usage("vmm-anchor");
    for (const char* o : {"--manifest", "--run-dir", "--console", "--dump-acpi", "--seccomp", "--allow-dir", "--jail",
                          "--jail-uid", "--jail-gid", "--jail-pid-ns", "--log-level", "--ready-fd"})
        EXPECT_THAT(usage, HasSubstr(o));
}

TEST(AnchorCliTest, UsageErrorsNameWhatIsWrong) {
    const std::string missing = (std::filesystem::path(::testing::TempDir()) / "no-such-dir").string();
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
        {{}, "--manifest is required"},
        {{"--run-dir", "/x"}, "--manifest is required"},
        {{"--manifest"}, "--manifest needs a value"},
        {{"--manifest", "/m", "--console", "serial"}, "--console: \"serial\" is not one of stdio, pty"},
        {{"--manifest", "/m", "--seccomp", "strict"}, "--seccomp: \"strict\" is not one of on, log, off"},
        {{"--manifest", "/m", "--dump-acpi", missing}, "is not an existing directory"},
        {{"--manifest", "/m", "--jail", "--jail-uid", "root"}, "--jail-uid: \"root\" is not a number"},
        {{"--manifest", "/m", "--jail", "--jail-uid", "-1"}, "is not a number"},
        {{"--manifest", "/m", "--jail", "--jail-uid", "99999999999"}, "is not a number"},
        {{"--manifest", "/m", "--jail-uid", "5"}, "--jail-uid and --jail-gid need --jail"},
        {{"--manifest", "/m", "--jail", "--jail-gid", "5"}, "--jail-gid needs --jail-uid"},
        {{"--manifest", "/m", "--jail=yes"}, "--jail takes no value"},
        {{"--manifest", "/m", "--jail-pid-ns"}, "--jail-pid-ns needs --jail"},
        {{"--manifest", "/m", "--jail", "--jail-pid-ns=1"}, "--jail-pid-ns takes no value"},
        {{"--manifest", "/m", "--verbose"}, "unknown option \"--verbose\""},
        {{"--manifest", "/m", "extra"}, "unexpected argument \"extra\""},
        {{"--manifest", "/m", "-v"}, "unexpected argument \"-v\""},
        {{"--manifest", "/m", "--ready-fd", "1"}, "--ready-fd: 1 is not an open descriptor above 2"},
        {{"--manifest", "/m", "--ready-fd", "x3"}, "--ready-fd: x3 is not an open descriptor above 2"},
        {{"--manifest", "/m", "--ready-fd"}, "--ready-fd needs a value"},
    };
    for (const auto& [args, want] : cases) {
        const auto r = parse(args);
        EXPECT_FALSE(r.cli) << want;
        EXPECT_EQ(r.exit_status, kExitUsage) << want;
        EXPECT_THAT(r.message, HasSubstr(want));
        EXPECT_THAT(r.message, HasSubstr("vmm-anchor: "));
    }
}

TEST(AnchorCliTest, ReadyFdTakesAnOpenDescriptorAndIsLeftOutOfTheRestartsArguments) {
    int p[2];
    ASSERT_EQ(::pipe(p), 0);
    const std::string fd = std::to_string(p[1]);
    const auto r = parse({"--manifest", "/m.json", "--ready-fd", fd});
    ASSERT_TRUE(r.cli) << r.message;
    EXPECT_EQ(r.cli->ready_fd, p[1]);
    EXPECT_TRUE(parse({"--manifest", "/m.json", "--ready-fd=" + fd}).cli);
    EXPECT_FALSE(parse({"--manifest", "/m.json"}).cli->ready_fd);
    ::close(p[0]);
    ::close(p[1]);
    // closed now: the same number is no longer a descriptor this process holds
    EXPECT_THAT(parse({"--manifest", "/m.json", "--ready-fd", fd}).message, HasSubstr("is not an open descriptor"));

    EXPECT_EQ(without_ready_fd({"vmm-anchor", "--manifest", "/m", "--ready-fd", "3", "--jail"}),
              (std::vector<std::string>{"vmm-anchor", "--manifest", "/m", "--jail"}));
    EXPECT_EQ(without_ready_fd({"vmm-anchor", "--ready-fd=7", "--manifest=/m"}),
              (std::vector<std::string>{"vmm-anchor", "--manifest=/m"}));
    EXPECT_EQ(without_ready_fd({"vmm-anchor", "--manifest", "/m"}),
              (std::vector<std::string>{"vmm-anchor", "--manifest", "/m"}));
}

}  // namespace
}  // namespace vmm::anchor
