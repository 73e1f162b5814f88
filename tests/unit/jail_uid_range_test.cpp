// jail/uid_range.h and the --jail-uids option of jail/jail_cli.h (vmmd's one uid per domain).
#include "jail/jail_cli.h"
#include "jail/uid_range.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace vmm::jail {
namespace {

using ::testing::HasSubstr;

TEST(UidRangeTest, ParsesARangeOrALoneUid) {
    EXPECT_EQ(parse_uid_range("100000-100999"), (UidRange{100000, 100999}));
    EXPECT_EQ(parse_uid_range("4242"), (UidRange{4242, 4242}));
    EXPECT_EQ(parse_uid_range("1-4294967294").size(), 4294967294ul);
}

TEST(UidRangeTest, RefusesWhatIsNoRangeOfJailUids) {
    const std::vector<std::pair<std::string, std::string>> bad = {
        {"", "'' is not a uid"},
        {"abc", "'abc' is not a uid"},
        {"10-", "'' is not a uid"},
        {"-10", "'' is not a uid"},
        {"10-20x", "'20x' is not a uid"},
        {"10--20", "'-20' is not a uid"},
        {"0-10", "uid 0 is root"},
        {"20-10", "the first uid is above the last"},
        {"1-4294967295", "above the largest uid"},
        {"1-99999999999999999999", "is not a uid"},
    };
    for (const auto& [text, why] : bad) {
        try {
            parse_uid_range(text);
            ADD_FAILURE() << "accepted '" << text << "'";
        } catch (const std::exception& e) {
            EXPECT_THAT(e.what(), HasSubstr(why)) << text;
        }
    }
}

TEST(UidRangeTest, TheLowestFreeUidFillsGapsAndRunsOut) {
    const UidRange r{100, 103};
    EXPECT_EQ(lowest_free_uid(r, {}), 100u);
    EXPECT_EQ(lowest_free_uid(r, {100, 101, 103}), 102u);
    EXPECT_EQ(lowest_free_uid(r, {5, 99, 101}), 100u) << "uids outside the range do not count";
    EXPECT_EQ(lowest_free_uid(r, {100, 101, 102}), 103u);
    EXPECT_EQ(lowest_free_uid(r, {100, 101, 102, 103}), std::nullopt);
    EXPECT_EQ(lowest_free_uid(r, {99, 100, 101, 102, 103, 104}), std::nullopt);
    EXPECT_EQ(lowest_free_uid(UidRange{4294967294u, 4294967294u}, {}), 4294967294u);
    EXPECT_EQ(lowest_free_uid(UidRange{4294967294u, 4294967294u}, {4294967294u}), std::nullopt);
}

struct Parsed {
    JailCliOptions options;
    std::string error;  // the parse error, else problem()
};

Parsed parse(std::vector<std::string> args) {
    Parsed p;
    CLI::App app;
    p.options.add_to(app, "run each kvm anchor in", true);
    args.insert(args.begin(), "vmmd");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    try {
        app.parse(static_cast<int>(argv.size()), argv.data());
        p.error = p.options.problem();
    } catch (const CLI::ParseError& e) {
        p.error = e.what();
    }
    return p;
}

TEST(JailCliTest, JailUidsGoesWithJailAndAGidButNotWithAJailUid) {
    auto ok = parse({"--jail", "--jail-uids", "100000-100009", "--jail-gid", "990"});
    EXPECT_EQ(ok.error, "");
    EXPECT_EQ(ok.options.uids(), (UidRange{100000, 100009}));
    EXPECT_EQ(ok.options.gid(), 990u);
    EXPECT_EQ(ok.options.uid(), std::nullopt);

    EXPECT_EQ(parse({"--jail"}).options.uids(), std::nullopt);
    EXPECT_THAT(parse({"--jail-uids", "100-200"}).error, HasSubstr("need --jail"));
    EXPECT_THAT(parse({"--jail", "--jail-uids", "100-200", "--jail-uid", "150"}).error,
                HasSubstr("--jail-uid and --jail-uids exclude each other"));
    EXPECT_THAT(parse({"--jail", "--jail-gid", "990"}).error, HasSubstr("--jail-gid needs --jail-uid or --jail-uids"));
    EXPECT_THAT(parse({"--jail", "--jail-uids", "0-200"}).error, HasSubstr("uid 0 is root"));
    EXPECT_THAT(parse({"--jail", "--jail-uids", "200-100"}).error, HasSubstr("the first uid is above the last"));
}

TEST(JailCliTest, TheAnchorHasNoJailUids) {
    CLI::App app;
    JailCliOptions o;
    o.add_to(app, "run in");
    std::vector<std::string> args{"vmm-anchor", "--jail", "--jail-uids", "1-2"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    EXPECT_THROW(app.parse(static_cast<int>(argv.size()), argv.data()), CLI::ParseError);
}

}  // namespace
}  // namespace vmm::jail
