// Where the bridge tests find the broker servers CTest starts for them (see tests/CMakeLists.txt
// and scripts/services/redis.sh): the state folder of a service (its port in <state>/port) and
// its start/stop script. COURIER_TEST_<SERVICE>_STATE / _SCRIPT in the environment override both.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>

#include <unistd.h>

namespace courier_test {

/// `path` as an absolute path. Paths compiled into the tests (the defines below, __FILE__) are
/// absolute, except when ccache's base_dir rewrote them relative to the compiler's working
/// directory: Ninja's, the top build folder, one level above this program (<build>/tests/).
inline std::string from_build_root(std::string path) {
    if (path.empty() || path.front() == '/') return path;
    char exe[4096];
    const auto n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return path;
    std::string dir(exe, static_cast<std::size_t>(n));
    dir.erase(dir.rfind('/'));
    return dir + "/../" + path;
}

inline std::string service_env(const std::string& service, const char* what) {
    std::string name = "COURIER_TEST_" + service + "_" + what;
    std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    const char* v = std::getenv(name.c_str());
    return v ? std::string(v) : std::string();
}

/// The state folder of the server CTest started for `service` ("redis", "nats", "rabbitmq").
inline std::string service_state(const std::string& service) {
    auto v = service_env(service, "STATE");
    return v.empty() ? from_build_root(COURIER_TEST_SERVICES_STATE_DIR) + "/" + service : v;
}

/// The script that starts and stops `service` (start|stop|pause|resume <statedir> [port]).
inline std::string service_script(const std::string& service) {
    auto v = service_env(service, "SCRIPT");
    return v.empty() ? from_build_root(COURIER_TEST_SERVICES_SCRIPT_DIR) + "/" + service + ".sh" : v;
}

/// The port written by the script to <state>/port (0 if none: the server is not running).
inline std::uint16_t service_port(const std::string& state) {
    std::ifstream in(state + "/port");
    unsigned port = 0;
    in >> port;
    return static_cast<std::uint16_t>(port);
}

}  // namespace courier_test
