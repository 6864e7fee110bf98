#pragma once

// Readiness checks of pool containers: is the app past its init? One attempt
// each; the pool manager repeats them until they pass or the check's timeout.

#include <absl/status/status.h>

#include <chrono>
#include <string>

#include "daemon/config.h"
#include "daemon/runtime_client.h"

namespace warmpool {

// One attempt of `check` against a container whose pod has address `ip`
// (127.0.0.1 for host-network pods). OK: ready. kUnavailable: not yet (the
// message says what was seen). `attempt_timeout` bounds a connect + answer.
// `netns` (a path; "" = the host's): connect from inside that network
// namespace (late-network entries, see daemon/late_network.h).
absl::Status ProbeOnce(const ReadyCheck& check, const std::string& ip,
                       const std::string& container_id, RuntimeClient* runtime,
                       std::chrono::milliseconds attempt_timeout, const std::string& netns = "");

// An HTTP/1.0 GET; returns the status code, or an error. For probes only.
absl::StatusOr<int> HttpGetStatus(const std::string& ip, int port, const std::string& path,
                                  std::chrono::milliseconds timeout, const std::string& netns = "");

}  // namespace warmpool
