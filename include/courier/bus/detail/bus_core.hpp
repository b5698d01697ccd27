// The state every subscription of one bus shares: executor, clock, timers, dead letters,
// bus-wide middleware and the default producer. Subscriptions hold it by shared_ptr so a
// subscription handle that outlives its bus stays safe.
#pragma once

#include <courier/bus/dead_letter_store.hpp>
#include <courier/bus/subscription_options.hpp>
#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/event/upcaster.hpp>
#include <courier/runtime/timer_service.hpp>

#include <boost/asio/io_context.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// What a bus (and the other components) need from the runtime.
struct runtime_services {
    boost::asio::io_context::executor_type executor;
    courier::clock& clock;
    timer_service& timers;
    std::string producer = "courier";
    std::uint32_t threads = 1;  ///< threads running the executor (0 for a manual runtime)
    bool manual = false;        ///< nobody runs the executor but the test (runtime::poll)
};

namespace detail {

struct bus_core {
    explicit bus_core(runtime_services s, std::size_t dead_letter_capacity)
        : services(std::move(s)), dead_letters(dead_letter_capacity) {}

    runtime_services services;
    dead_letter_store dead_letters;
    upcaster_registry upcasters;
    std::atomic<bool> closed{false};

    // Bus-wide handle middleware: set up before subscribing; copied into each subscription.
    std::shared_mutex middleware_mutex;
    std::vector<handle_middleware> handle_middleware_list;
};

}  // namespace detail
COURIER_END_NAMESPACE
