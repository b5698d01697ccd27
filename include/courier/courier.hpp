// Everything in courier's core, for convenience: queues, events, the bus and the runtime.
// It pulls in Asio and nlohmann_json, which cost compile time; include the fine-grained
// headers (courier/queue/mpmc_queue.hpp, courier/event/event_name.hpp, ...) where that matters.
// Broker bridges are never included here: each has its own header and CMake target.
#pragma once

#include <courier/core/clock.hpp>
#include <courier/core/config.hpp>
#include <courier/core/error.hpp>
#include <courier/core/latency_histogram.hpp>
#include <courier/core/result.hpp>
#include <courier/core/retry_policy.hpp>
#include <courier/core/uuid.hpp>

#include <courier/queue/async_pop.hpp>
#include <courier/queue/bounded_queue.hpp>
#include <courier/queue/mpmc_queue.hpp>
#include <courier/queue/queue_status.hpp>

#include <courier/event/cloudevents.hpp>
#include <courier/event/envelope.hpp>
#include <courier/event/envelope_codec.hpp>
#include <courier/event/event_name.hpp>
#include <courier/event/event_traits.hpp>
#include <courier/event/json_fields.hpp>
#include <courier/event/topic_pattern.hpp>
#include <courier/event/upcaster.hpp>

#include <courier/bus/dead_letter_store.hpp>
#include <courier/bus/event_bus.hpp>
#include <courier/bus/idempotency.hpp>
#include <courier/bus/message_context.hpp>
#include <courier/bus/metrics.hpp>
#include <courier/bus/subscription.hpp>
#include <courier/bus/subscription_options.hpp>
#include <courier/bus/topology.hpp>

#include <courier/runtime/runtime.hpp>
#include <courier/runtime/timer_service.hpp>
#include <courier/actor/actor.hpp>
#include <courier/jobs/job_system.hpp>
#include <courier/rpc/rpc.hpp>
#include <courier/stream/stream.hpp>
#include <courier/saga/saga.hpp>
