// JsonStream: QEMU json-streamer behaviour (splitting, coalescing, errors, resync, limits).
#include "qmp/json_stream.h"
#include "qmp/json_writer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace vmm::qmp {
namespace {

std::vector<std::string> describe(const std::vector<JsonStream::Item>& items) {
    std::vector<std::string> out;
    for (const auto& i : items) out.push_back(i.ok() ? to_qmp_text(*i.value) : "ERR " + i.error);
    return out;
}

std::vector<std::string> run(const std::string& input) {
    JsonStream s;
    return describe(s.feed(input));
}

TEST(QmpJsonStream, CoalescedMessagesComeOutInOrder) {
    EXPECT_EQ(run(R"({"a": 1}{"b": [1, 2]}  {"c": {}})"),
              (std::vector<std::string>{R"({"a": 1})", R"({"b": [1, 2]})", R"({"c": {}})"}));
}

TEST(QmpJsonStream, SplitAtEveryByteGivesTheSameValues) {
    const std::string input =
        R"({"execute": "query-status", "id": {"n": -12.5e3, "s": "a\"b\u00e9\ud83d\ude00"}})"
        "\r\n"
        R"(["x", true, false, null, 0, 18446744073709551615])";
    const auto whole = run(input);
    ASSERT_EQ(whole.size(), 2u);
    JsonStream s;
    std::vector<JsonStream::Item> items;
    for (char c : input) s.feed(std::string_view(&c, 1), items);
    EXPECT_EQ(describe(items), whole);
    EXPECT_EQ(s.pending_bytes(), 0u);
    const Json v = *JsonStream().feed(input)[0].value;
    EXPECT_EQ(v["id"]["s"].get<std::string>(), "a\"b\xC3\xA9\xF0\x9F\x98\x80");
    EXPECT_DOUBLE_EQ(v["id"]["n"].get<double>(), -12500.0);
}

TEST(QmpJsonStream, NumbersKeepTheirKind) {
    JsonStream s;
    auto items = s.feed(R"([1, -1, 18446744073709551615, 1e2, 123456789012345678901234])");
    ASSERT_TRUE(items.at(0).ok());
    const Json& a = *items[0].value;
    EXPECT_TRUE(a[0].is_number_integer());
    EXPECT_EQ(a[1].get<std::int64_t>(), -1);
    EXPECT_TRUE(a[2].is_number_unsigned());
    EXPECT_TRUE(a[3].is_number_float());
    EXPECT_TRUE(a[4].is_number_float());
}

TEST(QmpJsonStream, TopLevelScalarsAreValuesOfTheirOwn) {
    // QEMU's streamer completes a message whenever brackets balance; a number ends at the
    // next non-digit.
    EXPECT_EQ(run(R"([1,2]3"x"null )"),
              (std::vector<std::string>{"[1, 2]", "3", "\"x\"", "null"}));
    JsonStream s;
    EXPECT_TRUE(s.feed("42").empty());  // could continue
    std::vector<JsonStream::Item> items;
    s.finish(items);
    EXPECT_EQ(describe(items), std::vector<std::string>{"42"});
}

