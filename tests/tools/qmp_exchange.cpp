// qmp_exchange: replays a QMP exchange script against a socket and writes, per step, the
// shape of what came back (keys, error classes, event names, ids; not values), so the same
// script can be compared between qemu-system-x86_64 and vmm's QmpServer
// (tests/integration/qmp_peer_qemu.sh).
//
//   qmp_exchange SOCKET SCRIPT SHAPES_OUT RAW_OUT
//
// SCRIPT: one input per line, sent as is (plus "\n"); "\xHH" stands for a raw byte; lines
// starting with '#' and empty lines are skipped. After each input a sync command
// {"execute": "query-name", "id": "sync-N"} is sent, and everything up to its reply belongs
// to the step (it works before negotiation too: the error reply echoes the id). A line
// starting with "@eof " is sent without a sync and read until the peer closes (quit).
// Shape rules: objects list sorted keys; "class", "event", "id", "guest" and "reason" keep
// their values; strings, numbers and booleans become their type; an array becomes the set of
// its element shapes; the greeting's capability list is not compared (deliberate: vmm offers
// no "oob").
#include "qmp/json_writer.h"
#include "qmp/qmp_client.h"

#include <algorithm>
#include <fstream>
#include <iostream>
#include <set>
#include <string>

namespace {

using vmm::qmp::Json;

std::string shape(const Json& v, const std::string& key = {}) {
    if (key == "class" || key == "event" || key == "id" || key == "guest" || key == "reason") {
        return vmm::qmp::to_qmp_text(v);
    }
    switch (v.type()) {
    case Json::value_t::object: {
        std::set<std::string> parts;
        for (const auto& [k, member] : v.items()) parts.insert("\"" + k + "\": " + shape(member, k));
        std::string out = "{";
        for (const auto& p : parts) out += (out.size() > 1 ? ", " : "") + p;
        return out + "}";
    }
    case Json::value_t::array: {
        std::set<std::string> parts;
        for (const auto& e : v) parts.insert(shape(e));
        std::string out = "[";
        for (const auto& p : parts) out += (out.size() > 1 ? ", " : "") + p;
        return out + "]";
    }
    case Json::value_t::string: return "<string>";
    case Json::value_t::boolean: return "<bool>";
    case Json::value_t::null: return "null";
    case Json::value_t::discarded: return "<discarded>";
    default: return "<number>";
    }
}

std::string unescape(const std::string& line) {
    std::string out;
    for (std::size_t i = 0; i < line.size(); ++i) {
        if (line[i] == '\\' && i + 3 < line.size() + 0 && line[i + 1] == 'x' &&
            std::isxdigit(static_cast<unsigned char>(line[i + 2])) &&
            std::isxdigit(static_cast<unsigned char>(line[i + 3]))) {
            out += static_cast<char>(std::stoi(line.substr(i + 2, 2), nullptr, 16));
            i += 3;
        } else {
            out += line[i];
        }
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 5) {
        std::cerr << "usage: qmp_exchange SOCKET SCRIPT SHAPES_OUT RAW_OUT\n";
        return 64;
    }
    using namespace std::chrono_literals;
    std::ifstream script(argv[2]);
    std::ofstream shapes(argv[3]), raw(argv[4]);
    if (!script || !shapes || !raw) {
        std::cerr << "qmp_exchange: cannot open files\n";
        return 64;
    }
    try {
        vmm::qmp::QmpClient c(argv[1], 10s, /*negotiate=*/false);
        Json greeting = c.greeting();
        raw << "greeting\n  " << vmm::qmp::to_qmp_text(greeting) << "\n";
        if (greeting["QMP"].contains("capabilities")) greeting["QMP"]["capabilities"] = "<capabilities>";
        shapes << "greeting\n  " << shape(greeting) << "\n";
        std::string line;
        int step = 0;
        while (std::getline(script, line)) {
            if (line.empty() || line[0] == '#') continue;
            const bool until_eof = line.rfind("@eof ", 0) == 0;
            if (until_eof) line = line.substr(5);
            ++step;
            shapes << "> " << line << "\n";
            raw << "> " << line << "\n";
            const std::string sync = "sync-" + std::to_string(step);
            std::string bytes = unescape(line) + "\n";
            if (!until_eof) bytes += R"({"execute": "query-name", "id": ")" + sync + "\"}\n";
            c.send_raw(bytes);
            for (;;) {
                std::optional<Json> m;
                try {
                    m = c.read_message(5s);
                } catch (const vmm::Error&) {
                    shapes << "  <closed>\n";
                    raw << "  <closed>\n";
                    break;
                }
                if (!m) {
                    shapes << "  <timeout>\n";
                    raw << "  <timeout>\n";
                    break;
                }
                if (!until_eof && m->is_object() && m->value("id", Json()) == Json(sync)) break;
                shapes << "  " << shape(*m) << "\n";
                raw << "  " << vmm::qmp::to_qmp_text(*m) << "\n";
            }
            if (until_eof) break;
        }
    } catch (const std::exception& e) {
        std::cerr << "qmp_exchange: " << e.what() << "\n";
        return 1;
    }
    return 0;
}
