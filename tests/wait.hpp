// Polling helper shared by the test executables (each compiles as one unity TU, so helpers
// live here once instead of in every file).
#pragma once
#include <chrono>
#include <thread>

namespace courier_test {

/// Polls `p` until it holds or `limit` passes; true when it held. Yields between polls.
template <class Pred>
bool wait_until(Pred p, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!p()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::yield();
    }
    return true;
}

}  // namespace courier_test
