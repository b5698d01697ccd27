// Everything of the saga runner: definitions, the runner, journals (memory and file), events.
#pragma once

#include <courier/saga/file_journal.hpp>
#include <courier/saga/journal.hpp>
#include <courier/saga/memory_journal.hpp>
#include <courier/saga/saga_definition.hpp>
#include <courier/saga/saga_error.hpp>
#include <courier/saga/saga_events.hpp>
#include <courier/saga/saga_info.hpp>
#include <courier/saga/saga_runner.hpp>
#include <courier/saga/saga_state.hpp>
#include <courier/saga/step_context.hpp>
