// ApiServer: vmmd's JSON API on a unix stream socket (docs/API.md). One request per line, one
// JSON reply per line, in order; start and stop replies come when the domain runs / has
// stopped, so a client waits on its connection. Runs on the io_context thread.
#pragma once

#include "vmmd/daemon.h"

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>

#include <nlohmann/json.hpp>

#include <string>

namespace vmm::vmmd {

class ApiServer {
public:
    // Listens on `socket_path` (mode 0660). A stale socket file (nobody answers) is replaced;
    // a live one is an error: another vmmd runs.
    ApiServer(boost::asio::io_context& io, Daemon& daemon, std::string socket_path);
    ~ApiServer();

    // Serves one request document; `done` gets the reply (maybe later). Used by the sessions
    // and by tests.
    void handle(const nlohmann::json& request, Reply done);

private:
    void accept();

    boost::asio::io_context& io_;
    Daemon& daemon_;
    std::string path_;
    boost::asio::local::stream_protocol::acceptor acceptor_;
};

}  // namespace vmm::vmmd
