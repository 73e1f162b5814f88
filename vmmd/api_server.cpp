#include "vmmd/api_server.h"

#include "common/log.h"

#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

namespace vmm::vmmd {

using nlohmann::json;
using boost::asio::local::stream_protocol;

namespace {

auto log() { return logger("api"); }

// At most this much per request line: a manifest is a few KiB.
constexpr std::size_t kMaxRequest = 1 << 20;

std::string request_string(const json& req, const std::string& key, bool required = true) {
    if (!req.contains(key)) {
        if (required) throw ApiError("request field \"" + key + "\" is required", key);
        return {};
    }
    if (!req.at(key).is_string()) throw ApiError("request field \"" + key + "\" must be a string", key);
    return req.at(key).get<std::string>();
}

// One client connection: reads lines, answers them in order (a deferred start/stop reply
// holds back the next request's reply, never reorders).
class Session : public std::enable_shared_from_this<Session> {
public:
    Session(stream_protocol::socket socket, ApiServer& server) : socket_(std::move(socket)), server_(server) {}
    void run() { read(); }

private:
    void read() {
        auto self = shared_from_this();
        boost::asio::async_read_until(socket_, buffer_, '\n', [self](const boost::system::error_code& ec, std::size_t n) {
            if (ec) return;  // closed
            std::string line(boost::asio::buffers_begin(self->buffer_.data()),
                             boost::asio::buffers_begin(self->buffer_.data()) + static_cast<std::ptrdiff_t>(n));
            self->buffer_.consume(n);
            self->serve(line);
        });
    }

    void serve(const std::string& line) {
        auto self = shared_from_this();
        json req;
        try {
            req = json::parse(line);
            if (!req.is_object()) throw ApiError("a request is a JSON object with a \"cmd\"");
        } catch (const json::exception& e) {
            reply({{"ok", false}, {"error", std::string("request is not valid JSON: ") + e.what()}});
            return;
        } catch (const std::exception& e) {
            reply(error_reply(e));
            return;
        }
        server_.handle(req, [self](const json& r) { self->reply(r); });
    }

    void reply(const json& r) {
        auto self = shared_from_this();
        auto text = std::make_shared<std::string>(r.dump() + "\n");
        boost::asio::async_write(socket_, boost::asio::buffer(*text),
                                 [self, text](const boost::system::error_code& ec, std::size_t) {
                                     if (!ec) self->read();
                                 });
    }

    stream_protocol::socket socket_;
    ApiServer& server_;
    boost::asio::streambuf buffer_{kMaxRequest};
};

}  // namespace

ApiServer::ApiServer(boost::asio::io_context& io, Daemon& daemon, std::string socket_path)
    : io_(io), daemon_(daemon), path_(std::move(socket_path)), acceptor_(io) {
    std::filesystem::create_directories(std::filesystem::path(path_).parent_path());
    if (std::filesystem::exists(path_)) {
        stream_protocol::socket probe(io_);
        boost::system::error_code ec;
        probe.connect(stream_protocol::endpoint(path_), ec);
        if (!ec) throw Error("another vmmd is listening on " + path_);
        ::unlink(path_.c_str());
    }
    acceptor_.open(stream_protocol());
    ::fcntl(acceptor_.native_handle(), F_SETFD, FD_CLOEXEC);  // never inherited by an anchor
    acceptor_.bind(stream_protocol::endpoint(path_));
    ::chmod(path_.c_str(), 0660);
    acceptor_.listen();
    accept();
}

ApiServer::~ApiServer() {
    boost::system::error_code ec;
    acceptor_.close(ec);
    ::unlink(path_.c_str());
}

void ApiServer::accept() {
    acceptor_.async_accept([this](const boost::system::error_code& ec, stream_protocol::socket socket) {
        if (ec == boost::asio::error::operation_aborted) return;
        if (ec) {
            log()->warn("accept on {}: {}", path_, ec.message());
        } else {
            std::make_shared<Session>(std::move(socket), *this)->run();
        }
        accept();
    });
}

void ApiServer::handle(const json& req, Reply done) {
    try {
        const std::string cmd = request_string(req, "cmd");
        if (cmd == "start") {
            DomainManifest manifest;
            if (req.contains("manifest_path")) {
                manifest = load_manifest_file(request_string(req, "manifest_path"));
            } else if (req.contains("manifest")) {
                manifest = parse_manifest(req.at("manifest"), req.value("base_dir", std::string("/")));
            } else {
                throw ApiError("start needs \"manifest_path\" or \"manifest\"", "manifest");
            }
            std::optional<RestartPolicy> restart;
            if (req.contains("restart")) {
                restart = parse_restart_policy(request_string(req, "restart"));
                if (!restart) throw ApiError("request field \"restart\" must be \"never\", \"on-crash\" or \"always\"", "restart");
            }
            daemon_.start(manifest, restart, done);  // a copy: done is still needed if start throws
        } else if (cmd == "stop") {
            hv::StopOptions opts;
            opts.force = req.value("force", false);
            opts.timeout = daemon_.config().stop_timeout;
            if (req.contains("timeout_s")) {
                if (!req.at("timeout_s").is_number() || req.at("timeout_s").get<double>() < 0)
                    throw ApiError("request field \"timeout_s\" must be a non-negative number of seconds", "timeout_s");
                opts.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(req.at("timeout_s").get<double>() * 1000));
            }
            daemon_.stop(request_string(req, "name"), opts, done);  // a copy: done is still needed if stop throws
        } else if (cmd == "list") {
            done(daemon_.list());
        } else if (cmd == "info") {
            done(daemon_.info(request_string(req, "name")));
        } else if (cmd == "pause") {
            done(daemon_.pause(request_string(req, "name")));
        } else if (cmd == "resume") {
            done(daemon_.resume(request_string(req, "name")));
        } else if (cmd == "delete") {
            daemon_.remove(request_string(req, "name"));
            done({{"ok", true}});
        } else if (cmd == "host") {
            done(daemon_.host());
        } else {
            throw ApiError("unknown cmd \"" + cmd + "\" (start, stop, list, info, pause, resume, delete, host)", "cmd");
        }
    } catch (const std::exception& e) {
        done(error_reply(e));
    }
}

}  // namespace vmm::vmmd
