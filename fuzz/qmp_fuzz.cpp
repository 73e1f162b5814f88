// Fuzzes what a QMP client controls: the byte stream into JsonStream (qmp/json_stream.h) and each
// parsed value (or parse error) into QmpDispatcher (qmp/qmp_dispatcher.h) with FakeDomain as the
// domain, then the reply through the writer (qmp/json_writer.h), as QmpServer does per message.
//
// Input: byte 0 chooses how the rest is cut into chunks and whether small limits are used (so
// the message-size, token and nesting limits are reached by small inputs); the rest is the
// stream. Properties checked besides "no crash":
//  - the stream splits the same whatever the chunking (one feed vs. many small feeds);
//  - every reply is printable ASCII text holding one JSON object.
#include "qmp/fake_domain.h"
#include "qmp/json_stream.h"
#include "qmp/json_writer.h"
#include "qmp/qmp_dispatcher.h"
#include "qmp/qmp_server.h"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace {

using vmm::qmp::JsonStream;

[[noreturn]] void fail(const char* what, const std::string& detail) {
    std::fprintf(stderr, "qmp_fuzz: %s: %s\n", what, detail.c_str());
    std::abort();
}

std::string describe(const JsonStream::Item& item) {
    return item.ok() ? "value " + vmm::qmp::to_qmp_text(*item.value) : "error " + item.error;
}

std::vector<JsonStream::Item> parse(std::string_view stream, const vmm::qmp::JsonLimits& limits,
                                    std::size_t chunk_seed) {
    JsonStream parser(limits);
    std::vector<JsonStream::Item> items;
    std::size_t pos = 0, step = 0;
    while (pos < stream.size()) {
        // Chunk sizes 1..16 in a pattern chosen by the seed (0 = everything at once).
        const std::size_t len = chunk_seed == 0 ? stream.size() : 1 + ((chunk_seed * 7 + step * 13) % 16);
        const std::size_t n = std::min(len, stream.size() - pos);
        parser.feed(stream.substr(pos, n), items);
        pos += n;
        ++step;
    }
    parser.finish(items);
    return items;
}

void check_reply(const vmm::qmp::Json& reply) {
    const std::string line = vmm::qmp::to_qmp_line(reply);
    for (const char c : line) {
        const auto b = static_cast<unsigned char>(c);
        if (b >= 0x80 || (b < 0x20 && c != '\r' && c != '\n')) fail("reply is not printable ASCII", line);
    }
    // Standard JSON, as clients (go-qemu, Python's json) read it. Not JsonStream: it refuses
    // "\u0000" as QEMU's parser does, and an error reply may quote a stray NUL that way.
    const auto back = vmm::qmp::Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (back.is_discarded() || !back.is_object()) fail("reply is not one JSON object", line);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint8_t control = data[0];
    const std::string_view stream(reinterpret_cast<const char*>(data + 1), size - 1);
    vmm::qmp::JsonLimits limits;
    if (control & 0x10) limits = {.max_message_bytes = 512, .max_tokens = 64, .max_nesting = 8};

    const auto whole = parse(stream, limits, 0);
    const auto chunked = parse(stream, limits, (control & 0x0f) + 1);
    if (whole.size() != chunked.size()) {
        fail("chunking changed the number of items",
             std::to_string(whole.size()) + " vs " + std::to_string(chunked.size()));
    }
    for (std::size_t i = 0; i < whole.size(); ++i) {
        const std::string a = describe(whole[i]), b = describe(chunked[i]);
        if (a != b) fail("chunking changed an item", "#" + std::to_string(i) + ": " + a + " vs " + b);
    }

    vmm::qmp::FakeDomain domain("fuzz", (control & 0x20) ? "running" : "prelaunch");
    domain.guest_acpi = (control & 0x40) != 0;
    const vmm::qmp::QmpServerOptions options;
    vmm::qmp::QmpDispatcher dispatcher(domain, options);
    vmm::qmp::QmpDispatcher::Session session;
    check_reply(dispatcher.greeting());
    for (const auto& item : whole) {
        check_reply(dispatcher.handle(item, session));
    }
    return 0;
}
