// Precompiled header for the test executables: Catch2, the standard library and Asio,
// the slowest headers to parse. Tests still include what they use.
#pragma once
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio.hpp>
#include <nlohmann/json.hpp>
