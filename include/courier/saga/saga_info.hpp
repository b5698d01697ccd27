// What a query returns about one saga: its state, the step it is on, every attempt with its
// timestamps and error, and its context as JSON.
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/uuid.hpp>
#include <courier/saga/saga_state.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

COURIER_BEGIN_NAMESPACE

/// One attempt of a step's action, compensation or signal wait.
struct saga_attempt {
    std::string step;
    attempt_kind kind = attempt_kind::action;
    std::uint32_t attempt = 0;
    time_point started{};
    time_point finished{};  ///< zero while it runs
    bool succeeded = false;
    std::string error;      ///< why it failed ("interrupted by a restart" for a rerun one)
};

/// A saga as `saga_runner::query` sees it.
struct saga_info {
    uuid id;
    std::string definition;      ///< e.g. "order.fulfilment.v1"
    std::string correlation_id;  ///< carried by every event of the saga
    saga_state state = saga_state::running;
    std::string current_step;    ///< the step last started or waited on
    std::vector<saga_attempt> history;  ///< every attempt, oldest first
    nlohmann::json context;      ///< the context after the last completed step
    std::string error;           ///< the failure that started compensation, or the cancel reason
    time_point started_at{};
    time_point updated_at{};
};

COURIER_END_NAMESPACE
