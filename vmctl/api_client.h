// ApiClient: a blocking client of vmmd's JSON API (docs/API.md): one request line out, one
// reply line back, on one connection. Used by vmctl's main thread and by tests.
#pragma once

#include "common/fd.h"

#include <nlohmann/json.hpp>

#include <string>

namespace vmm::vmctl {

class ApiClient {
public:
    // Throws vmm::Error naming the socket when vmmd does not answer there.
    explicit ApiClient(const std::string& socket_path);
    // Sends `request`, waits for its reply (a start or stop reply comes when it is done).
    nlohmann::json call(const nlohmann::json& request);

private:
    std::string path_;
    Fd fd_;
    std::string pending_;
};

}  // namespace vmm::vmctl