TEST(QmpJsonStream, SingleQuotedStringsAsQemu) {
    EXPECT_EQ(run(R"({'execute': 'it\'s', "b": "\'"})"),
              std::vector<std::string>{R"({"execute": "it's", "b": "'"})"});
}

TEST(QmpJsonStream, ParseErrorsUseQemuMessages) {
    EXPECT_EQ(run(R"({"a" 1})"),
              std::vector<std::string>{"ERR JSON parse error, missing : in object pair"});
    EXPECT_EQ(run(R"({"a": 1,})"), std::vector<std::string>{"ERR JSON parse error, expecting value"});
    EXPECT_EQ(run("}"), std::vector<std::string>{"ERR JSON parse error, expecting value"});
    EXPECT_EQ(run(R"({"a": 1 "b"})"),
              std::vector<std::string>{"ERR JSON parse error, expected separator in dict"});
    EXPECT_EQ(run("[1 2]"), std::vector<std::string>{"ERR JSON parse error, expected separator in list"});
    EXPECT_EQ(run(R"({"a": tru})"),
              std::vector<std::string>{"ERR JSON parse error, invalid keyword 'tru'"});
    EXPECT_EQ(run(R"({"a": "\uZZZZ"})"),
              std::vector<std::string>{"ERR JSON parse error, \\uZZZZ is not a valid Unicode character"});
    EXPECT_EQ(run(R"({"a": "\ud800x"})"),
              std::vector<std::string>{"ERR JSON parse error, \\ud800 is not a valid Unicode character"});
    EXPECT_EQ(run(R"({"a": "\u0000"})"),
              std::vector<std::string>{"ERR JSON parse error, \\u0000 is not supported"});
    EXPECT_EQ(run("{\"a\": \"\xC3\x28\"}"),
              std::vector<std::string>{"ERR JSON parse error, invalid UTF-8 sequence in string"});
    EXPECT_EQ(run(R"({"a": 1, "a": 2})"), std::vector<std::string>{"ERR JSON parse error, duplicate key"});
    EXPECT_EQ(run(R"({1: 2})"),
              std::vector<std::string>{"ERR JSON parse error, key is not a string in object"});
}

TEST(QmpJsonStream, LexicalErrorSkipsToAStructuralCharacter) {
    // Same sequence of errors as qemu-system-x86_64 7.2 answers for this input.
    EXPECT_EQ(run("{\"execute\": @abc, \"x\":[1,2]}\n{\"ok\": 1}"),
              (std::vector<std::string>{"ERR JSON parse error, stray '@'",
                                        "ERR JSON parse error, expecting value", "\"x\"",
                                        "ERR JSON parse error, expecting value", "[1, 2]",
                                        "ERR JSON parse error, expecting value", R"({"ok": 1})"}));
    // A control character inside a string is an error; the newline resyncs.
    EXPECT_EQ(run("{\"execute\": \"qu\n{\"ok\": 1}"),
              (std::vector<std::string>{"ERR JSON parse error, stray '\"qu\n'", R"({"ok": 1})"}));
    // 0xFF forces a resync mid-message (qmp-spec).
    EXPECT_EQ(run("{\"execute\": \"a\xFF\n{\"ok\": 1}"),
              (std::vector<std::string>{"ERR JSON parse error, stray '\"a\xFF'", R"({"ok": 1})"}));
}

TEST(QmpJsonStream, OversizeMessageIsRejectedAndMemoryStaysBounded) {
    JsonLimits limits;
    limits.max_message_bytes = 1024;
    JsonStream s(limits);
    std::vector<JsonStream::Item> items;
    s.feed("{\"execute\": \"", items);
    const std::string chunk(100, 'a');
    for (int i = 0; i < 1000; ++i) {
        s.feed(chunk, items);
        ASSERT_LE(s.pending_bytes(), limits.max_message_bytes);
    }
    ASSERT_EQ(items.size(), 1u);
    EXPECT_EQ(items[0].error, "JSON token size limit exceeded");
    items.clear();
    // Recovery ends at the closing brace; the next message parses again.
    s.feed("\"}\n{\"ok\": 1}", items);
    EXPECT_EQ(describe(items),
              (std::vector<std::string>{"ERR JSON parse error, expecting value", R"({"ok": 1})"}));
}

TEST(QmpJsonStream, ManySmallTokensHitTheSizeLimit) {
    JsonLimits limits;
    limits.max_message_bytes = 1000;
    JsonStream s(limits);
    std::string big = "[";
    for (int i = 0; i < 1000; ++i) big += "1,";
    auto items = s.feed(big);
    ASSERT_FALSE(items.empty());
    EXPECT_EQ(items[0].error, "JSON token size limit exceeded");
    EXPECT_LE(s.pending_bytes(), limits.max_message_bytes);
}

TEST(QmpJsonStream, NestingLimit) {
    JsonStream s;
    auto items = s.feed(std::string(1100, '['));
    ASSERT_FALSE(items.empty());
    EXPECT_EQ(items[0].error, "JSON nesting depth limit exceeded");
}

TEST(QmpJsonStream, WriterUsesQemuSpacingAndAscii) {
    Json v = {{"return", {{"a", Json::array({1, "\xC3\xA9"})}}}, {"id", nullptr}};
    EXPECT_EQ(to_qmp_line(v), "{\"return\": {\"a\": [1, \"\\u00e9\"]}, \"id\": null}\r\n");
    Json bad = std::string("\xFF");
    EXPECT_EQ(to_qmp_text(bad), "\"\\ufffd\"");
}

}  // namespace
}  // namespace vmm::qmp
