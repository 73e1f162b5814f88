// QEMU-style JSON text (see json_writer.h).
#include "qmp/json_writer.h"

namespace vmm::qmp {

namespace {

void write(const Json& v, std::string& out) {
    switch (v.type()) {
    case Json::value_t::object: {
        out += '{';
        bool first = true;
        for (const auto& [key, member] : v.items()) {
            if (!first) out += ", ";
            first = false;
            out += Json(key).dump(-1, ' ', true, Json::error_handler_t::replace);
            out += ": ";
            write(member, out);
        }
        out += '}';
        break;
    }
    case Json::value_t::array: {
        out += '[';
        bool first = true;
        for (const auto& element : v) {
            if (!first) out += ", ";
            first = false;
            write(element, out);
        }
        out += ']';
        break;
    }
    default:
        out += v.dump(-1, ' ', true, Json::error_handler_t::replace);
        break;
    }
}

}  // namespace

std::string to_qmp_text(const Json& value) {
    std::string out;
    write(value, out);
    return out;
}

std::string to_qmp_line(const Json& value) {
    std::string out = to_qmp_text(value);
    out += "\r\n";
    return out;
}

}  // namespace vmm::qmp
