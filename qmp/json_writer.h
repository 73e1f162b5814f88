// QMP's wire form of a JSON value, as QEMU writes it: `{"a": 1, "b": [1, 2]}` (a space after
// ':' and ','), ASCII only (qmp-spec: "sends its output encoded in ASCII"; other characters
// as \uXXXX escapes, invalid UTF-8 as U+FFFD), and a message ends with "\r\n" as QEMU's
// monitor output does. Pure functions; any thread.
#pragma once

#include "qmp/json_stream.h"

#include <string>

namespace vmm::qmp {

// The value alone, no line end.
std::string to_qmp_text(const Json& value);
// One QMP message: the value followed by "\r\n".
std::string to_qmp_line(const Json& value);

}  // namespace vmm::qmp
