// A nats-server for the NATS bridge tests: the one the CTest fixture started (its state folder
// in COURIER_TEST_NATS_STATE, see tests/CMakeLists.txt), or a private one started here through
// scripts/services/nats.sh (COURIER_TEST_NATS_SCRIPT) in a temporary folder and stopped when the
// object goes (also when a test fails: a destructor).
#pragma once

#include <courier/bridge/transport.hpp>

#include "bridge/services.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>

namespace nats_test {

/// scripts/services/<name>.sh (as the fixture names it, else the one of this checkout).
inline std::string service_script(const std::string& name) {
    if (const char* s = std::getenv("COURIER_TEST_NATS_SCRIPT"); name == "nats" && s != nullptr && *s != '\0') return s;
    std::string here = courier_test::from_build_root(__FILE__);  // .../tests/bridge/nats_server.hpp
    auto root = here.substr(0, here.rfind("/tests/bridge/"));
    return root + "/scripts/services/" + name + ".sh";
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
inline int unused_port() {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        if (fd >= 0) ::close(fd);
        throw std::runtime_error("cannot find a free port");
    }
    ::close(fd);
    return ntohs(a.sin_port);
}

/// Calls `connect` with a short timeout until it succeeds or `limit` passes (the bridge's
/// backoff loop, in small).
inline bool reconnect(courier::bridge::transport& t, std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (auto wait = std::chrono::milliseconds(20);; wait = std::min(wait * 2, std::chrono::milliseconds(500))) {
        if (t.connect(std::chrono::seconds(1))) return true;
        if (std::chrono::steady_clock::now() + wait > deadline) return false;
        std::this_thread::sleep_for(wait);  // backoff between attempts, not a synchronization
    }
}

class nats_server {
public:
    /// Starts a private server.
    nats_server() {
        char tmpl[] = "/tmp/courier-nats-XXXXXX";
        if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp failed");
        dir_ = tmpl;
        owned_ = true;
        run("start");
    }
    /// Uses a server someone else started in `statedir`.
    explicit nats_server(std::string statedir) : dir_(std::move(statedir)) {}
    ~nats_server() {
        if (!owned_) return;
        if (std::system((service_script("nats") + " stop '" + dir_ + "' >/dev/null 2>&1").c_str()) != 0) {}
        if (std::system(("rm -rf '" + dir_ + "'").c_str()) != 0) {}
    }
    nats_server(const nats_server&) = delete;
    nats_server& operator=(const nats_server&) = delete;

    /// The fixture's server when CTest started one, else one private server for the whole run.
    static nats_server& shared() {
        if (const char* dir = std::getenv("COURIER_TEST_NATS_STATE"); dir != nullptr && *dir != '\0') {
            static nats_server fixture{std::string(dir)};
            return fixture;
        }
        static nats_server own;
        return own;
    }

    int port() const {
        std::ifstream in(dir_ + "/port");
        int p = 0;
        in >> p;
        if (p <= 0) throw std::runtime_error("no port in " + dir_);
        return p;
    }
    std::string url() const { return "nats://127.0.0.1:" + std::to_string(port()); }
    const std::string& statedir() const noexcept { return dir_; }

    /// Stops and starts the same server (same port, same JetStream store).
    void restart() { run("restart"); }
    /// Stops it, keeping port and store (`start` brings it back).
    void stop() { run("pause"); }
    void start() { run("resume"); }

private:
    void run(const char* what) {
        const std::string cmd = service_script("nats") + " " + what + " '" + dir_ + "'";
        if (std::system(cmd.c_str()) != 0) throw std::runtime_error("failed: " + cmd);
    }

    std::string dir_;
    bool owned_ = false;
};

}  // namespace nats_test
